//! Loading: what is refused (and how it is explained), and the precompiled
//! artifact cache.

mod common;
use common::blk;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use afxdp_policy::{sha256_digest, CallCtx, EngineConfig, Netdev, Pod, PolicyEngine, PolicyError};

fn load(engine: &PolicyEngine, wasm: &[u8]) -> Result<(), PolicyError> {
    engine.load(&blk(), wasm, &sha256_digest(wasm)).map(|_| ())
}

#[test]
fn missing_export_names_what_was_expected_and_found() {
    let err = load(common::engine(), &common::guest("missing-export")).unwrap_err();
    match &err {
        PolicyError::MissingExport { expected, found } => {
            assert_eq!(*expected, "afxdp:policy/decisions@0.1.0");
            assert!(found.contains("afxdp:other/thing@0.1.0"), "{found}");
        }
        other => panic!("{other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("afxdp:policy/decisions@0.1.0") && shown.contains("afxdp:other/thing"));
}

#[test]
fn wrong_wit_version_is_named() {
    let err = load(common::engine(), &common::guest("wrong-version")).unwrap_err();
    match &err {
        PolicyError::WrongVersion { expected, found } => {
            assert_eq!(*expected, "afxdp:policy/decisions@0.1.0");
            assert_eq!(found, "afxdp:policy/decisions@0.2.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("0.2.0"));
}

#[test]
fn not_a_component_is_refused_before_compiling() {
    let e = common::engine();
    assert!(matches!(
        load(e, b"PK\x03\x04 not wasm"),
        Err(PolicyError::NotWasm { .. })
    ));
    assert!(matches!(
        load(e, b"\0asm\x01\0\0\0"),
        Err(PolicyError::NotComponent { .. })
    ));
    assert!(matches!(load(e, b""), Err(PolicyError::NotWasm { .. })));
}

#[test]
fn digest_is_checked() {
    let wasm = common::guest("well-behaved");
    let e = common::engine();
    let other = sha256_digest(b"something else");
    assert!(matches!(
        e.load(&blk(), &wasm, &other),
        Err(PolicyError::DigestMismatch { .. })
    ));
    assert!(matches!(
        e.load(&blk(), &wasm, "sha256:nothex"),
        Err(PolicyError::BadDigest { .. })
    ));
    assert!(matches!(
        e.load(
            &blk(),
            &wasm,
            &sha256_digest(&wasm).replace("sha256:", "md5:")
        ),
        Err(PolicyError::BadDigest { .. })
    ));
}

fn cached_engine(dir: &Path) -> PolicyEngine {
    PolicyEngine::new(EngineConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..EngineConfig::default()
    })
    .unwrap()
}

fn works(engine: &PolicyEngine, wasm: &[u8]) {
    let p = engine.load(&blk(), wasm, &sha256_digest(wasm)).unwrap();
    let plan = p
        .assign_queues(
            &blk(),
            &CallCtx::new("c", r#"{"queues":1}"#),
            &Netdev::new("eth0", 2),
            &Pod::default(),
        )
        .unwrap();
    assert_eq!(plan.queues, vec![0]);
}

#[test]
fn precompiled_cache_is_written_reused_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("policies");
    let wasm = common::guest("well-behaved");
    let digest = sha256_digest(&wasm);

    // First engine: compiles and writes the artifact, 0600, in a 0700 dir.
    let first = cached_engine(&cache);
    works(&first, &wasm);
    let path = first.cache_path(&digest).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(digest.strip_prefix("sha256:").unwrap()),
        "{name}"
    );
    assert!(
        name.contains("-wasmtime48-") && name.ends_with(".cwasm"),
        "{name}"
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let no_temp_left = std::fs::read_dir(&cache).unwrap().count() == 1;
    assert!(no_temp_left);

    // Second engine: loads from the fresh file, leaves it as it is.
    let second = cached_engine(&cache);
    assert_eq!(second.cache_path(&digest).unwrap(), path);
    works(&second, &wasm);
    let again = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (again.ino(), again.mtime_nsec()),
        (meta.ino(), meta.mtime_nsec())
    );

    // Garbage in the cache: recompiled, replaced.
    std::fs::write(&path, b"garbage").unwrap();
    works(&cached_engine(&cache), &wasm);
    let repaired = std::fs::read(&path).unwrap();
    assert!(repaired.len() > 1000 && repaired.starts_with(b"AFXPCW01"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // One flipped bit in the compiled code: the checksum catches it.
    let mut bytes = repaired.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    works(&cached_engine(&cache), &wasm);
    assert_eq!(std::fs::read(&path).unwrap(), repaired);

    // Writable by others: not trusted, replaced with a 0600 file.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = std::fs::metadata(&path).unwrap().ino();
    works(&cached_engine(&cache), &wasm);
    let after = std::fs::metadata(&path).unwrap();
    assert_ne!(after.ino(), before);
    assert_eq!(after.permissions().mode() & 0o777, 0o600);
}

#[test]
fn unwritable_cache_does_not_fail_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = common::guest("well-behaved");
    let engine = cached_engine(dir.path());
    // A directory where the artifact should go: the write fails, the load
    // does not.
    std::fs::create_dir(engine.cache_path(&sha256_digest(&wasm)).unwrap()).unwrap();
    works(&engine, &wasm);
}
