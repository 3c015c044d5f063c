//! UDS handshake between afxdp-dp and AF_XDP pods: how an unprivileged pod
//! gets the XSKMAP FD of its device.
//!
//! Wire-compatible with the upstream Go device plugin
//! (intel/afxdp-plugins-for-kubernetes, `internal/udsserver`, `constants`)
//! and with DPDK's af_xdp PMD in `use_cni=1` mode
//! (`drivers/net/af_xdp/rte_eth_af_xdp.c`, `uds_get_xskmap_fd`).
//!
//! # Transport
//! AF_UNIX `SOCK_SEQPACKET`; each message is one datagram of ASCII text with
//! no terminator; at most one FD rides along via `SCM_RIGHTS`.
//!
//! | request (pod → daemon) | answer (daemon → pod) |
//! |---|---|
//! | `/connect,<pod>` | `/host_ok` \| `/host_nak` |
//! | `/version` | `0.1` |
//! | `/xsk_map_fd,<netdev>` | `/fd_ack` + XSKMAP FD \| `/fd_nak` |
//! | `/config_busy_poll,<timeout_us>,<budget>` + XSK FD | `/config_busy_poll_ack` \| `/config_busy_poll_nak` |
//! | `/fin` | `/fin_ack`, then close |
//! | anything else | `/nak` |
//!
//! `<pod>` is the pod's hostname (what DPDK and upstream send) or, our
//! extension, `<namespace>/<name>`. Separators `,` and `, ` are both accepted.
//! See [`server`] for the session rules.
//!
//! # The exchange as DPDK performs it
//! `uds_get_xskmap_fd()` in `rte_eth_af_xdp.c`, called once per Rx queue
//! while configuring the XSK:
//! 1. `socket(AF_UNIX, SOCK_SEQPACKET, 0)` and `connect()` to `dp_path`
//!    (default `/tmp/afxdp_dp/<iface>/afxdp.sock`).
//! 2. `write()` `/connect,<hostname>` — `gethostname()` into a 64-byte buffer
//!    (at most 63 characters), comma with no space; the request buffer is 64
//!    bytes (`UDS_MAX_CMD_LEN`).
//! 3. `recvmsg()` into a 128-byte buffer (`UDS_MAX_CMD_RESP`) with control
//!    space for one int FD; it then writes a NUL at `response[len]`, so every
//!    answer must be shorter than 128 bytes (ours are at most 21).
//!    It compares the answer to `/host_ok` with `strncmp(.., strlen("/host_ok"))`.
//! 4. `write()` `/version`; the answer is read but not checked.
//! 5. `write()` `/xsk_map_fd,<iface>`; it takes the FD from the first
//!    `SCM_RIGHTS` cmsg and compares the text to `/fd_ack`.
//! 6. `write()` `/fin`; expects `/fin_ack`; closes the socket.
//!
//! DPDK never sends `/config_busy_poll` (with `use_cni` it skips its own
//! busy-poll setup altogether); CNDP and our [`Client`] do, as
//! `/config_busy_poll,<timeout>,<budget>` with the XSK FD attached.
//!
//! Caveat found while reading DPDK: its checks are `strncmp(..) < 0`, so an
//! answer that compares *greater* passes — `/fd_nak` vs `/fd_ack` does, and
//! DPDK would then use whatever FD variable it had (initially 0). A refusal
//! of `/xsk_map_fd` therefore surfaces in DPDK as a failed map update, not as
//! a clean error; `/host_nak` compares smaller and is caught.
//!
//! # Modules
//! - [`protocol`]: [`Request`], [`Response`], [`PodRef`]; parse and encode.
//! - [`fd`]: one datagram with an optional FD (SCM_RIGHTS, CLOEXEC).
//! - [`client`]: [`Client`], what the pod application links.
//! - [`server`]: [`DeviceSocket`], the daemon's per-device server.

#![deny(missing_docs)]

pub mod client;
pub mod env;
mod error;
pub mod fd;
pub mod protocol;
pub mod server;

pub use client::Client;
pub use error::{HandshakeError, Refusal, Step};
pub use protocol::{PodRef, Request, Response, MAX_MESSAGE_LEN, PROTOCOL_VERSION};
pub use server::{Backend, DeviceSocket, PeerCred, ServerConfig};
