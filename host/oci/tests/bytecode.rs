//! eBPF bytecode images (bpfman's layout) against a real registry (Debian's
//! `docker-registry`) on 127.0.0.1, one per test, killed by a guard.
//!
//! Without `/usr/bin/docker-registry` the tests are skipped locally and fail
//! under `CI=true`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use afxdp_oci::bytecode::{
    LABEL_BPF_FUNCTION_NAME, LABEL_FILENAME, LABEL_MAPS, LABEL_PROGRAMS, LABEL_PROGRAM_NAME,
    LABEL_PROGRAM_TYPE,
};
use afxdp_oci::media_types::{
    DOCKER_MANIFEST_MEDIA_TYPE, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
    WASM_LAYER_MEDIA_TYPE,
};
use afxdp_oci::{
    sha256_digest, Fetcher, FetcherConfig, OciError, PolicyRef, PullPolicy,
    DEFAULT_BYTECODE_FILE_NAME,
};
use afxdp_testnet::registry::Registry;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};

const WASM_A: &[u8] = b"\0asm\x0d\0\x01\0";

fn fetcher(cache: &Path) -> Fetcher {
    Fetcher::new(FetcherConfig::anonymous(cache)).expect("fetcher")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn pinned(s: &str) -> PolicyRef {
    PolicyRef::parse(s).expect("pinned reference")
}

fn object() -> &'static [u8] {
    afxdp_program::builtin_object()
}

fn programs() -> BTreeMap<String, String> {
    BTreeMap::from([(
        afxdp_program::BUILTIN_PROGRAM_NAME.to_string(),
        "xdp".to_string(),
    )])
}

fn maps() -> BTreeMap<String, String> {
    BTreeMap::from([(
        afxdp_program::XSKS_MAP_NAME.to_string(),
        "xskmap".to_string(),
    )])
}

/// Pushes the built-in program as `xsk_redirect.bpf.o`.
async fn push_builtin(f: &Fetcher, reg: &Registry, repo_tag: &str) -> PolicyRef {
    pinned(
        &f.push_bytecode_file(
            &format!("{}/{repo_tag}", reg.addr()),
            "xsk_redirect.bpf.o",
            object(),
            &programs(),
            &maps(),
        )
        .await
        .expect("push_bytecode_file"),
    )
}

fn manifest_json(reg: &Registry, digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(reg.blob_file(digest)).expect("manifest blob"))
        .expect("manifest json")
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn image_config(labels: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Labels": labels },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap()
}

