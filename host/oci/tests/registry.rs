//! afxdp-oci against a real registry (Debian's `docker-registry`, i.e.
//! distribution 2.8) on 127.0.0.1, one per test, on a random port with its
//! own storage directory, killed by a guard.
//!
//! Without `/usr/bin/docker-registry` (or `htpasswd` for the auth test)
//! the tests are skipped locally and fail under `CI=true`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use afxdp_oci::media_types::{WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE};
use afxdp_oci::{
    sha256_digest, Auth, Fetcher, FetcherConfig, OciError, PolicyRef, PullPolicy, Scheme,
};
use afxdp_testnet::registry::{Registry, HTPASSWD_BIN};

/// An empty component: magic, then layer 1 / version 0x0d.
const WASM_A: &[u8] = b"\0asm\x0d\0\x01\0";
/// Another component: the same plus a custom section named "b".
const WASM_B: &[u8] = b"\0asm\x0d\0\x01\0\x00\x03\x01b!";

fn fetcher(cache: &Path, auth: Auth) -> Fetcher {
    Fetcher::new(FetcherConfig {
        auth,
        ..FetcherConfig::anonymous(cache)
    })
    .expect("fetcher")
}

fn anon(cache: &Path) -> Fetcher {
    fetcher(cache, Auth::Anonymous)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn pinned(s: &str) -> PolicyRef {
    PolicyRef::parse(s).expect("pinned reference")
}

#[tokio::test]
async fn push_then_pull_by_digest_and_cache_layout() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let f = anon(&cache);

    let pinned_ref = f
        .push(&format!("{}/policies/default:v1", reg.addr()), WASM_A)
        .await
        .expect("push");
    let r = pinned(&pinned_ref);
    assert_eq!(r.registry(), reg.addr());
    assert_eq!(r.repository(), "policies/default");

    let got = f.fetch(&r, PullPolicy::IfNotPresent).await.expect("fetch");
    assert_eq!(got.wasm, WASM_A);
    assert!(!got.from_cache);
    assert_eq!(Some(got.manifest_digest.as_str()), r.digest());
    assert_eq!(got.layer_digest, sha256_digest(WASM_A));

    // What the registry stores is what we claim: the manifest bytes hash to
    // the pinned digest and name the oci-wasm media types.
    let manifest = std::fs::read(reg.blob_file(&got.manifest_digest)).unwrap();
    assert_eq!(sha256_digest(&manifest), got.manifest_digest);
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(m["config"]["mediaType"], WASM_MANIFEST_CONFIG_MEDIA_TYPE);
    assert_eq!(m["layers"][0]["mediaType"], WASM_LAYER_MEDIA_TYPE);

    // Cache layout and permissions.
    let layer_hex = &got.layer_digest["sha256:".len()..];
    let manifest_hex = &got.manifest_digest["sha256:".len()..];
    let layer_file = cache.join("blobs/sha256").join(layer_hex);
    assert_eq!(got.path, layer_file);
    assert_eq!(std::fs::read(&layer_file).unwrap(), WASM_A);
    let ref_file = cache.join("refs/sha256").join(manifest_hex);
    assert_eq!(
        std::fs::read_to_string(&ref_file).unwrap(),
        got.layer_digest
    );
    for p in [
        layer_file.clone(),
        cache.join("blobs/sha256").join(manifest_hex),
        ref_file,
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    for d in ["blobs", "blobs/sha256", "refs", "refs/sha256", "tags"] {
        assert_eq!(mode(&cache.join(d)), 0o700, "{d}");
    }

    // Second fetch: no traffic needed.
    let again = f.fetch(&r, PullPolicy::IfNotPresent).await.expect("cached");
    assert!(again.from_cache);
    assert_eq!(again.wasm, WASM_A);
    // Always goes to the registry even when cached.
    let online = f.fetch(&r, PullPolicy::Always).await.expect("always");
    assert!(!online.from_cache);
}

#[tokio::test]
async fn tampered_layer_is_refused() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("pusher"));
    let r = pinned(
        &f.push(&format!("{}/p/tamper:v1", reg.addr()), WASM_A)
            .await
            .unwrap(),
    );

    // Same length, different bytes, under the same digest.
    let blob = reg.blob_file(&sha256_digest(WASM_A));
    assert!(blob.exists(), "{}", blob.display());
    std::fs::write(&blob, b"\0asm\x0d\0\x01\x01").unwrap();

    let fresh = anon(&tmp.path().join("cache"));
    match fresh.fetch(&r, PullPolicy::IfNotPresent).await {
        Err(OciError::LayerDigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, sha256_digest(WASM_A));
            assert_eq!(actual, sha256_digest(b"\0asm\x0d\0\x01\x01"));
        }
        other => panic!("expected LayerDigestMismatch, got {other:?}"),
    }
    // Nothing unverified reached the cache.
    let blobs: Vec<_> = std::fs::read_dir(tmp.path().join("cache/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

#[tokio::test]
async fn manifest_swapped_under_pinned_digest_is_refused() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("pusher"));
    let a = pinned(
        &f.push(&format!("{}/p/swap:a", reg.addr()), WASM_A)
            .await
            .unwrap(),
    );
    let b = pinned(
        &f.push(&format!("{}/p/swap:b", reg.addr()), WASM_B)
            .await
            .unwrap(),
    );
    let (da, db) = (a.digest().unwrap(), b.digest().unwrap());
    assert_ne!(da, db);

    // The registry now serves manifest B (a valid policy manifest) when
    // asked for digest A.
    let manifest_b = std::fs::read(reg.blob_file(db)).unwrap();
    std::fs::write(reg.blob_file(da), &manifest_b).unwrap();

    let fresh = anon(&tmp.path().join("cache"));
    match fresh.fetch(&a, PullPolicy::IfNotPresent).await {
        Err(OciError::ManifestDigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, da);
            assert_eq!(actual, db);
        }
        other => panic!("expected ManifestDigestMismatch, got {other:?}"),
    }
}

