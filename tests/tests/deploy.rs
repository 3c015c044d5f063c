//! The deployment artifacts (`deploy/`) against the code they deploy: the
//! DaemonSet passes only flags afxdp-dp has and mounts every host path it
//! names at the same path, the ConfigMap's config parses with afxdp-config,
//! the NetworkAttachmentDefinition speaks to afxdp-cni, the example pod is
//! unprivileged, and the Helm chart's templates only use values it defines.
//!
//! The flag check runs `afxdp-dp --help` (built next to the test binary, or in
//! `$AFXDP_BIN_DIR`); when the binary is not built it falls back to reading
//! the flags from afxdp-dp's clap definition, and says so on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Pools whose UDS sockets belong to this uid; the example pod runs as it.
const EXAMPLE_UID: u64 = 65534;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// One YAML document of a manifest file.
struct Doc {
    file: PathBuf,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn what(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file.display())
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// Every document of every YAML file under deploy/kubernetes (recursively).
fn manifests() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&deploy_dir().join("kubernetes"), &mut files);
    assert!(!files.is_empty(), "no manifests under deploy/kubernetes");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        for (i, part) in split_documents(&text).iter().enumerate() {
            let value: Value = serde_yaml::from_str(part).unwrap_or_else(|e| {
                panic!("{} document {}: invalid YAML: {e}", file.display(), i + 1)
            });
            if value.is_null() {
                continue; // an empty document (comments only, or a trailing `---`)
            }
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    docs
}

/// The documents of a multi-document YAML stream: split at `---` lines
/// (a `---` may carry a comment; `...` ends a document).
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        let head = line.split('#').next().unwrap_or("").trim_end();
        if head == "---" || head == "..." {
            docs.push(String::new());
        } else {
            let cur = docs.last_mut().expect("at least one document");
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs
}

fn one<'a>(docs: &'a [Doc], kind: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs.iter().filter(|d| d.kind() == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(|s| s.as_slice()).unwrap_or(&[])
}

fn strings(v: &Value) -> Vec<String> {
    seq(v)
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x:?}"))
                .to_string()
        })
        .collect()
}

/// A resource quantity as written (`"1"` or `1`).
fn quantity(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------- afxdp-dp flags

/// Long flags named in `--help` output.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("--") {
        let rest = &text[i + 2..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let starts_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        let before_ok =
            i == 0 || !text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-');
        if starts_ok && before_ok {
            out.insert(format!("--{name}"));
        }
    }
    out
}

/// afxdp-dp's flags: from `afxdp-dp --help`, else from its clap definition.
fn dp_flags() -> BTreeSet<String> {
    bin_flags("afxdp-dp", "host/dp/src/main.rs")
}

/// The long flags of binary `name`: from `name --help` when it is built,
/// else from its clap definition in `source` (relative to the workspace).
fn bin_flags(name: &str, source: &str) -> BTreeSet<String> {
    match afxdp_lab::bins::find(name) {
        Ok(bin) => {
            let out = std::process::Command::new(&bin)
                .arg("--help")
                .output()
                .unwrap_or_else(|e| panic!("run {name} --help: {e}"));
            assert!(out.status.success(), "{name} --help failed: {out:?}");
            let flags = flags_in(&String::from_utf8_lossy(&out.stdout));
            assert!(
                flags.len() > 2,
                "unexpected {name} --help output: {flags:?}"
            );
            flags
        }
        Err(e) => {
            eprintln!(
                "note: {e}; checking the flags against {source} instead \
                 (build {name} for the real check: cargo build -p {name})"
            );
            flags_from_source(&repo_root().join(source))
        }
    }
}

