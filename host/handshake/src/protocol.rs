//! Wire format of the handshake: requests and responses as ASCII datagrams.
//!
//! Every message is one SOCK_SEQPACKET datagram holding ASCII text with no
//! terminator. Arguments follow the command, separated by `,`; both `,` and
//! `, ` are accepted on input (each field is trimmed of ASCII whitespace), and
//! [`Request::encode`] always writes the compact `,` form DPDK uses.
//!
//! Parsing never panics and never allocates more than [`MAX_MESSAGE_LEN`]
//! bytes worth of text: anything that is not a well-formed request — invalid
//! UTF-8, control characters, a missing or extra argument, an argument that is
//! not a valid pod or interface name, a number that does not parse — becomes
//! [`Request::Unknown`], which the server answers with [`Response::Nak`].

use std::fmt;

/// Largest datagram either side accepts, in bytes.
///
/// DPDK sends at most 63 bytes (`UDS_MAX_CMD_LEN` 64 incl. the NUL) and reads
/// at most 128 (`UDS_MAX_CMD_RESP`); the upstream Go server reads 64. Our own
/// namespaced `/connect,<namespace>/<name>` needs up to
/// 9 + 63 + 1 + 253 = 326 bytes, so 512 leaves headroom. A longer datagram is
/// rejected as truncated.
pub const MAX_MESSAGE_LEN: usize = 512;

/// Handshake version answered to `/version`.
pub const PROTOCOL_VERSION: &str = "0.1";

/// Longest pod name Kubernetes accepts (a DNS-1123 subdomain).
const MAX_POD_NAME_LEN: usize = 253;
/// Longest namespace Kubernetes accepts (a DNS-1123 label).
const MAX_NAMESPACE_LEN: usize = 63;
/// `IFNAMSIZ - 1`.
const MAX_IFNAME_LEN: usize = 15;
/// How much of an unknown request is kept (for logs).
const MAX_UNKNOWN_KEPT: usize = 64;

/// Request and response keywords, exactly as on the wire.
pub mod wire {
    /// `/connect,<pod>`: opens the session for a pod.
    pub const CONNECT: &str = "/connect";
    /// Answer to an accepted `/connect`.
    pub const HOST_OK: &str = "/host_ok";
    /// Answer to a refused `/connect`.
    pub const HOST_NAK: &str = "/host_nak";
    /// `/version`: asks for the handshake version.
    pub const VERSION: &str = "/version";
    /// `/xsk_map_fd,<netdev>`: asks for the XSKMAP FD of a netdev.
    pub const XSK_MAP_FD: &str = "/xsk_map_fd";
    /// Answer carrying the XSKMAP FD (SCM_RIGHTS).
    pub const FD_ACK: &str = "/fd_ack";
    /// Answer to a refused `/xsk_map_fd`.
    pub const FD_NAK: &str = "/fd_nak";
    /// `/config_busy_poll,<timeout_us>,<budget>` + the XSK FD.
    pub const CONFIG_BUSY_POLL: &str = "/config_busy_poll";
    /// Answer to an applied `/config_busy_poll`.
    pub const CONFIG_BUSY_POLL_ACK: &str = "/config_busy_poll_ack";
    /// Answer to a refused `/config_busy_poll`.
    pub const CONFIG_BUSY_POLL_NAK: &str = "/config_busy_poll_nak";
    /// `/fin`: ends the session.
    pub const FIN: &str = "/fin";
    /// Answer to `/fin`; the server then closes the connection.
    pub const FIN_ACK: &str = "/fin_ack";
    /// Answer to anything not understood.
    pub const NAK: &str = "/nak";
    /// Generic server-side error (sent by the upstream Go server on a
    /// PodResources failure; never sent by ours, understood by our client).
    pub const ERROR: &str = "/error";
}

/// The pod named in `/connect`.
///
/// Upstream and DPDK send the pod's hostname (`gethostname()`), which
/// Kubernetes sets to the pod name — truncated to 63 characters, or replaced
/// by `spec.hostname` when that is set. Our extension is `<namespace>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Namespace, when the client sent the `<namespace>/<name>` form.
    pub namespace: Option<String>,
    /// Pod name (or hostname, for upstream-style clients).
    pub name: String,
}

