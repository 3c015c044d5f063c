//! A plain HTTP/1.1 `GET` for tests that read afxdp-dp's `/metrics`,
//! `/healthz`, `/readyz` and `/status`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// `GET path` from `addr` (connection closed after one answer): the status
/// code and the body. Blocks, at most `timeout` per connect and read.
///
/// # Errors
/// Connecting or reading failed, or the answer has no status line.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: afxdp\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no status line: {text:?}"),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