/// Pushes an image with arbitrary blobs and media types through oci-client
/// directly; returns the pinned reference.
async fn push_raw(
    addr: &str,
    repo_tag: &str,
    manifest_type: &str,
    config: (&[u8], &str),
    layer: (&[u8], &str),
) -> PolicyRef {
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let reference = oci_client::Reference::with_tag(addr.into(), repo.into(), tag.into());
    let layers = vec![ImageLayer::new(layer.0.to_vec(), layer.1.into(), None)];
    let config = Config::new(config.0.to_vec(), config.1.into(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(manifest_type.to_string());
    client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .expect("raw push");
    let digest = client
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("digest");
    pinned(&format!("{addr}/{repo}@{digest}"))
}

fn invalid_reason(res: Result<afxdp_oci::FetchedBytecode, OciError>) -> String {
    match res {
        Err(OciError::InvalidBytecode { reason, .. }) => reason,
        other => panic!("expected InvalidBytecode, got {other:?}"),
    }
}

#[tokio::test]
async fn push_builtin_program_then_fetch_by_digest() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let f = fetcher(&cache);
    let r = push_builtin(&f, &reg, "bytecode/xsk:v1").await;
    assert_eq!(r.registry(), reg.addr());
    assert_eq!(r.repository(), "bytecode/xsk");

    // What the registry holds is bpfman's layout.
    let manifest_digest = r.digest().unwrap();
    let m = manifest_json(&reg, manifest_digest);
    assert_eq!(m["mediaType"], OCI_IMAGE_MEDIA_TYPE);
    assert_eq!(m["config"]["mediaType"], IMAGE_CONFIG_MEDIA_TYPE);
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(m["layers"][0]["mediaType"], IMAGE_LAYER_GZIP_MEDIA_TYPE);
    let config: Value = serde_json::from_slice(
        &std::fs::read(reg.blob_file(m["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let labels = &config["config"]["Labels"];
    let label_map = |name: &str| -> BTreeMap<String, String> {
        serde_json::from_str(labels[name].as_str().expect(name)).expect(name)
    };
    assert_eq!(label_map(LABEL_PROGRAMS), programs());
    assert_eq!(label_map(LABEL_MAPS), maps());
    assert_eq!(labels[LABEL_FILENAME], "xsk_redirect.bpf.o");

    let got = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .expect("fetch_bytecode");
    assert!(!got.from_cache);
    assert_eq!(got.manifest_digest, manifest_digest);
    assert_eq!(got.layer_digest, m["layers"][0]["digest"]);
    assert_eq!(got.programs, programs());
    assert_eq!(got.maps, maps());
    assert_eq!(got.file_name, "xsk_redirect.bpf.o");
    assert_eq!(std::fs::read(&got.object_path).unwrap(), object());
    assert_eq!(got.object_digest, sha256_digest(object()));
    assert_eq!(got.object_size, object().len() as u64);
    assert_eq!(mode(&got.object_path), 0o600);
    let layer_hex = &got.layer_digest["sha256:".len()..];
    assert_eq!(
        got.object_path,
        cache
            .join("objects/sha256")
            .join(layer_hex)
            .join("xsk_redirect.bpf.o")
    );
    for d in [
        "objects",
        "objects/sha256",
        &format!("objects/sha256/{layer_hex}"),
    ] {
        assert_eq!(mode(&cache.join(d)), 0o700, "{d}");
    }
    // Config, layer and manifest are cached, 0600.
    for d in [
        got.layer_digest.as_str(),
        m["config"]["digest"].as_str().unwrap(),
        manifest_digest,
    ] {
        assert_eq!(
            mode(&cache.join("blobs/sha256").join(&d[7..])),
            0o600,
            "{d}"
        );
    }

    // Again: no traffic; Always goes to the registry.
    let again = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert!(again.from_cache);
    assert_eq!(again.object_path, got.object_path);
    assert!(
        !f.fetch_bytecode(&r, PullPolicy::Always)
            .await
            .unwrap()
            .from_cache
    );

    // The object file is derived from the verified layer: damage is repaired.
    std::fs::write(&got.object_path, b"junk").unwrap();
    std::fs::set_permissions(&got.object_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let repaired = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert!(repaired.from_cache);
    assert_eq!(std::fs::read(&repaired.object_path).unwrap(), object());
    assert_eq!(mode(&repaired.object_path), 0o600);

    // Same inputs, same image: the push is reproducible.
    let r2 = push_builtin(&f, &reg, "bytecode/xsk:v2").await;
    assert_eq!(r2.digest(), r.digest());

    // A bytecode image is not a policy, and a policy is not a bytecode image.
    match f.fetch(&r, PullPolicy::IfNotPresent).await {
        Err(OciError::WrongMediaType { what, .. }) => assert_eq!(what, "config"),
        other => panic!("expected WrongMediaType, got {other:?}"),
    }
    let policy = pinned(
        &f.push(&format!("{}/p/policy:v1", reg.addr()), WASM_A)
            .await
            .unwrap(),
    );
    for pull in [PullPolicy::Always, PullPolicy::IfNotPresent] {
        match f.fetch_bytecode(&policy, pull).await {
            Err(OciError::WrongMediaType { what, .. }) => assert_eq!(what, "config", "{pull:?}"),
            other => panic!("expected WrongMediaType, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn default_file_name_and_tags() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fetcher(&tmp.path().join("cache"));
    let tag = format!("{}/bytecode/tagged:stable", reg.addr());
    let pinned_ref = f
        .push_bytecode(&tag, object(), &programs(), &BTreeMap::new())
        .await
        .unwrap();
    let t = PolicyRef::parse_with_pull_policy(&tag, Some(PullPolicy::IfNotPresent)).unwrap();
    let got = f
        .fetch_bytecode(&t, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(
        Some(got.manifest_digest.as_str()),
        pinned(&pinned_ref).digest()
    );
    assert_eq!(got.file_name, DEFAULT_BYTECODE_FILE_NAME);
    assert!(got.maps.is_empty());
    assert!(
        f.fetch_bytecode(&t, PullPolicy::IfNotPresent)
            .await
            .unwrap()
            .from_cache
    );
}

#[tokio::test]
async fn tampered_layer_and_config_are_refused() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fetcher(&tmp.path().join("pusher"));
    let r = push_builtin(&f, &reg, "bytecode/tamper:v1").await;
    let m = manifest_json(&reg, r.digest().unwrap());
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let config_digest = m["config"]["digest"].as_str().unwrap().to_string();

    // A valid gzip'd tar with a BPF object, but not the one pushed, padded
    // to the announced size so only the digest can tell.
    let layer_file = reg.blob_file(&layer_digest);
    let original = std::fs::read(&layer_file).unwrap();
    let mut other = object().to_vec();
    other[100] ^= 0xff;
    let mut evil = tar_gz(&[("xsk_redirect.bpf.o", &other)]);
    evil.resize(original.len(), 0);
    std::fs::write(&layer_file, &evil).unwrap();

    let cache = tmp.path().join("cache");
    match fetcher(&cache)
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
    {
        Err(OciError::LayerDigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, layer_digest);
            assert_eq!(actual, sha256_digest(&evil));
        }
        other => panic!("expected LayerDigestMismatch, got {other:?}"),
    }
    // Nothing reached the cache: blobs are stored only once all verified.
    let blobs: Vec<_> = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    assert_eq!(
        std::fs::read_dir(cache.join("objects/sha256"))
            .unwrap()
            .count(),
        0
    );

    // The config (labels) is verified as well.
    std::fs::write(&layer_file, &original).unwrap();
    let config_file = reg.blob_file(&config_digest);
    let mut cfg = std::fs::read(&config_file).unwrap();
    let at = cfg.len() / 2;
    cfg[at] ^= 0x01;
    std::fs::write(&config_file, &cfg).unwrap();
    match fetcher(&tmp.path().join("cache2"))
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
    {
        Err(OciError::ConfigDigestMismatch { expected, .. }) => assert_eq!(expected, config_digest),
        other => panic!("expected ConfigDigestMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_layer_media_type_is_refused_docker_types_accepted() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fetcher(&tmp.path().join("cache"));
    let layer = tar_gz(&[("xsk.bpf.o", object())]);
    let config = image_config(json!({
        LABEL_PROGRAMS: r#"{"xsk_redirect":"xdp"}"#,
        LABEL_MAPS: r#"{"xsks_map":"xskmap"}"#,
    }));
    for (repo_tag, layer_type) in [
        ("b/tar:v1", IMAGE_LAYER_MEDIA_TYPE),
        ("b/wasm:v1", WASM_LAYER_MEDIA_TYPE),
    ] {
        let r = push_raw(
            reg.addr(),
            repo_tag,
            OCI_IMAGE_MEDIA_TYPE,
            (&config, IMAGE_CONFIG_MEDIA_TYPE),
            (&layer, layer_type),
        )
        .await;
        match f.fetch_bytecode(&r, PullPolicy::IfNotPresent).await {
            Err(OciError::WrongMediaType { what, found, .. }) => {
                assert_eq!(what, "layer", "{repo_tag}");
                assert_eq!(found, layer_type, "{repo_tag}");
            }
            other => panic!("{repo_tag}: expected WrongMediaType, got {other:?}"),
        }
    }
    // Docker's manifest, config and layer types, and the older
    // single-program labels (as `docker build` of bpfman's Containerfile
    // makes them).
    let legacy = image_config(json!({
        LABEL_PROGRAM_NAME: "xsk",
        LABEL_BPF_FUNCTION_NAME: "xsk_redirect",
        LABEL_PROGRAM_TYPE: "xdp",
        LABEL_FILENAME: "xsk.bpf.o",
    }));
    let r = push_raw(
        reg.addr(),
        "b/docker:v1",
        DOCKER_MANIFEST_MEDIA_TYPE,
        (&legacy, IMAGE_DOCKER_CONFIG_MEDIA_TYPE),
        (&layer, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE),
    )
    .await;
    let got = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(got.programs, programs());
    assert!(got.maps.is_empty());
    assert_eq!(got.file_name, "xsk.bpf.o");
    assert_eq!(std::fs::read(&got.object_path).unwrap(), object());
}

#[tokio::test]
async fn two_objects_need_the_filename_label() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fetcher(&tmp.path().join("cache"));
    let mut other = object().to_vec();
    other.extend_from_slice(b"different");
    let layer = tar_gz(&[("a.bpf.o", object()), ("b.bpf.o", &other)]);
    let labels = json!({ LABEL_PROGRAMS: r#"{"xsk_redirect":"xdp"}"#, LABEL_MAPS: "{}" });
    let r = push_raw(
        reg.addr(),
        "b/two:v1",
        OCI_IMAGE_MEDIA_TYPE,
        (&image_config(labels.clone()), IMAGE_CONFIG_MEDIA_TYPE),
        (&layer, IMAGE_LAYER_GZIP_MEDIA_TYPE),
    )
    .await;
    let why = invalid_reason(f.fetch_bytecode(&r, PullPolicy::IfNotPresent).await);
    assert!(
        why.contains("a.bpf.o") && why.contains("b.bpf.o") && why.contains(LABEL_FILENAME),
        "{why}"
    );
    // Refused content is not cached: the same answer again, from the registry.
    invalid_reason(f.fetch_bytecode(&r, PullPolicy::IfNotPresent).await);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("cache/objects/sha256"))
            .unwrap()
            .count(),
        0
    );

    // The same layer with a label naming one of them is fine.
    let mut named = labels;
    named[LABEL_FILENAME] = "b.bpf.o".into();
    let r = push_raw(
        reg.addr(),
        "b/two:v2",
        OCI_IMAGE_MEDIA_TYPE,
        (&image_config(named), IMAGE_CONFIG_MEDIA_TYPE),
        (&layer, IMAGE_LAYER_GZIP_MEDIA_TYPE),
    )
    .await;
    let got = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert_eq!(got.file_name, "b.bpf.o");
    assert_eq!(std::fs::read(&got.object_path).unwrap(), other);
}

#[tokio::test]
async fn non_bpf_objects_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fetcher(&tmp.path().join("cache"));
    // Push refuses before any traffic (nothing listens on port 1).
    let mut x86 = object().to_vec();
    x86[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    for (bad, needle) in [(&b"not an elf"[..], "not an ELF"), (&x86[..], "EM_BPF")] {
        match f
            .push_bytecode("127.0.0.1:1/b/x:v1", bad, &programs(), &maps())
            .await
        {
            Err(OciError::InvalidBytecode { reason, .. }) => {
                assert!(reason.contains(needle), "{reason}")
            }
            other => panic!("expected InvalidBytecode, got {other:?}"),
        }
    }
    assert!(matches!(
        f.push_bytecode("127.0.0.1:1/b/x:v1", object(), &BTreeMap::new(), &maps())
            .await,
        Err(OciError::InvalidBytecode { .. })
    ));
    assert!(matches!(
        f.push_bytecode_file(
            "127.0.0.1:1/b/x:v1",
            "../x.o",
            object(),
            &programs(),
            &maps()
        )
        .await,
        Err(OciError::InvalidBytecode { .. })
    ));

    // Fetch refuses what another tool pushed.
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let config = image_config(json!({ LABEL_PROGRAMS: r#"{"f":"xdp"}"#, LABEL_MAPS: "{}" }));
    for (repo_tag, content, needle) in [
        (
            "b/text:v1",
            &b"#!/bin/sh\necho not an object\n"[..],
            "not an ELF",
        ),
        ("b/x86:v1", &x86[..], "EM_BPF"),
    ] {
        let r = push_raw(
            reg.addr(),
            repo_tag,
            OCI_IMAGE_MEDIA_TYPE,
            (&config, IMAGE_CONFIG_MEDIA_TYPE),
            (&tar_gz(&[("x.o", content)]), IMAGE_LAYER_GZIP_MEDIA_TYPE),
        )
        .await;
        let why = invalid_reason(f.fetch_bytecode(&r, PullPolicy::IfNotPresent).await);
        assert!(why.contains(needle), "{repo_tag}: {why}");
    }
    // No labels: not a bytecode image.
    let r = push_raw(
        reg.addr(),
        "b/nolabels:v1",
        OCI_IMAGE_MEDIA_TYPE,
        (&image_config(json!({})), IMAGE_CONFIG_MEDIA_TYPE),
        (&tar_gz(&[("x.o", object())]), IMAGE_LAYER_GZIP_MEDIA_TYPE),
    )
    .await;
    let why = invalid_reason(f.fetch_bytecode(&r, PullPolicy::IfNotPresent).await);
    assert!(why.contains(LABEL_PROGRAMS), "{why}");
}

#[tokio::test]
async fn registry_down_serves_cached_bytecode() {
    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let f = fetcher(&cache);
    let r = push_builtin(&f, &reg, "bytecode/offline:v1").await;
    let first = f
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
        .unwrap();
    assert!(!first.from_cache);

    reg.stop();
    for pull in [PullPolicy::IfNotPresent, PullPolicy::Always] {
        let got = f.fetch_bytecode(&r, pull).await.expect("served from cache");
        assert!(got.from_cache, "{pull:?}");
        assert_eq!(got.programs, programs());
        assert_eq!(std::fs::read(&got.object_path).unwrap(), object());
    }
    // A restarted node (a new fetcher on the same cache), even with the
    // extracted object gone: it is re-derived from the cached layer.
    std::fs::remove_file(&first.object_path).unwrap();
    let restarted = fetcher(&cache);
    let got = restarted
        .fetch_bytecode(&r, PullPolicy::Always)
        .await
        .expect("served from cache after restart");
    assert!(got.from_cache);
    assert_eq!(got.object_path, first.object_path);
    assert_eq!(std::fs::read(&got.object_path).unwrap(), object());
    assert_eq!(mode(&got.object_path), 0o600);

    // A corrupt cached layer is dropped; with the registry down nothing is left.
    let layer_blob = cache.join("blobs/sha256").join(&got.layer_digest[7..]);
    std::fs::write(&layer_blob, b"junk").unwrap();
    assert!(matches!(
        restarted.fetch_bytecode(&r, PullPolicy::IfNotPresent).await,
        Err(OciError::NotCachedAndUnreachable { .. })
    ));
    assert!(!layer_blob.exists());
}

#[tokio::test]
async fn registry_down_without_cache_is_a_clear_error() {
    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = push_builtin(
        &fetcher(&tmp.path().join("pusher")),
        &reg,
        "bytecode/gone:v1",
    )
    .await;
    reg.stop();
    match fetcher(&tmp.path().join("cache"))
        .fetch_bytecode(&r, PullPolicy::IfNotPresent)
        .await
    {
        Err(e @ OciError::NotCachedAndUnreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(reg.addr()), "{msg}");
            assert!(msg.contains("not in the cache"), "{msg}");
        }
        other => panic!("expected NotCachedAndUnreachable, got {other:?}"),
    }
}