/// The `#[arg(long ...)]` fields of a clap derive struct, as `--kebab-case`
/// (or the name given as `long = "..."`). Attributes may span lines.
fn flags_from_source(path: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out: BTreeSet<String> = ["--help", "--version"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("#[arg(") {
        let body_start = i + "#[arg(".len();
        // The attribute's arguments, up to the matching parenthesis.
        let mut depth = 1;
        let mut body_end = body_start;
        for (j, c) in rest[body_start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                body_end = body_start + j;
                break;
            }
        }
        let body = &rest[body_start..body_end];
        rest = &rest[body_end..];
        let args: Vec<&str> = body.split(',').map(str::trim).collect();
        let explicit = args.iter().find_map(|a| {
            let v = a.strip_prefix("long")?.trim_start().strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_string())
        });
        if !args.contains(&"long") && explicit.is_none() {
            continue;
        }
        // The field: the first line after the attribute that is not another
        // attribute, a doc comment, or the attribute's closing `)]`.
        let field = rest.lines().skip(1).map(str::trim).find(|l| {
            !l.is_empty() && !l.starts_with("#[") && !l.starts_with("//") && !l.starts_with(')')
        });
        let name = match (explicit, field.and_then(|l| l.split_once(':'))) {
            (Some(name), _) => name,
            (None, Some((f, _))) => f.trim().trim_start_matches("pub ").replace('_', "-"),
            (None, None) => continue,
        };
        out.insert(format!("--{name}"));
    }
    out
}

/// `--flag=value`, `--flag value` and bare `--flag` arguments.
fn parse_args(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        assert!(
            a.starts_with("--"),
            "argument {a:?} is not a long flag (afxdp-dp takes no positionals)"
        );
        if let Some((flag, value)) = a.split_once('=') {
            out.push((flag.to_string(), Some(value.to_string())));
        } else if args.get(i + 1).is_some_and(|n| !n.starts_with("--")) {
            out.push((a.clone(), Some(args[i + 1].clone())));
            i += 1;
        } else {
            out.push((a.clone(), None));
        }
        i += 1;
    }
    out
}

/// `$(NAME)` references (Kubernetes expansion of env vars in args).
fn env_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("$(") {
        let after = &rest[i + 2..];
        let Some(j) = after.find(')') else { break };
        out.push(after[..j].to_string());
        rest = &after[j + 1..];
    }
    out
}

fn daemonset_container(ds: &Doc) -> &Value {
    let containers = seq(&ds.value["spec"]["template"]["spec"]["containers"]);
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("afxdp-dp"))
        .unwrap_or_else(|| panic!("{}: no container named afxdp-dp", ds.what()))
}

fn dp_args(ds: &Doc) -> BTreeMap<String, String> {
    let c = daemonset_container(ds);
    let parsed = parse_args(&strings(&c["args"]));
    let mut map = BTreeMap::new();
    for (flag, value) in parsed {
        assert!(
            map.insert(flag.clone(), value.unwrap_or_default())
                .is_none(),
            "{flag} given twice"
        );
    }
    map
}

