//! Test helpers: the guest components (built once per test binary) and a
//! shared engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use afxdp_policy::{Blocking, EngineConfig, LoadedPolicy, PolicyEngine};

/// Tests run on plain threads: policy calls may block there.
pub fn blk() -> Blocking {
    Blocking::here().expect("tests run outside any async runtime")
}

/// Every guest under tests/guests/.
pub const GUESTS: &[&str] = &[
    "well-behaved",
    "infinite-loop",
    "memory-bomb",
    "panic",
    "huge-output",
    "invalid-decision",
    "missing-export",
    "wrong-version",
    "leftovers",
];

fn guests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guests")
}

/// Build every guest once (`cargo build --release --target wasm32-wasip2`
/// in their own workspace, into `target/policy-guests`, where the end-to-end
/// tests find them too: `afxdp_testnet::test_guest`).
fn build() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/policy-guests");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(guests_dir().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("running cargo to build the test guests");
        assert!(
            out.status.success(),
            "building the test guests failed (is `rustup target add wasm32-wasip2` done?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2/release")
    })
}

/// The component bytes of guest `name` (e.g. `well-behaved`).
pub fn guest(name: &str) -> Vec<u8> {
    let file = build().join(format!("guest_{}.wasm", name.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
}

/// The engine shared by a test binary's tests (default limits, no cache).
pub fn engine() -> &'static PolicyEngine {
    static E: OnceLock<PolicyEngine> = OnceLock::new();
    E.get_or_init(|| PolicyEngine::new(EngineConfig::default()).expect("engine"))
}

/// Guest `name` loaded in the shared engine (same `Arc` for the same guest
/// while one is alive).
pub fn load(name: &str) -> Arc<LoadedPolicy> {
    let wasm = guest(name);
    engine()
        .load(&blk(), &wasm, &afxdp_policy::sha256_digest(&wasm))
        .unwrap_or_else(|e| panic!("loading {name}: {e:?}"))
}