/// Pushes an artifact with arbitrary media types through oci-client directly.
async fn push_raw(addr: &str, repo_tag: &str, config_type: &str, layer_type: &str) -> PolicyRef {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let (repo, tag) = repo_tag.split_once(':').unwrap();
    let reference = oci_client::Reference::with_tag(addr.into(), repo.into(), tag.into());
    let layers = vec![ImageLayer::new(WASM_A.to_vec(), layer_type.into(), None)];
    let config = Config::new(b"{}".to_vec(), config_type.into(), None);
    client
        .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .expect("raw push");
    let digest = client
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("digest");
    pinned(&format!("{addr}/{repo}@{digest}"))
}

#[tokio::test]
async fn wrong_media_types_are_refused() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("cache"));
    for (repo_tag, config_type, layer_type, part, found) in [
        (
            "p/tar:v1",
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            "application/vnd.oci.image.layer.v1.tar",
            "layer",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "p/cfg:v1",
            "application/vnd.oci.image.config.v1+json",
            WASM_LAYER_MEDIA_TYPE,
            "config",
            "application/vnd.oci.image.config.v1+json",
        ),
        (
            // oci-client's own (different) Wasm layer type.
            "p/other-wasm:v1",
            WASM_MANIFEST_CONFIG_MEDIA_TYPE,
            oci_client::manifest::WASM_LAYER_MEDIA_TYPE,
            "layer",
            oci_client::manifest::WASM_LAYER_MEDIA_TYPE,
        ),
    ] {
        let r = push_raw(reg.addr(), repo_tag, config_type, layer_type).await;
        match f.fetch(&r, PullPolicy::IfNotPresent).await {
            Err(OciError::WrongMediaType {
                what, found: got, ..
            }) => {
                assert_eq!(what, part, "{repo_tag}");
                assert_eq!(got, found, "{repo_tag}");
            }
            other => panic!("{repo_tag}: expected WrongMediaType, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn registry_down_serves_pinned_policy_from_cache() {
    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("cache"));
    let r = pinned(
        &f.push(&format!("{}/p/offline:v1", reg.addr()), WASM_A)
            .await
            .unwrap(),
    );
    assert!(
        !f.fetch(&r, PullPolicy::IfNotPresent)
            .await
            .unwrap()
            .from_cache
    );

    reg.stop();
    for pull in [PullPolicy::IfNotPresent, PullPolicy::Always] {
        let got = f.fetch(&r, pull).await.expect("served from cache");
        assert!(got.from_cache, "{pull:?}");
        assert_eq!(got.wasm, WASM_A);
    }
    // A fetcher reopened on the same cache dir (a daemon restart) too.
    let restarted = anon(&tmp.path().join("cache"));
    assert!(
        restarted
            .fetch(&r, PullPolicy::Always)
            .await
            .unwrap()
            .from_cache
    );

    // If the cached layer is corrupt it is dropped, and with the registry
    // down there is nothing left to serve.
    std::fs::write(
        restarted
            .fetch(&r, PullPolicy::IfNotPresent)
            .await
            .unwrap()
            .path,
        b"junk",
    )
    .unwrap();
    assert!(matches!(
        restarted.fetch(&r, PullPolicy::IfNotPresent).await,
        Err(OciError::NotCachedAndUnreachable { .. })
    ));
}

#[tokio::test]
async fn registry_down_without_cache_is_a_clear_error() {
    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let pusher = anon(&tmp.path().join("pusher"));
    let r = pinned(
        &pusher
            .push(&format!("{}/p/gone:v1", reg.addr()), WASM_A)
            .await
            .unwrap(),
    );
    reg.stop();

    let f = anon(&tmp.path().join("cache"));
    match f.fetch(&r, PullPolicy::IfNotPresent).await {
        Err(e @ OciError::NotCachedAndUnreachable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(reg.addr()), "{msg}");
        }
        other => panic!("expected NotCachedAndUnreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_cache_blob_is_deleted_and_refetched() {
    let Some(reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("cache"));
    let r = pinned(
        &f.push(&format!("{}/p/heal:v1", reg.addr()), WASM_B)
            .await
            .unwrap(),
    );
    let first = f.fetch(&r, PullPolicy::IfNotPresent).await.unwrap();
    std::fs::write(&first.path, b"\0asm but not the right bytes").unwrap();

    let healed = f.fetch(&r, PullPolicy::IfNotPresent).await.unwrap();
    assert!(!healed.from_cache, "a corrupt blob must be fetched again");
    assert_eq!(healed.wasm, WASM_B);
    assert_eq!(std::fs::read(&healed.path).unwrap(), WASM_B);
    assert_eq!(mode(&healed.path), 0o600);
    assert!(
        f.fetch(&r, PullPolicy::IfNotPresent)
            .await
            .unwrap()
            .from_cache
    );
}

#[tokio::test]
async fn tags_follow_their_pull_policy() {
    let Some(mut reg) = Registry::start_or_skip(None) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("cache"));
    let tag = format!("{}/p/tagged:stable", reg.addr());
    let a = f.push(&tag, WASM_A).await.unwrap();
    assert!(matches!(
        PolicyRef::parse(&tag),
        Err(OciError::TagWithoutPullPolicy { .. })
    ));
    let inp = PolicyRef::parse_with_pull_policy(&tag, Some(PullPolicy::IfNotPresent)).unwrap();

    let first = f.fetch(&inp, PullPolicy::IfNotPresent).await.unwrap();
    assert!(!first.from_cache);
    assert_eq!(Some(first.manifest_digest.as_str()), pinned(&a).digest());

    // The tag moves.
    let b = f.push(&tag, WASM_B).await.unwrap();
    let cached = f.fetch(&inp, PullPolicy::IfNotPresent).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(
        cached.wasm, WASM_A,
        "IfNotPresent keeps the cached resolution"
    );
    let online = f.fetch(&inp, PullPolicy::Always).await.unwrap();
    assert!(!online.from_cache);
    assert_eq!(online.wasm, WASM_B, "Always resolves the tag online");
    assert_eq!(Some(online.manifest_digest.as_str()), pinned(&b).digest());

    reg.stop();
    let offline = f.fetch(&inp, PullPolicy::IfNotPresent).await.unwrap();
    assert!(offline.from_cache);
    assert_eq!(offline.wasm, WASM_B, "the latest resolution was recorded");
    assert!(matches!(
        f.fetch(&inp, PullPolicy::Always).await,
        Err(OciError::NotCachedAndUnreachable { .. })
    ));
}

#[tokio::test]
async fn auth_anonymous_refused_basic_and_pull_secret_work() {
    if !afxdp_testnet::registry::installed_or_skip(HTPASSWD_BIN) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    afxdp_testnet::registry::write_htpasswd(&htpasswd, "user", "s3cret");
    let Some(reg) = Registry::start_or_skip(Some(&htpasswd)) else {
        return;
    };
    let basic = Auth::Basic {
        user: "user".into(),
        password: "s3cret".into(),
    };
    let tag = format!("{}/p/private:v1", reg.addr());

    // Push needs credentials too.
    match anon(&tmp.path().join("c0")).push(&tag, WASM_A).await {
        Err(OciError::Unauthorized { .. }) => {}
        other => panic!("anonymous push: expected Unauthorized, got {other:?}"),
    }
    let r = pinned(
        &fetcher(&tmp.path().join("c1"), basic.clone())
            .push(&tag, WASM_A)
            .await
            .expect("push with basic auth"),
    );

    match anon(&tmp.path().join("c2"))
        .fetch(&r, PullPolicy::IfNotPresent)
        .await
    {
        Err(OciError::Unauthorized { registry, .. }) => assert_eq!(registry, reg.addr()),
        other => panic!("anonymous fetch: expected Unauthorized, got {other:?}"),
    }
    let wrong = Auth::Basic {
        user: "user".into(),
        password: "wrong".into(),
    };
    assert!(matches!(
        fetcher(&tmp.path().join("c3"), wrong)
            .fetch(&r, PullPolicy::IfNotPresent)
            .await,
        Err(OciError::Unauthorized { .. })
    ));

    let got = fetcher(&tmp.path().join("c4"), basic)
        .fetch(&r, PullPolicy::IfNotPresent)
        .await
        .expect("basic auth fetch");
    assert_eq!(got.wasm, WASM_A);

    // dockerconfigjson: base64("user:s3cret") = dXNlcjpzM2NyZXQ=
    let secret = tmp.path().join("pull-secret.json");
    std::fs::write(
        &secret,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dXNlcjpzM2NyZXQ="}}}}}}"#,
            reg.addr()
        ),
    )
    .unwrap();
    let got = fetcher(&tmp.path().join("c5"), Auth::PullSecretFile(secret))
        .fetch(&r, PullPolicy::IfNotPresent)
        .await
        .expect("pull secret fetch");
    assert_eq!(got.wasm, WASM_A);
    assert!(!got.from_cache);
}