#[test]
fn manifests_parse_and_hold_the_expected_objects() {
    let docs = manifests();
    for d in &docs {
        assert!(
            d.value["apiVersion"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{}: no apiVersion",
            d.file.display()
        );
        assert!(!d.kind().is_empty(), "{}: no kind", d.file.display());
        assert!(
            !d.name().is_empty(),
            "{}: no metadata.name",
            d.file.display()
        );
        // Cluster-scoped kinds have no namespace.
        if !matches!(
            d.kind(),
            "Namespace" | "ClusterRole" | "ClusterRoleBinding" | "CSIDriver"
        ) {
            assert!(
                d.value["metadata"]["namespace"].as_str().is_some(),
                "{}: no namespace",
                d.what()
            );
        }
    }
    let system: Vec<&Doc> = docs
        .iter()
        .filter(|d| d.kind() == "Namespace" && d.name() == "afxdp-system")
        .collect();
    assert_eq!(system.len(), 1, "namespace afxdp-system");
    assert_eq!(
        system[0].value["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("privileged"),
        "afxdp-system must admit the privileged afxdp-dp"
    );
    for kind in ["ConfigMap", "ServiceAccount", "DaemonSet"] {
        let d = one(&docs, kind);
        assert_eq!(
            d.value["metadata"]["namespace"].as_str(),
            Some("afxdp-system"),
            "{}",
            d.what()
        );
    }
    one(&docs, "NetworkAttachmentDefinition");
    one(&docs, "Pod");
    // afxdp-dp reads pods (annotations/labels for policies) and creates
    // Events on them (failures), nothing else.
    let role = one(&docs, "ClusterRole");
    let rules = role.value["rules"].as_sequence().expect("rules");
    let grants: Vec<(Vec<&str>, Vec<&str>)> = rules
        .iter()
        .map(|r| {
            let list = |k: &str| -> Vec<&str> {
                r[k].as_sequence()
                    .map(|v| v.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default()
            };
            assert_eq!(
                list("apiGroups"),
                vec![""],
                "core API only: {}",
                role.what()
            );
            (list("resources"), list("verbs"))
        })
        .collect();
    assert_eq!(
        grants,
        vec![
            (vec!["pods"], vec!["get", "list", "patch"]),
            (vec!["events"], vec!["create"])
        ],
        "pods read (one at CNI ADD, the node's pending ones at Allocate) and annotated (CSI mode), events created: {}",
        role.what()
    );
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding.value["roleRef"]["name"].as_str(), Some(role.name()));
    let ds = one(&docs, "DaemonSet");
    assert_eq!(
        ds.value["spec"]["template"]["spec"]["automountServiceAccountToken"].as_bool(),
        Some(true)
    );
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(
        ds.value["spec"]["template"]["spec"]["serviceAccountName"].as_str(),
        Some(sa.name())
    );
}

#[test]
fn daemonset_args_are_afxdp_dp_flags() {
    let docs = manifests();
    let ds = one(&docs, "DaemonSet");
    let known = dp_flags();
    let args = dp_args(ds);
    for flag in args.keys() {
        assert!(
            known.contains(flag),
            "{flag} is not an afxdp-dp flag (known: {known:?})"
        );
    }
    for flag in [
        "--config",
        "--device-plugin-dir",
        "--pod-resources-socket",
        "--state-dir",
        "--node-api-socket",
        "--node-name",
    ] {
        assert!(args.contains_key(flag), "DaemonSet does not pass {flag}");
    }
    assert_eq!(args["--config"], "/etc/afxdp/config.json");
    // $(VAR) references are defined in the container's env; the node name
    // comes from the downward API.
    let c = daemonset_container(ds);
    let env: BTreeMap<&str, &Value> = seq(&c["env"])
        .iter()
        .map(|e| (e["name"].as_str().expect("env name"), e))
        .collect();
    for value in args.values() {
        for var in env_refs(value) {
            assert!(
                env.contains_key(var.as_str()),
                "$({var}) is not defined in the container's env"
            );
        }
    }
    let node_var = env_refs(&args["--node-name"]);
    assert_eq!(
        node_var.len(),
        1,
        "--node-name should be $(VAR): {}",
        args["--node-name"]
    );
    assert_eq!(
        env[node_var[0].as_str()]["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );
}

/// The container's mount holding `path` (longest mountPath prefix) and its volume.
fn mount_for<'a>(
    pod_spec: &'a Value,
    container: &'a Value,
    path: &str,
) -> Option<(&'a Value, &'a Value)> {
    let mount = seq(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|mp| Path::new(path).starts_with(mp))
        })
        .max_by_key(|m| m["mountPath"].as_str().map(str::len))?;
    let volume = seq(&pod_spec["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    Some((mount, volume))
}

#[test]
fn daemonset_mounts_every_path_it_names() {
    let docs = manifests();
    let ds = one(&docs, "DaemonSet");
    let spec = &ds.value["spec"]["template"]["spec"];
    let c = daemonset_container(ds);
    let args = dp_args(ds);

    // Host paths: same path inside and outside (the kubelet and afxdp-cni use them).
    for flag in [
        "--device-plugin-dir",
        "--pod-resources-socket",
        "--state-dir",
        "--node-api-socket",
    ] {
        let path = &args[flag];
        let (mount, volume) =
            mount_for(spec, c, path).unwrap_or_else(|| panic!("{flag} {path}: not mounted"));
        let host = volume["hostPath"]["path"].as_str().unwrap_or_else(|| {
            panic!(
                "{flag} {path}: volume {:?} is not a hostPath",
                volume["name"]
            )
        });
        assert_eq!(
            Some(host),
            mount["mountPath"].as_str(),
            "{flag}: host path and container path differ"
        );
    }
    // The state dir: afxdp-dp mounts bpffs under <state-dir>/pins; the host must see it.
    let (state, _) = mount_for(spec, c, &args["--state-dir"]).expect("state dir mount");
    assert_eq!(
        state["mountPropagation"].as_str(),
        Some("Bidirectional"),
        "--state-dir mount propagation"
    );
    assert!(
        state["readOnly"].as_bool() != Some(true),
        "--state-dir must be writable"
    );
    // Bidirectional propagation is only allowed in privileged containers.
    assert_eq!(
        c["securityContext"]["privileged"].as_bool(),
        Some(true),
        "afxdp-dp must be privileged"
    );
    assert_eq!(
        spec["hostNetwork"].as_bool(),
        Some(true),
        "afxdp-dp works on the node's netns"
    );
    // The host's bpffs.
    let (_, bpf) = mount_for(spec, c, "/sys/fs/bpf").expect("/sys/fs/bpf mounted");
    assert_eq!(bpf["hostPath"]["path"].as_str(), Some("/sys/fs/bpf"));

    // The config comes from the ConfigMap, under the key the flag names.
    let config = Path::new(&args["--config"]);
    let (mount, volume) = mount_for(spec, c, &args["--config"]).expect("--config mounted");
    let cm = one(&docs, "ConfigMap");
    assert_eq!(
        volume["configMap"]["name"].as_str(),
        Some(cm.name()),
        "--config volume is the ConfigMap"
    );
    let key = config
        .strip_prefix(mount["mountPath"].as_str().expect("mountPath"))
        .expect("under mount");
    let key = key.to_str().expect("utf-8");
    assert!(
        cm.value["data"][key].as_str().is_some(),
        "ConfigMap has no key {key:?}"
    );

    // Probes ask the metrics endpoint afxdp-dp serves (--metrics-address).
    let metrics = args["--metrics-address"]
        .parse::<std::net::SocketAddr>()
        .expect("--metrics-address is host:port");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            get["port"].as_u64(),
            Some(u64::from(metrics.port())),
            "{probe}"
        );
        let host: std::net::IpAddr = get["host"]
            .as_str()
            .expect("probe host")
            .parse()
            .expect("ip");
        assert!(
            metrics.ip().is_unspecified() || metrics.ip() == host,
            "{probe} asks {host}, afxdp-dp serves {metrics}"
        );
    }
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                quantity(&c["resources"][k][r]).is_some(),
                "afxdp-dp resources.{k}.{r}"
            );
        }
    }
    assert!(!seq(&spec["tolerations"]).is_empty(), "tolerations");
    assert_eq!(
        ds.value["spec"]["updateStrategy"]["type"].as_str(),
        Some("RollingUpdate")
    );

    // The init container installs afxdp-cni into the host's /opt/cni/bin.
    let init = seq(&spec["initContainers"])
        .iter()
        .find(|i| strings(&i["command"]).join(" ").contains("afxdp-cni"))
        .expect("an init container installing afxdp-cni");
    let target = seq(&init["volumeMounts"])
        .iter()
        .find_map(|m| {
            let v = seq(&spec["volumes"])
                .iter()
                .find(|v| v["name"] == m["name"])?;
            if v["hostPath"]["path"].as_str() == Some("/opt/cni/bin") {
                m["mountPath"].as_str()
            } else {
                None
            }
        })
        .expect("init container mounts the host's /opt/cni/bin");
    // Run its command (the image's afxdpctl) against a scratch directory: it
    // installs the binary under both names (afxdp: upstream NADs' type),
    // executable, and leaves no temporary file.
    let scratch = tempfile::tempdir().expect("tempdir");
    let source = scratch.path().join("afxdp-cni-built");
    std::fs::write(&source, b"plugin").expect("a stand-in binary");
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    let command = strings(&init["command"]);
    let (exe, args) = command.split_first().expect("init command");
    assert_eq!(exe, "/usr/local/bin/afxdpctl", "the image has no shell");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("/usr/local/bin/afxdp-cni", &source.display().to_string())
                .replace(target, &bin.display().to_string())
        })
        .collect();
    let ctl = afxdp_lab::bins::find("afxdpctl").expect("afxdpctl built");
    let out = std::process::Command::new(ctl)
        .args(&args)
        .output()
        .expect("afxdpctl");
    assert!(out.status.success(), "install-cni: {out:?}");
    for name in ["afxdp-cni", "afxdp"] {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(bin.join(name))
            .unwrap_or_else(|e| panic!("{name} not installed: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}");
        assert_eq!(std::fs::read(bin.join(name)).expect("read"), b"plugin");
    }
    assert_eq!(
        std::fs::read_dir(&bin).expect("bin").count(),
        2,
        "temporary files left"
    );
}

