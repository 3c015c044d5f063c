//! The bodies of the fuzz targets in `tests/fuzz` (cargo fuzz, libFuzzer):
//! each takes arbitrary bytes, runs one parser that reads input from outside
//! the daemon, and panics when an invariant breaks. The same functions run
//! over the inputs kept in `tests/fuzz/regressions/<target>/` (every crash
//! found is kept there) as a plain `cargo test`.

use std::collections::HashMap;

/// What a target runs on one input.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name (`tests/fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[(&str, Body)] = &[
    ("config", config),
    ("cni_input", cni_input),
    ("uds_message", uds_message),
];

/// The config parser (both forms): never panics; a valid config's pools
/// have distinct names; an invalid one lists at least one error.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match afxdp_config::parse(text) {
        Ok(cfg) => {
            let mut names: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "a valid config with duplicate pool names");
        }
        Err(errors) => assert!(
            !errors.to_string().trim().is_empty(),
            "an invalid config without a message"
        ),
    }
}

/// afxdp-cni's input: `CNI_*` variables (lines `KEY=VALUE` up to a NUL
/// byte) and the network config on stdin (the rest). Never panics; every
/// error renders as spec error JSON with its code.
pub fn cni_input(data: &[u8]) {
    let (env, stdin) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let vars: HashMap<String, String> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(e) = afxdp_cni::config::Env::from_vars(|k| vars.get(k).cloned()) {
        spec_error(&e);
    }
    match afxdp_cni::config::NetConf::parse(stdin) {
        Ok(conf) => assert!(!conf.cni_version.is_empty(), "accepted without a version"),
        Err(e) => spec_error(&e),
    }
}

fn spec_error(e: &afxdp_cni::error::CniError) {
    let json: serde_json::Value =
        serde_json::from_str(&e.to_json("1.1.0")).expect("the error is JSON");
    assert_eq!(json["code"], e.code, "the code survives");
    assert!(json["msg"].is_string(), "no msg: {json}");
}

/// One UDS handshake message (requests from pods, responses for clients):
/// never panics; a request the server understood encodes back to bytes
/// that parse to the same request.
pub fn uds_message(data: &[u8]) {
    use afxdp_handshake::protocol::{Request, Response};
    let request = Request::parse(data);
    if !matches!(request, Request::Unknown(_)) {
        assert_eq!(
            Request::parse(&request.encode()),
            request,
            "encode/parse round trip"
        );
    }
    let _ = Response::parse(data);
}