#[tokio::test]
async fn plain_http_only_for_loopback_or_insecure_registries() {
    // No registry and no traffic: refused before any connection.
    let tmp = tempfile::tempdir().unwrap();
    let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let f = anon(&tmp.path().join("cache"));
    let remote_http = pinned(&format!("http://registry.example.com:5000/p@{d}"));
    match f.fetch(&remote_http, PullPolicy::IfNotPresent).await {
        Err(OciError::InsecureNotAllowed { registry }) => {
            assert_eq!(registry, "registry.example.com:5000")
        }
        other => panic!("expected InsecureNotAllowed, got {other:?}"),
    }
    assert!(matches!(
        f.push("http://10.1.2.3:5000/p:v1", WASM_A).await,
        Err(OciError::InsecureNotAllowed { .. })
    ));
    // Without a scheme a remote registry gets TLS; loopback gets HTTP.
    let remote = pinned(&format!("registry.example.com:5000/p@{d}"));
    assert_eq!(f.scheme_for(&remote).unwrap(), Scheme::Https);
    for lo in [
        "127.0.0.1:5000",
        "127.9.9.9",
        "localhost:5000",
        "[::1]:5000",
    ] {
        let r = pinned(&format!("http://{lo}/p@{d}"));
        assert_eq!(f.scheme_for(&r).unwrap(), Scheme::Http, "{lo}");
    }
    // Marking the registry insecure allows HTTP.
    let insecure = Fetcher::new(FetcherConfig {
        cache_dir: tmp.path().join("cache2"),
        auth: Auth::Anonymous,
        insecure_registries: vec!["registry.example.com:5000".into()],
        timeout: Duration::from_secs(1),
    })
    .unwrap();
    assert_eq!(insecure.scheme_for(&remote_http).unwrap(), Scheme::Http);
    assert_eq!(insecure.scheme_for(&remote).unwrap(), Scheme::Http);
}

#[tokio::test]
async fn tag_without_pull_policy_and_non_wasm_push_are_refused() {
    assert!(matches!(
        PolicyRef::parse("127.0.0.1:5000/p/x:latest"),
        Err(OciError::TagWithoutPullPolicy { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    let f = anon(&tmp.path().join("cache"));
    assert!(matches!(
        f.push("127.0.0.1:1/p/x:v1", b"\x7fELF not wasm").await,
        Err(OciError::NotWasm { .. })
    ));
    assert!(matches!(
        f.push("127.0.0.1:1/p/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", WASM_A)
            .await,
        Err(OciError::InvalidReference { .. })
    ));
}
