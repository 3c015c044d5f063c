//! Checks the built example policies are valid Wasm components that export
//! `afxdp:policy/decisions@0.1.0` with every decision and import nothing but
//! `afxdp:policy` interfaces and WASI (`host.log` wired where a policy logs).
//!
//! Build them first (`cargo build --target wasm32-wasip2 --release` in
//! `policies/`). The components are looked up in `$AFXDP_POLICY_WASM_DIR`,
//! else `$CARGO_TARGET_DIR/wasm32-wasip2/release`, else
//! `policies/target/wasm32-wasip2/release`; the test says so and passes when
//! none is built (set `AFXDP_REQUIRE_POLICY_WASM=1` to make that a failure).

use std::path::PathBuf;

use wit_component::DecodedWasm;

const POLICIES: [&str; 4] = [
    "afxdp_policy_default",
    "afxdp_policy_numa_spread",
    "afxdp_policy_flow_steering",
    "afxdp_policy_image_by_label",
];

/// The policies that call `log!` (and so must import `host.log`).
const LOGGING: [&str; 2] = ["afxdp_policy_numa_spread", "afxdp_policy_flow_steering"];

const DECISIONS: &str = "afxdp:policy/decisions@0.1.0";
const HOST: &str = "afxdp:policy/host@0.1.0";
const FUNCS: [&str; 6] = [
    "metadata",
    "validate-config",
    "select-program",
    "assign-queues",
    "filter-rules",
    "preferred-allocation",
];

fn wasm_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AFXDP_POLICY_WASM_DIR") {
        return PathBuf::from(d);
    }
    let rel = PathBuf::from("wasm32-wasip2").join("release");
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join(rel);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/target")
        .join(rel)
}

#[test]
fn built_policies_are_decision_components() {
    let dir = wasm_dir();
    let mut checked = 0;
    for name in POLICIES {
        let path = dir.join(format!("{name}.wasm"));
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        checked += 1;

        let mut validator =
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
        if let Err(e) = validator.validate_all(&bytes) {
            panic!("{}: not a valid Wasm binary: {e}", path.display());
        }
        assert!(
            wasmparser::Parser::is_component(&bytes),
            "{}: a core module, not a component",
            path.display()
        );

        let decoded = wit_component::decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: cannot decode: {e:#}", path.display()));
        let DecodedWasm::Component(resolve, world) = decoded else {
            panic!(
                "{}: decodes as a WIT package, not a component",
                path.display()
            );
        };
        let world = &resolve.worlds[world];
        let key_name = |k: &wit_parser::WorldKey| resolve.name_world_key(k);

        let exports: Vec<String> = world.exports.keys().map(key_name).collect();
        assert_eq!(exports, vec![DECISIONS.to_string()], "{name}: exports");
        let decisions = world
            .exports
            .values()
            .find_map(|item| match item {
                wit_parser::WorldItem::Interface { id, .. } => Some(&resolve.interfaces[*id]),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: `decisions` is not an interface export"));
        let mut funcs: Vec<&str> = decisions.functions.keys().map(String::as_str).collect();
        funcs.sort_unstable();
        let mut want = FUNCS.to_vec();
        want.sort_unstable();
        assert_eq!(funcs, want, "{name}: decisions functions");

        let imports: Vec<String> = world.imports.keys().map(key_name).collect();
        // The linker drops an unused import: only policies that log import `host`.
        if LOGGING.contains(&name) {
            assert!(
                imports.iter().any(|i| i == HOST),
                "{name}: no {HOST} import in {imports:?}"
            );
        }
        for i in &imports {
            assert!(
                i == HOST || i.starts_with("wasi:") || i == "afxdp:policy/types@0.1.0",
                "{name}: unexpected import {i}"
            );
        }
        println!(
            "{name}: {} bytes, exports {exports:?}, imports {imports:?}",
            bytes.len()
        );
    }
    if checked == 0 {
        let msg = format!(
            "no policy component in {}: build them with `cargo build --target wasm32-wasip2 --release`",
            dir.display()
        );
        assert!(
            std::env::var_os("AFXDP_REQUIRE_POLICY_WASM").is_none(),
            "{msg}"
        );
        println!("skipped: {msg}");
    }
}