// ---------------------------------------------------------------- config

fn config_texts(cm: &Doc) -> Vec<(String, String)> {
    let data = cm.value["data"].as_mapping().expect("ConfigMap data");
    data.iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .filter(|(k, _)| k.ends_with(".json"))
        .collect()
}

#[test]
fn configmap_configs_parse_with_afxdp_config() {
    let docs = manifests();
    let cm = one(&docs, "ConfigMap");
    let texts = config_texts(cm);
    assert!(
        texts.iter().any(|(k, _)| k == "config.json"),
        "ConfigMap has no config.json"
    );
    for (key, text) in &texts {
        let config =
            afxdp_config::parse(text).unwrap_or_else(|e| panic!("{key} does not parse:\n{e}"));
        assert!(!config.pools.is_empty(), "{key}: no pools");
        for w in &config.warnings {
            eprintln!("{key}: warning: {w}");
        }
        assert!(
            config.warnings.is_empty(),
            "{key}: warnings {:?}",
            config.warnings
        );
    }
    let (_, text) = texts
        .iter()
        .find(|(k, _)| k == "config.json")
        .expect("config.json");
    let config = afxdp_config::parse(text).expect("config.json");
    assert_eq!(
        config.source_format,
        afxdp_config::SourceFormat::Upstream,
        "config.json is upstream format"
    );
    let pool = &config.pools[0];
    assert!(
        !pool.selector.drivers.is_empty(),
        "the example pool selects by driver"
    );
    assert_eq!(
        u64::from(pool.uid),
        EXAMPLE_UID,
        "the example pool's uid is the example pod's"
    );
}

