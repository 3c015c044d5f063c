//! afxdp-dp's logging, run as the real binary: no colour codes unless stderr
//! is a terminal, `--log-format` checked, the config's `logLevel`,
//! `logFormat` and `logFile` applied (the flag first, then the config).
//!
//! Every run here fails right after reading the config (the state dir lies
//! under a regular file), so no root and no kubelet are needed: what is
//! checked is the "starting" line and the logged start error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DP: &str = env!("CARGO_BIN_EXE_afxdp-dp");

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("not-a-dir"), b"").expect("write");
        Run { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, text: &str) -> PathBuf {
        let p = self.path("config.json");
        std::fs::write(&p, text).expect("write config");
        p
    }

    /// afxdp-dp with `config`, stdout and stderr piped, `RUST_LOG` unset
    /// unless given in `env`.
    fn dp(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(DP);
        cmd.arg("--config")
            .arg(config)
            .args(["--metrics-address", "off"])
            .arg("--state-dir")
            .arg(self.path("not-a-dir/state"))
            .arg("--node-name")
            .arg("n1")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("AFXDP_LOG_FORMAT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run afxdp-dp")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_no_ansi(what: &str, b: &[u8]) {
    assert!(
        !b.windows(2).any(|w| w == b"\x1b["),
        "{what} carries ANSI escapes:\n{}",
        text(b)
    );
}

const EMPTY_V1: &str = r#"{"apiVersion":"afxdp.io/v1alpha1","pools":[]}"#;

#[test]
fn stderr_to_a_pipe_has_no_colour() {
    let run = Run::new();
    let config = run.config(EMPTY_V1);
    for (args, env) in [
        (&[][..], &[][..]),
        (&["--log-format", "text"][..], &[][..]),
        (&[][..], &[("RUST_LOG", "debug")][..]),
    ] {
        let out = run.dp(&config, args, env);
        assert!(!out.status.success(), "the state dir cannot be made");
        let err = text(&out.stderr);
        assert!(err.contains("afxdp-dp starting"), "{err}");
        assert!(err.contains("state dir"), "start error logged: {err}");
        assert_no_ansi("stderr", &out.stderr);
    }
}

#[test]
fn unknown_log_format_exits_non_zero_naming_the_allowed_values() {
    let run = Run::new();
    let config = run.config(EMPTY_V1);
    for (args, env) in [
        (&["--log-format", "yaml"][..], &[][..]),
        (&[][..], &[("AFXDP_LOG_FORMAT", "yaml")][..]),
    ] {
        let out = run.dp(&config, args, env);
        assert!(!out.status.success());
        assert_eq!(out.status.code(), Some(2), "a usage error");
        let err = text(&out.stderr);
        assert!(
            err.contains("yaml") && err.contains("text") && err.contains("json"),
            "{err}"
        );
        assert!(
            !err.contains("afxdp-dp starting"),
            "it must not start: {err}"
        );
    }
}

#[test]
fn config_log_file_gets_json_lines_and_the_flag_wins_over_the_config() {
    let run = Run::new();
    let log = run.path("logs/sub/afxdp-dp.log");
    let config = run.config(&format!(
        r#"{{"apiVersion":"afxdp.io/v1alpha1","logFormat":"json","logFile":"{}","pools":[]}}"#,
        log.display()
    ));
    let out = run.dp(&config, &[], &[]);
    assert!(!out.status.success());
    let written = std::fs::read(&log).expect("log file created with its directory");
    assert_no_ansi("log file", &written);
    let lines: Vec<serde_json::Value> = text(&written)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "afxdp-dp starting"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "ERROR"
                && l["fields"]["message"].to_string().contains("state dir")),
        "{lines:?}"
    );
    // Logs went to the file; stderr still names the failure.
    let err = text(&out.stderr);
    assert!(!err.contains("afxdp-dp starting"), "{err}");
    assert!(err.contains("state dir"), "{err}");

    // Appended, and in text when the flag says so.
    let before = lines.len();
    let out = run.dp(&config, &["--log-format", "text"], &[]);
    assert!(!out.status.success());
    let all = text(&std::fs::read(&log).expect("log file"));
    let added: Vec<&str> = all.lines().skip(before).collect();
    assert!(!added.is_empty(), "appended");
    assert!(
        added.iter().all(|l| !l.starts_with('{'))
            && added.iter().any(|l| l.contains("afxdp-dp starting")),
        "{added:?}"
    );
}

#[test]
fn config_log_level_filters_unless_rust_log_is_set() {
    let run = Run::new();
    let config = run.config(r#"{"apiVersion":"afxdp.io/v1alpha1","logLevel":"error","pools":[]}"#);
    let out = run.dp(&config, &[], &[]);
    let err = text(&out.stderr);
    assert!(!err.contains("afxdp-dp starting"), "info filtered: {err}");
    assert!(err.contains("state dir"), "{err}");
    let out = run.dp(&config, &[], &[("RUST_LOG", "info")]);
    let err = text(&out.stderr);
    assert!(err.contains("afxdp-dp starting"), "RUST_LOG wins: {err}");
}

#[test]
fn an_invalid_config_logs_with_defaults_and_reports_the_config_errors() {
    let run = Run::new();
    let config = run.config(r#"{"apiVersion":"afxdp.io/v1alpha1","logFormat":"yaml","pools":[]}"#);
    let out = run.dp(&config, &[], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("afxdp-dp starting"), "{err}");
    assert!(
        err.contains(r#"logFormat: invalid logFormat "yaml""#),
        "{err}"
    );
    assert_no_ansi("stderr", &out.stderr);
}
