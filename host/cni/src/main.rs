//! afxdp-cni entry point: env + stdin in, result or spec error JSON out.

use std::io::{Read, Write};
use std::process::ExitCode;

use afxdp_cni::{
    command,
    config::Env,
    error::{CniError, Code},
};

fn init_logging(stdin: &[u8]) {
    // Logs go to stderr, or to the config's logFile when set (stdout is the result).
    let conf: Option<serde_json::Value> = serde_json::from_slice(stdin).ok();
    let level = conf
        .as_ref()
        .and_then(|c| c.get("logLevel"))
        .and_then(|v| v.as_str())
        .unwrap_or("info")
        .to_string();
    let filter = tracing_subscriber::EnvFilter::new(level);
    let file = conf
        .as_ref()
        .and_then(|c| c.get("logFile"))
        .and_then(|v| v.as_str())
        .and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(f) => b.with_writer(std::sync::Mutex::new(f)).init(),
        None => b.with_writer(std::io::stderr).init(),
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    init_logging(&stdin);
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "1.1.0".to_string());
    let outcome = match read {
        Err(e) => Err(CniError::new(Code::Io, "reading stdin", e.to_string())),
        Ok(_) => Env::from_vars(|k| std::env::var(k).ok()).and_then(|env| {
            let span =
                tracing::info_span!("cni", command = %env.command, container = %env.container_id);
            span.in_scope(|| command::run(&env, &stdin))
        }),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(code = e.code, msg = %e.msg, details = %e.details, "failed");
            let _ = writeln!(out, "{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
