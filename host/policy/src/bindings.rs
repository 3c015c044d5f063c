//! The WIT-generated bindings, fenced: nothing generated leaves the crate.
//! Domain ↔ WIT conversion lives in `convert`, and only there.
wasmtime::component::bindgen!({
    path: "../../wit",
    world: "pool-policy",
});

/// The export every policy must have, with its WIT version.
pub(crate) const DECISIONS_EXPORT: &str = "afxdp:policy/decisions@0.1.0";
/// The same export at any version, to recognise a version mismatch.
pub(crate) const DECISIONS_EXPORT_PREFIX: &str = "afxdp:policy/decisions@";

#[cfg(test)]
mod tests {
    /// The `wrong-version` test guest is the contract at version 0.2.0 and
    /// nothing else, so its refusal is about the version only.
    #[test]
    fn wrong_version_guest_tracks_the_contract() {
        let root = env!("CARGO_MANIFEST_DIR");
        let contract = std::fs::read_to_string(format!("{root}/../../wit/policy.wit")).unwrap();
        let copy =
            std::fs::read_to_string(format!("{root}/tests/guests/wrong-version/wit/policy.wit"))
                .unwrap();
        assert_eq!(
            copy,
            contract.replace("package afxdp:policy@0.1.0;", "package afxdp:policy@0.2.0;"),
            "regenerate tests/guests/wrong-version/wit/policy.wit from wit/policy.wit"
        );
    }
}