impl PodRef {
    /// A pod known by name (or hostname) only, as DPDK and upstream send it.
    pub fn name(name: impl Into<String>) -> Self {
        Self {
            namespace: None,
            name: name.into(),
        }
    }

    /// A pod known by namespace and name (our extension).
    pub fn namespaced(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    /// Parses `<name>` or `<namespace>/<name>`; `None` when malformed.
    pub fn parse(s: &str) -> Option<Self> {
        match s.split_once('/') {
            None => valid_k8s_name(s, MAX_POD_NAME_LEN).then(|| Self::name(s)),
            Some((ns, name)) => (valid_k8s_name(ns, MAX_NAMESPACE_LEN)
                && valid_k8s_name(name, MAX_POD_NAME_LEN))
            .then(|| Self::namespaced(ns, name)),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Lenient Kubernetes object name check: 1..=max bytes of `[A-Za-z0-9._-]`.
/// (Upper case is let through: hostnames and upstream's tests use it; the
/// backend's lookup is what decides.)
fn valid_k8s_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// The kernel's `dev_valid_name()`: 1..=15 bytes, not `.`/`..`, no `/`, `:`
/// or whitespace; we also require printable ASCII.
fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IFNAME_LEN
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':' && b != b',')
}

/// A request from the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `/connect,<pod>`.
    Connect {
        /// The pod the client claims to be.
        pod: PodRef,
    },
    /// `/version`.
    Version,
    /// `/xsk_map_fd,<netdev>`.
    XskMapFd {
        /// The netdev whose XSKMAP is requested.
        device: String,
    },
    /// `/config_busy_poll,<timeout_us>,<budget>`; the XSK socket rides along
    /// as SCM_RIGHTS.
    ConfigBusyPoll {
        /// `SO_BUSY_POLL` value, in microseconds.
        timeout_us: u32,
        /// `SO_BUSY_POLL_BUDGET` value, in packets.
        budget: u32,
    },
    /// `/fin`.
    Fin,
    /// Anything else, kept (shortened, lossily decoded) for logs.
    Unknown(String),
}

impl Request {
    /// Parses one datagram. Never panics; see the module docs for what
    /// becomes [`Request::Unknown`].
    pub fn parse(bytes: &[u8]) -> Request {
        let Some(text) = message_text(bytes) else {
            return Request::Unknown(unknown_text(bytes));
        };
        let mut fields = text
            .split(',')
            .map(|f| f.trim_matches(|c: char| c.is_ascii_whitespace()));
        let command = fields.next().unwrap_or_default();
        let args: Vec<&str> = fields.take(4).collect();
        let parsed = match (command, args.as_slice()) {
            (wire::CONNECT, [pod]) => PodRef::parse(pod).map(|pod| Request::Connect { pod }),
            (wire::VERSION, []) => Some(Request::Version),
            (wire::XSK_MAP_FD, [dev]) => valid_ifname(dev).then(|| Request::XskMapFd {
                device: (*dev).to_owned(),
            }),
            (wire::CONFIG_BUSY_POLL, [timeout, budget]) => {
                match (parse_u32(timeout), parse_u32(budget)) {
                    (Some(timeout_us), Some(budget)) => {
                        Some(Request::ConfigBusyPoll { timeout_us, budget })
                    }
                    _ => None,
                }
            }
            (wire::FIN, []) => Some(Request::Fin),
            _ => None,
        };
        parsed.unwrap_or_else(|| Request::Unknown(unknown_text(bytes)))
    }

    /// The datagram for this request (compact `,` separator, as DPDK sends).
    /// [`Request::Unknown`] encodes its text verbatim.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Connect { pod } => format!("{},{pod}", wire::CONNECT),
            Request::Version => wire::VERSION.to_owned(),
            Request::XskMapFd { device } => format!("{},{device}", wire::XSK_MAP_FD),
            Request::ConfigBusyPoll { timeout_us, budget } => {
                format!("{},{timeout_us},{budget}", wire::CONFIG_BUSY_POLL)
            }
            Request::Fin => wire::FIN.to_owned(),
            Request::Unknown(s) => s.clone(),
        }
        .into_bytes()
    }
}