fn pool_names(docs: &[Doc]) -> BTreeSet<String> {
    let cm = one(docs, "ConfigMap");
    let text = cm.value["data"]["config.json"]
        .as_str()
        .expect("config.json");
    afxdp_config::parse(text)
        .expect("config.json")
        .pools
        .iter()
        .map(|p| p.name.clone())
        .collect()
}

// ---------------------------------------------------------------- NAD and pod

#[test]
fn network_attachment_uses_afxdp_cni_and_a_configured_pool() {
    let docs = manifests();
    let nad = one(&docs, "NetworkAttachmentDefinition");
    assert_eq!(nad.value["apiVersion"].as_str(), Some("k8s.cni.cncf.io/v1"));
    let resource = nad.value["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
        .as_str()
        .expect("resourceName annotation");
    let pool = resource
        .strip_prefix("afxdp/")
        .unwrap_or_else(|| panic!("resource {resource} is not afxdp/<pool>"));
    assert!(
        pool_names(&docs).contains(pool),
        "pool {pool} is not in config.json"
    );

    let conf: serde_json::Value =
        serde_json::from_str(nad.value["spec"]["config"].as_str().expect("spec.config"))
            .expect("spec.config JSON");
    assert_eq!(conf["type"], "afxdp-cni");
    assert!(
        matches!(conf["cniVersion"].as_str(), Some("1.0.0" | "1.1.0")),
        "cniVersion {}",
        conf["cniVersion"]
    );
    assert!(
        conf["name"].as_str().is_some_and(|n| !n.is_empty()),
        "CNI network name"
    );
    let ds = one(&docs, "DaemonSet");
    assert_eq!(
        conf["nodeApiSocket"].as_str(),
        Some(dp_args(ds)["--node-api-socket"].as_str()),
        "nodeApiSocket must be afxdp-dp's --node-api-socket"
    );
}

#[test]
fn example_pod_is_unprivileged_and_requests_the_pool() {
    let docs = manifests();
    let pod = one(&docs, "Pod");
    let nad = one(&docs, "NetworkAttachmentDefinition");
    let spec = &pod.value["spec"];
    assert!(spec["hostNetwork"].as_bool() != Some(true), "hostNetwork");
    assert!(spec["hostPID"].as_bool() != Some(true), "hostPID");
    assert!(
        seq(&spec["volumes"])
            .iter()
            .all(|v| v["hostPath"].is_null()),
        "the pod mounts no hostPath itself"
    );

    // Multus annotation names the NAD (`name`, `ns/name`, or a JSON list).
    let networks = pod.value["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
        .as_str()
        .expect("networks");
    assert!(
        networks.contains(nad.name()),
        "pod networks {networks:?} do not name {}",
        nad.name()
    );
    assert_eq!(
        pod.value["metadata"]["namespace"], nad.value["metadata"]["namespace"],
        "pod and NAD namespace"
    );
    let resource = nad.value["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
        .as_str()
        .expect("resource");
    let pool = resource.trim_start_matches("afxdp/");

    let app_flags = bin_flags("afxdp-pod-app", "host/pod-app/src/bin/afxdp-pod-app.rs");
    let pod_sc = &spec["securityContext"];
    // The app updates the XSKMAP with bpf(), which RuntimeDefault seccomp denies
    // to a container without CAP_BPF/CAP_SYS_ADMIN.
    for c in seq(&spec["containers"])
        .iter()
        .map(|c| &c["securityContext"])
        .chain([pod_sc])
    {
        assert_ne!(
            c["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault"),
            "RuntimeDefault seccomp blocks bpf()"
        );
    }
    for c in seq(&spec["containers"])
        .iter()
        .chain(seq(&spec["initContainers"]))
    {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or(pod_sc["runAsNonRoot"].as_bool());
        assert_eq!(non_root, Some(true), "{name}: runAsNonRoot");
        let uid = sc["runAsUser"].as_u64().or(pod_sc["runAsUser"].as_u64());
        assert_eq!(uid, Some(EXAMPLE_UID), "{name}: runAsUser (the pool's uid)");
        assert!(
            sc["privileged"].as_bool() != Some(true),
            "{name}: privileged"
        );
        let drop = strings(&sc["capabilities"]["drop"]);
        assert!(
            drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")),
            "{name}: capabilities.drop must be ALL"
        );
        let add = strings(&sc["capabilities"]["add"]);
        assert_eq!(
            add,
            vec!["NET_RAW".to_string()],
            "{name}: only NET_RAW is added"
        );

        for k in ["requests", "limits"] {
            assert_eq!(
                quantity(&c["resources"][k][resource]).as_deref(),
                Some("1"),
                "{name}: resources.{k}.{resource}"
            );
        }
        // The example app's arguments are its flags.
        let list = strings(&c["args"]);
        if strings(&c["command"])
            .iter()
            .any(|a| a.ends_with("afxdp-pod-app"))
        {
            for (flag, _) in parse_args(&list) {
                assert!(
                    app_flags.contains(&flag),
                    "{name}: {flag} is not an afxdp-pod-app flag ({app_flags:?})"
                );
            }
        }
        // The app reaches the UDS of its device through the env the device plugin sets.
        let args = list.join(" ");
        let env_var = afxdp_config::env_var_name(pool);
        assert!(
            args.contains(&format!("/tmp/afxdp_dp/$({env_var})/afxdp.sock")),
            "{name}: args should point --uds at /tmp/afxdp_dp/$({env_var})/afxdp.sock: {args}"
        );
        let env: BTreeSet<&str> = seq(&c["env"])
            .iter()
            .filter_map(|e| e["name"].as_str())
            .collect();
        for var in env_refs(&args) {
            assert!(
                var == env_var || env.contains(var.as_str()),
                "{name}: $({var}) is not defined"
            );
        }
    }
}

// ---------------------------------------------------------------- Helm chart

fn chart_dir() -> PathBuf {
    deploy_dir().join("helm/afxdp-rs")
}

fn chart_values() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    serde_yaml::from_str(&text).expect("values.yaml parses")
}

/// `.Values.a.b.c` paths used in a template.
fn values_refs(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(".Values.") {
        let rest = &text[i + ".Values.".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        let segs: Vec<String> = path
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

#[test]
fn helm_chart_values_parse_and_templates_use_only_defined_values() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("afxdp-rs"));
    assert!(chart["version"].as_str().is_some(), "Chart.yaml version");

    let values = chart_values();
    let mut templates = Vec::new();
    for e in std::fs::read_dir(chart_dir().join("templates")).expect("templates dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            templates.push(p);
        }
    }
    templates.sort();
    assert!(templates.len() >= 4, "templates: {templates:?}");
    let mut used = 0;
    for t in &templates {
        let text = std::fs::read_to_string(t).expect("template");
        for segs in values_refs(&text) {
            used += 1;
            let mut v = &values;
            for (i, s) in segs.iter().enumerate() {
                match v {
                    Value::Mapping(m) => match m.get(s.as_str()) {
                        Some(next) => v = next,
                        None => panic!(
                            "{}: .Values.{} is not in values.yaml (no {:?})",
                            t.display(),
                            segs.join("."),
                            segs[..=i].join(".")
                        ),
                    },
                    // Below a list or a scalar the template indexes data, not values.yaml keys.
                    _ => break,
                }
            }
        }
    }
    assert!(used > 10, "templates barely use values ({used} references)");
}

#[test]
fn helm_chart_agrees_with_the_plain_manifests() {
    // The default config of the chart is a valid afxdp-dp config (Helm renders it with toJson).
    let values = chart_values();
    let json = serde_json::to_string(&values["config"]).expect("config as JSON");
    let config = afxdp_config::parse(&json)
        .unwrap_or_else(|e| panic!("values.yaml config does not parse:\n{e}"));
    let docs = manifests();
    let chart_pools: BTreeSet<String> = config.pools.iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        chart_pools,
        pool_names(&docs),
        "chart and manifests configure the same pools"
    );

    // The chart's DaemonSet passes the same afxdp-dp flags, all of them known.
    let template = std::fs::read_to_string(chart_dir().join("templates/daemonset.yaml"))
        .expect("daemonset template");
    // And installs the CNI plugin the same way (both names).
    let ds_text = std::fs::read_to_string(deploy_dir().join("kubernetes/30-daemonset.yaml"))
        .expect("daemonset manifest");
    let install = |t: &str| {
        t.lines()
            .map(str::trim)
            .skip_while(|l| *l != "- /usr/local/bin/afxdpctl")
            .take_while(|l| l.starts_with("- "))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        install(&ds_text).contains(&"- install-cni".to_string()),
        "no afxdpctl install-cni command found"
    );
    assert_eq!(
        install(&template),
        install(&ds_text),
        "install-cni commands differ"
    );
    let ds = one(&docs, "DaemonSet");
    let known = dp_flags();
    for flag in dp_args(ds).keys() {
        assert!(
            template.contains(&format!("- {flag}")),
            "chart DaemonSet does not pass {flag}"
        );
    }
    // Every other "- --flag" line is an afxdp-dp argument.
    let install_lines = install(&template);
    for line in template
        .lines()
        .map(str::trim)
        .filter(|l| !install_lines.iter().any(|i| i == l))
    {
        if let Some(arg) = line.strip_prefix("- --") {
            let flag = format!("--{}", arg.split('=').next().unwrap_or(""));
            assert!(known.contains(&flag), "chart passes unknown flag {flag}");
        }
    }
    for needle in [
        "mountPropagation: Bidirectional",
        "privileged: true",
        "hostNetwork: true",
        "afxdp-cni",
    ] {
        assert!(
            template.contains(needle),
            "chart DaemonSet lacks {needle:?}"
        );
    }
}

#[test]
fn source_scanner_reads_clap_derive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("main.rs");
    std::fs::write(
        &src,
        "struct Cli {\n    /// a\n    #[arg(long, default_value = \"x\")]\n    config: PathBuf,\n    \
         #[arg(\n        long,\n        env = \"E\",\n        default_value = \"/a(b)\"\n    )]\n    \
         device_plugin_dir: PathBuf,\n    #[arg(long = \"other-name\")]\n    x: u32,\n    \
         #[arg(short)]\n    verbose: bool,\n}\n",
    )
    .expect("write");
    let flags = flags_from_source(&src);
    let want: BTreeSet<String> = [
        "--help",
        "--version",
        "--config",
        "--device-plugin-dir",
        "--other-name",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(flags, want);
}

#[test]
fn flag_scanner_reads_clap_help() {
    let help = "Usage: afxdp-dp [OPTIONS]\n\nOptions:\n      --config <CONFIG>  Config file [env: AFXDP_CONFIG=] [default: /etc/afxdp/config.json]\n      --state-dir <STATE_DIR>\n  -h, --help  Print help\n";
    let flags = flags_in(help);
    assert_eq!(
        flags,
        ["--config", "--state-dir", "--help"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    let parsed = parse_args(&["--a=1".into(), "--b".into(), "2".into(), "--c".into()]);
    assert_eq!(
        parsed,
        vec![
            ("--a".into(), Some("1".into())),
            ("--b".into(), Some("2".into())),
            ("--c".into(), None)
        ]
    );
    assert_eq!(
        env_refs("x=$(A)/$(B_C)"),
        vec!["A".to_string(), "B_C".to_string()]
    );
    assert_eq!(split_documents("a: 1\n---\nb: 2\n--- # c\n").len(), 3);
}
