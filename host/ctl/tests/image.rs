//! `afxdpctl image push/inspect` against a real registry (Debian's
//! `docker-registry` on 127.0.0.1). Skipped locally without it; fails under
//! `CI=true`.

use std::path::Path;
use std::process::{Command, Output};

use afxdp_testnet::registry::Registry;
use serde_json::Value;

/// Runs afxdpctl with its OCI cache in `cache` (and no pull secret).
fn ctl(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afxdpctl"))
        .args(args)
        .env("AFXDP_POLICY_CACHE", cache)
        .env_remove("AFXDP_PULL_SECRET")
        .output()
        .expect("run afxdpctl")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[test]
fn afxdpctl_image_push_and_inspect() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let object = afxdp_program::builtin_object();
    let obj = tmp.path().join("xsk_redirect.bpf.o");
    std::fs::write(&obj, object).expect("write object");
    let obj = obj.to_str().unwrap();

    // Refused before any traffic: not a BPF object, malformed --program.
    let text = tmp.path().join("notes.o");
    std::fs::write(&text, "not an object").unwrap();
    let out = ctl(
        &cache,
        &[
            "image",
            "push",
            text.to_str().unwrap(),
            "127.0.0.1:1/b/x:v1",
            "--program",
            "f=xdp",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not an ELF"), "{err}");
    let out = ctl(
        &cache,
        &["image", "push", obj, "127.0.0.1:1/b/x:v1", "--program", "f"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NAME=TYPE"),
        "{out:?}"
    );

    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tag = format!("{}/bytecode/xsk:v1", reg.addr());
    let pinned = stdout(&ctl(
        &cache,
        &[
            "image",
            "push",
            obj,
            &tag,
            "--program",
            "xsk_redirect=xdp",
            "--map",
            "xsks_map=xskmap",
        ],
    ));
    let pinned = pinned.trim();
    let prefix = format!("{}/bytecode/xsk@sha256:", reg.addr());
    assert!(pinned.starts_with(&prefix), "{pinned}");
    let digest = &pinned[pinned.find('@').unwrap() + 1..];

    let inspect = |reference: &str| -> Value {
        serde_json::from_str(&stdout(&ctl(&cache, &["image", "inspect", reference])))
            .expect("inspect prints JSON")
    };
    let v = inspect(pinned);
    assert_eq!(v["digest"], digest);
    assert_eq!(v["pinned"], pinned);
    assert_eq!(v["programs"], serde_json::json!({ "xsk_redirect": "xdp" }));
    assert_eq!(v["maps"], serde_json::json!({ "xsks_map": "xskmap" }));
    assert_eq!(v["file"], "xsk_redirect.bpf.o");
    assert_eq!(v["objectSize"], object.len());
    assert_eq!(v["objectDigest"], afxdp_oci::sha256_digest(object));
    assert_eq!(v["fromCache"], false);
    let path = v["objectPath"].as_str().expect("objectPath");
    assert_eq!(std::fs::read(path).expect("cached object"), object);

    // By tag (resolved online), then from the cache with the registry down.
    assert_eq!(inspect(&tag)["digest"], digest);
    reg.stop();
    let v = inspect(pinned);
    assert_eq!(v["fromCache"], true);
    assert_eq!(v["digest"], digest);
    let out = ctl(&cache, &["image", "inspect", &tag]);
    assert!(
        !out.status.success(),
        "a tag must be resolved online: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unreachable"),
        "{out:?}"
    );
}
