//! The WIT-generated bindings, fenced: nothing generated leaves the crate.
//! Domain ↔ WIT conversion lives in `convert`, and only there.
//!
//! The bindings come from `host/policy/wit/policy.wit`, the contract in
//! `wit/policy.wit` with one fix: its `decisions` interface names `metadata`
//! both as a used type and as a function, which WIT rejects ("duplicate name
//! `metadata`"); the copy imports the type as `policy-metadata`. Types and
//! export names are unchanged, so guests built against either agree on the
//! ABI. Once the contract carries the fix, point `path` back at `../../wit`
//! and delete the copy (the test below tells which case holds).

wasmtime::component::bindgen!({
    path: "wit",
    world: "pool-policy",
});

/// The export every policy must have, with its WIT version.
pub(crate) const DECISIONS_EXPORT: &str = "afxdp:policy/decisions@0.1.0";
/// The same export at any version, to recognise a version mismatch.
pub(crate) const DECISIONS_EXPORT_PREFIX: &str = "afxdp:policy/decisions@";

#[cfg(test)]
mod tests {
    /// The copy differs from the contract only by the `metadata` alias.
    #[test]
    fn wit_copy_tracks_the_contract() {
        let root = env!("CARGO_MANIFEST_DIR");
        let contract = std::fs::read_to_string(format!("{root}/../../wit/policy.wit")).unwrap();
        let copy = std::fs::read_to_string(format!("{root}/wit/policy.wit")).unwrap();
        let unfixed = copy
            .replace(
                "    // `metadata` is both a type and a function here; WIT needs the alias.\n",
                "",
            )
            .replace("metadata as policy-metadata}", "metadata}")
            .replace("func() -> policy-metadata;", "func() -> metadata;");
        assert!(
            contract == copy || contract == unfixed,
            "wit/policy.wit changed: update host/policy/wit/policy.wit (or drop the copy)"
        );
    }
}
