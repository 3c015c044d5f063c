//! A local HTTP fake of the Kubernetes API server for the pod reads afxdp-dp
//! makes: `GET /api/v1/namespaces/{ns}/pods/{name}` (CNI ADD: the pod's
//! annotations and labels) and `GET /api/v1/pods?fieldSelector=...` with
//! `spec.nodeName` and `status.phase` (Allocate: which pod kubelet is
//! admitting), `POST /api/v1/namespaces/{ns}/events` (allocation failures
//! reported on the pod), `PATCH .../pods/{name}` with a JSON merge patch of
//! `metadata.annotations` (the CSI mode's annotations), plus a kubeconfig
//! that points kube-rs at it. Each pod has a UID and may have a pod
//! `securityContext` (`runAsUser`, `fsGroup`).
//! Requests (and event bodies) are recorded so tests can assert them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A pod as the fake serves it (one container, `app`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FakePod {
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    /// `spec.nodeName`; `None` while unscheduled.
    node_name: Option<String>,
    /// `status.phase` (`Pending` when empty).
    phase: String,
    /// The container's extended-resource limits (= requests), e.g. `afxdp/pool` → 1.
    limits: BTreeMap<String, u32>,
    /// Creation order (older pods first); set by the fake.
    created: u64,
    /// The pod `securityContext`'s `runAsUser` and `fsGroup`.
    run_as_user: Option<u32>,
    fs_group: Option<u32>,
}

#[derive(Default)]
struct Pods {
    pods: BTreeMap<(String, String), FakePod>,
    next_created: u64,
}

