//! A local HTTP fake of the Kubernetes API server for the pod reads afxdp-dp
//! makes (`GET /api/v1/namespaces/{ns}/pods/{name}`), plus a kubeconfig that
//! points kube-rs at it. Requests are recorded so tests can assert them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

type Pods = BTreeMap<(String, String), (BTreeMap<String, String>, BTreeMap<String, String>)>;

/// The fake; stops on drop.
pub struct FakeApiServer {
    addr: String,
    pods: Arc<Mutex<Pods>>,
    requests: Arc<Mutex<Vec<String>>>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let (p, r, s) = (pods.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Blocking accept; Drop wakes it with a connection of its own.
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = serve(conn, &p, &r);
                }
            }
        });
        Ok(Self {
            addr,
            pods,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add or replace a pod.
    pub fn set_pod(
        &self,
        namespace: &str,
        name: &str,
        annotations: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) {
        if let Ok(mut p) = self.pods.lock() {
            p.insert(
                (namespace.to_string(), name.to_string()),
                (annotations, labels),
            );
        }
    }

    /// Request lines received so far (`GET /api/v1/...`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
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
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let request_line = line.trim().to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    if let Ok(mut r) = requests.lock() {
        r.push(request_line.clone());
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, body) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name] if request_line.starts_with("GET ") => {
            let found = pods.lock().ok().and_then(|p| p.get(&(ns.to_string(), name.to_string())).cloned());
            match found {
                Some((ann, labels)) => (
                    "200 OK",
                    format!(
                        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"{}\",\"namespace\":\"{}\",\"annotations\":{},\"labels\":{}}},\"spec\":{{\"containers\":[]}}}}",
                        json_escape(name), json_escape(ns), map_json(&ann), map_json(&labels)
                    ),
                ),
                None => (
                    "404 Not Found",
                    format!(
                        "{{\"apiVersion\":\"v1\",\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"pods \\\"{}\\\" not found\",\"reason\":\"NotFound\",\"code\":404}}",
                        json_escape(name)
                    ),
                ),
            }
        }
        _ => (
            "404 Not Found",
            "{\"apiVersion\":\"v1\",\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"NotFound\",\"code\":404}".to_string(),
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