/// A response from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `/host_ok`.
    HostOk,
    /// `/host_nak`.
    HostNak,
    /// The answer to `/version`: the bare version text, e.g. `0.1`.
    Version(String),
    /// `/fd_ack` (the XSKMAP FD rides along).
    FdAck,
    /// `/fd_nak`.
    FdNak,
    /// `/config_busy_poll_ack`.
    ConfigBusyPollAck,
    /// `/config_busy_poll_nak`.
    ConfigBusyPollNak,
    /// `/fin_ack`.
    FinAck,
    /// `/nak`.
    Nak,
    /// `/error` (upstream only).
    Error,
    /// Anything else, kept (shortened) for error messages.
    Unknown(String),
}

impl Response {
    /// Parses one datagram. Never panics. Text that does not start with `/`
    /// is taken as a [`Response::Version`] (that is how the version comes).
    pub fn parse(bytes: &[u8]) -> Response {
        let Some(text) = message_text(bytes) else {
            return Response::Unknown(unknown_text(bytes));
        };
        match text {
            wire::HOST_OK => Response::HostOk,
            wire::HOST_NAK => Response::HostNak,
            wire::FD_ACK => Response::FdAck,
            wire::FD_NAK => Response::FdNak,
            wire::CONFIG_BUSY_POLL_ACK => Response::ConfigBusyPollAck,
            wire::CONFIG_BUSY_POLL_NAK => Response::ConfigBusyPollNak,
            wire::FIN_ACK => Response::FinAck,
            wire::NAK => Response::Nak,
            wire::ERROR => Response::Error,
            v if !v.is_empty() && !v.starts_with('/') && v.len() <= 32 => {
                Response::Version(v.to_owned())
            }
            _ => Response::Unknown(unknown_text(bytes)),
        }
    }

    /// The exact datagram for this response.
    pub fn encode(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }

    /// The exact text of this response.
    pub fn as_str(&self) -> &str {
        match self {
            Response::HostOk => wire::HOST_OK,
            Response::HostNak => wire::HOST_NAK,
            Response::Version(v) => v,
            Response::FdAck => wire::FD_ACK,
            Response::FdNak => wire::FD_NAK,
            Response::ConfigBusyPollAck => wire::CONFIG_BUSY_POLL_ACK,
            Response::ConfigBusyPollNak => wire::CONFIG_BUSY_POLL_NAK,
            Response::FinAck => wire::FIN_ACK,
            Response::Nak => wire::NAK,
            Response::Error => wire::ERROR,
            Response::Unknown(s) => s,
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message as text: bounded, UTF-8, trailing NULs and whitespace dropped
/// (C clients sometimes send their NUL), no other control characters.
fn message_text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.trim_end_matches(|c: char| c == '\0' || c.is_ascii_whitespace());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return None;
    }
    Some(text)
}

/// A short printable rendering of an unparseable message, for logs.
fn unknown_text(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(MAX_UNKNOWN_KEPT)];
    let mut s: String = String::from_utf8_lossy(head)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if bytes.len() > MAX_UNKNOWN_KEPT {
        s.push('…');
    }
    s
}

