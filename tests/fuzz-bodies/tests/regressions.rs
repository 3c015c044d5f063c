//! Every input kept under `tests/fuzz/regressions/<target>/` (seeds and each
//! crash the fuzzers found) runs through its target's body.

use std::path::Path;

#[test]
fn kept_fuzz_inputs_pass_their_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    for (name, body) in afxdp_fuzz_bodies::TARGETS {
        let dir = root.join(name);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(!inputs.is_empty(), "no kept inputs for {name}");
        for input in inputs {
            let bytes = std::fs::read(&input).expect("read");
            if std::panic::catch_unwind(|| body(&bytes)).is_err() {
                panic!("{name}: {} fails its target", input.display());
            }
        }
    }
}