/// The fake; stops on drop.
pub struct FakeApiServer {
    addr: String,
    pods: Arc<Mutex<Pods>>,
    requests: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Listen on 127.0.0.1 (a free port) and serve on a thread.
    ///
    /// # Errors
    /// Binding the listener.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let pods: Arc<Mutex<Pods>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let events: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, r, e, s) = (pods.clone(), requests.clone(), events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Blocking accept; Drop wakes it with a connection of its own.
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &p, &r, &e);
                }
            }
        });
        Ok(Self {
            addr,
            pods,
            requests,
            events,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add or replace a pod's metadata (kept: its node, phase and limits).
    pub fn set_pod(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) {
        self.update(namespace, name, |p| {
            p.annotations = annotations;
            p.labels = labels;
        });
    }

    /// The scheduler bound the pod to `node`; its container asks for
    /// `count` of `resource`. Phase `Pending` (kubelet has not started it).
    pub fn schedule_pod(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        resource: &str,
        count: u32,
    ) {
        self.update(namespace, name, |p| {
            p.node_name = Some(node.to_string());
            p.phase = "Pending".into();
            p.limits.insert(resource.to_string(), count);
        });
    }

    /// Set the pod `securityContext`'s `runAsUser` and `fsGroup`.
    pub fn set_security(
        &self,
        namespace: &str,
        name: &str,
        run_as_user: Option<u32>,
        fs_group: Option<u32>,
    ) {
        self.update(namespace, name, |p| {
            p.run_as_user = run_as_user;
            p.fs_group = fs_group;
        });
    }

    /// The pod's `metadata.uid`, if it exists.
    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = self.pods.lock().ok()?;
        let pod = pods.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some(uid(namespace, name, pod))
    }

    /// The pod's annotations, if it exists.
    pub fn annotations(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>> {
        let pods = self.pods.lock().ok()?;
        let pod = pods.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some(pod.annotations.clone())
    }

    /// Set `status.phase` (e.g. `Running` once the containers started).
    pub fn set_phase(&self, namespace: &str, name: &str, phase: &str) {
        self.update(namespace, name, |p| p.phase = phase.to_string());
    }

    /// Delete a pod.
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        if let Ok(mut p) = self.pods.lock() {
            p.pods.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    fn update(&self, namespace: &str, name: &str, f: impl FnOnce(&mut FakePod)) {
        if let Ok(mut p) = self.pods.lock() {
            let created = p.next_created;
            let pod = p
                .pods
                .entry((namespace.to_string(), name.to_string()))
                .or_insert_with(|| FakePod {
                    created,
                    phase: "Pending".into(),
                    ..FakePod::default()
                });
            f(pod);
            if pod.created == created {
                p.next_created += 1;
            }
        }
    }

    /// Request lines received so far (`GET /api/v1/...`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The Events posted so far, as sent.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Write a kubeconfig for this server into `dir`; returns its path.
    ///
    /// # Errors
    /// Writing the file.
    pub fn write_kubeconfig(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: agent\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: agent\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn map_json(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("\"{}\":\"{}\"", json_escape(k), json_escape(v)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// One request per connection (`Connection: close`).
fn serve(
    conn: TcpStream,
    pods: &Mutex<Pods>,
    requests: &Mutex<Vec<String>>,
    events: &Mutex<Vec<serde_json::Value>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request_line = line.trim().to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0).min(1 << 20);
            }
        }
    }
    let mut body_in = vec![0u8; length];
    std::io::Read::read_exact(&mut reader, &mut body_in)?;
    if let Ok(mut r) = requests.lock() {
        r.push(request_line.clone());
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = request_line.starts_with("GET ");
    let post = request_line.starts_with("POST ");
    let patch = request_line.starts_with("PATCH ");
    let (status, body) = match parts.as_slice() {
        ["api", "v1", "namespaces", _, "events"] if post => {
            match serde_json::from_slice::<serde_json::Value>(&body_in) {
                Ok(ev) => {
                    if let Ok(mut e) = events.lock() {
                        e.push(ev.clone());
                    }
                    ("201 Created", ev.to_string())
                }
                Err(e) => (
                    "400 Bad Request",
                    status_json(400, "BadRequest", &e.to_string()),
                ),
            }
        }
        ["api", "v1", "namespaces", ns, "pods", name] if get => {
            let found = pods
                .lock()
                .ok()
                .and_then(|p| p.pods.get(&(ns.to_string(), name.to_string())).cloned());
            match found {
                Some(pod) => ("200 OK", pod_json(ns, name, &pod)),
                None => (
                    "404 Not Found",
                    status_json(404, "NotFound", &format!("pods \"{name}\" not found")),
                ),
            }
        }
        ["api", "v1", "namespaces", ns, "pods", name] if patch => {
            match patch_annotations(pods, (ns, name), &body_in) {
                Ok(Some(body)) => ("200 OK", body),
                Ok(None) => (
                    "404 Not Found",
                    status_json(404, "NotFound", &format!("pods \"{name}\" not found")),
                ),
                Err(msg) => ("400 Bad Request", status_json(400, "BadRequest", &msg)),
            }
        }
        ["api", "v1", "pods"] if get => match list_pods(pods, query) {
            Ok(body) => ("200 OK", body),
            Err(msg) => ("400 Bad Request", status_json(400, "BadRequest", &msg)),
        },
        _ => (
            "404 Not Found",
            status_json(404, "NotFound", "not served by the fake"),
        ),
    };
    let mut conn = reader.into_inner();
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"{}\",\"reason\":\"{reason}\",\"code\":{code}}}",
        json_escape(message)
    )
}

/// A pod's UID: stable for its name and creation.
fn uid(namespace: &str, name: &str, pod: &FakePod) -> String {
    format!("fake-{namespace}-{name}-{}", pod.created)
}

/// A JSON merge patch of `metadata.annotations` (a `null` value removes the
/// key; nothing else may be patched); the patched pod, `None` when absent.
fn patch_annotations(
    pods: &Mutex<Pods>,
    (namespace, name): (&str, &str),
    body: &[u8],
) -> Result<Option<String>, String> {
    let patch: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let only_annotations = patch.as_object().is_some_and(|o| o.len() == 1)
        && patch["metadata"].as_object().is_some_and(|o| o.len() == 1);
    let Some(ann) = patch["metadata"]["annotations"]
        .as_object()
        .filter(|_| only_annotations)
    else {
        return Err("the fake patches metadata.annotations only".into());
    };
    let mut pods = pods.lock().map_err(|_| "poisoned".to_string())?;
    let Some(pod) = pods
        .pods
        .get_mut(&(namespace.to_string(), name.to_string()))
    else {
        return Ok(None);
    };
    for (k, v) in ann {
        match v {
            serde_json::Value::Null => {
                pod.annotations.remove(k);
            }
            serde_json::Value::String(s) => {
                pod.annotations.insert(k.clone(), s.clone());
            }
            other => return Err(format!("annotation {k}: not a string: {other}")),
        }
    }
    Ok(Some(pod_json(namespace, name, pod)))
}

fn pod_json(namespace: &str, name: &str, pod: &FakePod) -> String {
    let c = pod.created;
    let created = format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        (c / 3600) % 24,
        (c / 60) % 60,
        c % 60
    );
    let limits: BTreeMap<String, String> = pod
        .limits
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let node = pod
        .node_name
        .as_ref()
        .map(|n| format!("\"nodeName\":\"{}\",", json_escape(n)))
        .unwrap_or_default();
    let phase = if pod.phase.is_empty() {
        "Pending"
    } else {
        &pod.phase
    };
    let security = serde_json::json!({
        "runAsUser": pod.run_as_user,
        "fsGroup": pod.fs_group,
    });
    let uid = json_escape(&uid(namespace, name, pod));
    format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"{}\",\"namespace\":\"{}\",\"uid\":\"{uid}\",\"creationTimestamp\":\"{created}\",\"annotations\":{},\"labels\":{}}},\"spec\":{{{node}\"securityContext\":{security},\"containers\":[{{\"name\":\"app\",\"resources\":{{\"limits\":{l},\"requests\":{l}}}}}]}},\"status\":{{\"phase\":\"{}\"}}}}",
        json_escape(name),
        json_escape(namespace),
        map_json(&pod.annotations),
        map_json(&pod.labels),
        json_escape(phase),
        l = map_json(&limits),
    )
}

/// `%XX` and `+` decoding of a query value.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /api/v1/pods`: every pod, filtered by a `fieldSelector` of
/// `spec.nodeName` and `status.phase` equalities (as the API server; any
/// other field is refused as it refuses unsupported ones).
fn list_pods(pods: &Mutex<Pods>, query: &str) -> Result<String, String> {
    let mut node: Option<String> = None;
    let mut phase: Option<String> = None;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k != "fieldSelector" {
            continue;
        }
        for term in percent_decode(v).split(',').filter(|t| !t.is_empty()) {
            match term.split_once('=') {
                Some(("spec.nodeName", n)) => node = Some(n.to_string()),
                Some(("status.phase", p)) => phase = Some(p.to_string()),
                _ => return Err(format!("field label not supported: {term}")),
            }
        }
    }
    let pods = pods.lock().map_err(|_| "poisoned".to_string())?;
    let items: Vec<String> = pods
        .pods
        .iter()
        .filter(|(_, p)| node.is_none() || p.node_name == node)
        .filter(|(_, p)| {
            let ph = if p.phase.is_empty() {
                "Pending"
            } else {
                &p.phase
            };
            phase.as_deref().is_none_or(|want| want == ph)
        })
        .map(|((ns, name), p)| pod_json(ns, name, p))
        .collect();
    Ok(format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"PodList\",\"metadata\":{{\"resourceVersion\":\"1\"}},\"items\":[{}]}}",
        items.join(",")
    ))
}
