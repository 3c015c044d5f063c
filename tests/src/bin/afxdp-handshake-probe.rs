//! A UDS handshake client for the end-to-end tests, run as its own process
//! inside a pod's netns (the daemon checks a peer's netns by its pid):
//! `afxdp-handshake-probe SOCKET DEVICE NAMESPACE POD (holder|hello|refused)`.
//! `holder`: the refusal script a holder sees (garbage, wrong pods, second
//! connection, wrong device) and then the map; `hello`: `/connect` as the
//! pod and the map; `refused`: `/connect` as the pod by name is refused.
//! Exits 0 when every step answered as expected.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use afxdp_handshake::{Client, HandshakeError, PodRef, Response, Step};

type Outcome = Result<(), String>;

fn refused(r: Result<impl std::fmt::Debug, HandshakeError>, step: Step, nak: Response) -> Outcome {
    match r {
        Err(HandshakeError::Refused { step: s, response }) if (s, &response) == (step, &nak) => {
            Ok(())
        }
        other => Err(format!("expected {nak:?} for {step}, got {other:?}")),
    }
}

fn holder(sock: &PathBuf, device: &str, ns: &str, pod: &str) -> Outcome {
    let t = Duration::from_secs(5);
    let err = |what: &str| {
        let what = what.to_string();
        move |e: HandshakeError| format!("{what}: {e}")
    };
    let mut c = Client::connect(sock, t).map_err(err("connect"))?;
    // Garbage, including non-UTF-8 → /nak.
    for garbage in [&b"\xff\xfe garbage"[..], b"/frobnicate, x"] {
        let (r, fd) = c.raw_request(garbage, None).map_err(err("garbage"))?;
        if r != Response::Nak || fd.is_some() {
            return Err(format!("garbage answered {r:?}"));
        }
    }
    // The map before a successful /connect → /fd_nak.
    refused(c.xsk_map_fd(device), Step::XskMapFd, Response::FdNak)?;
    // Wrong pod, right pod in the wrong namespace → /host_nak.
    refused(
        c.hello(&PodRef::name("intruder")),
        Step::Connect,
        Response::HostNak,
    )?;
    refused(
        c.hello(&PodRef::namespaced("team-b", pod)),
        Step::Connect,
        Response::HostNak,
    )?;
    // The holder, by name (as DPDK sends it) and namespaced → /host_ok.
    c.hello(&PodRef::name(pod)).map_err(err("holder by name"))?;
    c.hello(&PodRef::namespaced(ns, pod))
        .map_err(err("holder namespaced"))?;
    let v = c.version().map_err(err("version"))?;
    if v != "0.1" {
        return Err(format!("version {v}"));
    }
    // A second connection while the first session is open → /host_nak.
    let mut second = Client::connect(sock, t).map_err(err("second connect"))?;
    refused(
        second.hello(&PodRef::namespaced(ns, pod)),
        Step::Connect,
        Response::HostNak,
    )?;
    drop(second);
    // Another device through this device's socket → /fd_nak.
    refused(c.xsk_map_fd("afxnodev0"), Step::XskMapFd, Response::FdNak)?;
    // The real map: an FD of a BPF map.
    let map = c.xsk_map_fd(device).map_err(err("map fd"))?;
    let link = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&map)
    ))
    .map_err(|e| format!("readlink: {e}"))?;
    if link.to_string_lossy() != "anon_inode:bpf-map" {
        return Err(format!("the FD is {}", link.display()));
    }
    drop(map);
    c.fin().map_err(err("fin"))?;
    // A new session may start after the first ended (container restart).
    let mut again = Client::connect(sock, t).map_err(err("reconnect"))?;
    again
        .hello(&PodRef::name(pod))
        .map_err(err("holder again"))?;
    again.fin().map_err(err("fin again"))
}

fn hello(sock: &PathBuf, device: &str, ns: &str, pod: &str) -> Outcome {
    let mut c =
        Client::connect(sock, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    c.hello(&PodRef::namespaced(ns, pod))
        .map_err(|e| format!("hello: {e}"))?;
    c.xsk_map_fd(device).map_err(|e| format!("map fd: {e}"))?;
    c.fin().map_err(|e| format!("fin: {e}"))
}

fn refused_by_name(sock: &PathBuf, pod: &str) -> Outcome {
    let mut c =
        Client::connect(sock, Duration::from_secs(5)).map_err(|e| format!("connect: {e}"))?;
    refused(
        c.hello(&PodRef::name(pod)),
        Step::Connect,
        Response::HostNak,
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [sock, device, ns, pod, mode] = args.as_slice() else {
        eprintln!(
            "usage: afxdp-handshake-probe SOCKET DEVICE NAMESPACE POD (holder|hello|refused)"
        );
        return ExitCode::from(2);
    };
    let sock = PathBuf::from(sock);
    let outcome = match mode.as_str() {
        "holder" => holder(&sock, device, ns, pod),
        "hello" => hello(&sock, device, ns, pod),
        "refused" => refused_by_name(&sock, pod),
        other => Err(format!("unknown mode {other}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe: {e}");
            ExitCode::FAILURE
        }
    }
}