/// Decimal digits only (no sign, no `+`), fitting in a `u32`.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_in_both_separator_styles() {
        let cases: &[(&[u8], Request)] = &[
            (
                b"/connect,pod-a",
                Request::Connect {
                    pod: PodRef::name("pod-a"),
                },
            ),
            (
                b"/connect, pod-a",
                Request::Connect {
                    pod: PodRef::name("pod-a"),
                },
            ),
            (
                b"/connect, ns1/pod-a",
                Request::Connect {
                    pod: PodRef::namespaced("ns1", "pod-a"),
                },
            ),
            (b"/version", Request::Version),
            (
                b"/xsk_map_fd,veth0",
                Request::XskMapFd {
                    device: "veth0".into(),
                },
            ),
            (
                b"/xsk_map_fd, veth0",
                Request::XskMapFd {
                    device: "veth0".into(),
                },
            ),
            (
                b"/config_busy_poll,20,64",
                Request::ConfigBusyPoll {
                    timeout_us: 20,
                    budget: 64,
                },
            ),
            (
                b"/config_busy_poll, 20, 64",
                Request::ConfigBusyPoll {
                    timeout_us: 20,
                    budget: 64,
                },
            ),
            (b"/fin", Request::Fin),
            (b"/fin\0", Request::Fin),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                &Request::parse(bytes),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn malformed_requests_are_unknown() {
        let long = [b'a'; MAX_MESSAGE_LEN + 1];
        let too_long_pod = format!("/connect,{}", "a".repeat(254));
        let cases: &[&[u8]] = &[
            b"",
            b"/connect",
            b"/connect,",
            b"/connect, podA, podB",
            b"podA, /connect",
            b"/connect,a/b/c",
            b"/connect,/pod",
            b"/connect,ns/",
            b"/connect,pod a",
            b"\0/connect,podA",
            b"/connect,po\0dA",
            b"/connect,\xff\xfe",
            b"/version,1",
            b"/xsk_map_fd",
            b"/xsk_map_fd,",
            b"/xsk_map_fd,a/b",
            b"/xsk_map_fd,0123456789abcdef",
            b"/xsk_map_fd,..",
            b"/config_busy_poll,20",
            b"/config_busy_poll,-1,64",
            b"/config_busy_poll,+1,64",
            b"/config_busy_poll,20,99999999999",
            b"/config_busy_poll,20,64,1",
            b"/fin,now",
            b"/FIN",
            b"hello",
            &long,
            too_long_pod.as_bytes(),
        ];
        for bytes in cases {
            assert!(
                matches!(Request::parse(bytes), Request::Unknown(_)),
                "{:?} parsed as {:?}",
                String::from_utf8_lossy(bytes),
                Request::parse(bytes)
            );
        }
    }

    #[test]
    fn unknown_text_is_bounded_and_printable() {
        let Request::Unknown(s) = Request::parse(&[0xffu8; 4096]) else {
            panic!("not unknown");
        };
        assert!(s.chars().count() <= MAX_UNKNOWN_KEPT + 1);
        assert!(s.chars().all(|c| c == '?' || c == '…'));
    }

    #[test]
    fn encode_round_trips() {
        let reqs = [
            Request::Connect {
                pod: PodRef::name("pod-a"),
            },
            Request::Connect {
                pod: PodRef::namespaced("ns", "pod-a"),
            },
            Request::Version,
            Request::XskMapFd {
                device: "eth1".into(),
            },
            Request::ConfigBusyPoll {
                timeout_us: 50,
                budget: 256,
            },
            Request::Fin,
        ];
        for r in reqs {
            assert_eq!(Request::parse(&r.encode()), r);
        }
        assert_eq!(
            Request::Connect {
                pod: PodRef::name("h")
            }
            .encode(),
            b"/connect,h"
        );
        assert_eq!(
            Request::ConfigBusyPoll {
                timeout_us: 20,
                budget: 64
            }
            .encode(),
            b"/config_busy_poll,20,64"
        );
        let resps = [
            Response::HostOk,
            Response::HostNak,
            Response::Version("0.1".into()),
            Response::FdAck,
            Response::FdNak,
            Response::ConfigBusyPollAck,
            Response::ConfigBusyPollNak,
            Response::FinAck,
            Response::Nak,
            Response::Error,
        ];
        for r in resps {
            assert_eq!(Response::parse(&r.encode()), r);
            assert!(r.encode().len() < 128, "DPDK reads at most 127 bytes + NUL");
        }
    }

    #[test]
    fn exact_response_strings() {
        assert_eq!(Response::HostOk.encode(), b"/host_ok");
        assert_eq!(Response::HostNak.encode(), b"/host_nak");
        assert_eq!(Response::Version(PROTOCOL_VERSION.into()).encode(), b"0.1");
        assert_eq!(Response::FdAck.encode(), b"/fd_ack");
        assert_eq!(Response::FdNak.encode(), b"/fd_nak");
        assert_eq!(
            Response::ConfigBusyPollAck.encode(),
            b"/config_busy_poll_ack"
        );
        assert_eq!(
            Response::ConfigBusyPollNak.encode(),
            b"/config_busy_poll_nak"
        );
        assert_eq!(Response::FinAck.encode(), b"/fin_ack");
        assert_eq!(Response::Nak.encode(), b"/nak");
    }

    #[test]
    fn parse_never_panics_on_noise() {
        // Cheap deterministic fuzz: xorshift bytes, including separators.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"/,, abc09_-.\0\xff/connect/xsk_map_fd/config_busy_poll";
        for len in 0..700usize {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = Request::parse(&buf);
            let _ = Response::parse(&buf);
        }
    }
}
