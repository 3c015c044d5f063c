//! ethtool: channel (queue) counts through the kernel's ethtool netlink API (generic-netlink
//! family `"ethtool"`, Linux 5.6+, the `ethtool` crate's messages); driver info and link speed
//! through the `SIOCETHTOOL` ioctl.
//!
//! Why driver info and speed stay on the ioctl: ethtool netlink has no driver-info command
//! (`ethtool -i` itself still uses `ETHTOOL_GDRVINFO`), and its speed (`LINKMODES_GET`) costs a
//! generic-netlink round trip and a bitset decode where `ETHTOOL_GSET` is one syscall that every
//! driver with link settings still serves.
//!
//! Each call opens a short-lived socket in the calling thread's network namespace; the
//! interface name is resolved there. Run a call inside [`in_netns`](crate::netns::in_netns)
//! to look at a device in another namespace. Every call blocks.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ethtool::{EthtoolAttr, EthtoolChannelAttr, EthtoolMessage};
use serde::{Deserialize, Serialize};

use crate::nl::{genl_request, GenlFamilyId};
use crate::NetdevError;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSET: u32 = 0x1;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const CHANNELS_GET: &str = "ETHTOOL_MSG_CHANNELS_GET";
const CHANNELS_SET: &str = "ETHTOOL_MSG_CHANNELS_SET";
const IFNAMSIZ: usize = 16;
const SPEED_UNKNOWN: u32 = u32::MAX;

/// What `ethtool -i` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// Driver name, e.g. `veth`, `ice`, `mlx5_core`.
    pub driver: String,
    /// Driver version string (often the kernel version).
    pub version: String,
    /// Firmware version, empty when the device has none.
    pub firmware: String,
    /// Bus address, e.g. `0000:18:00.0` for PCI devices; empty for virtual ones.
    pub bus_info: String,
}

/// Channel (queue) counts as `ethtool -l` shows them.
///
/// A NIC usually exposes *combined* channels (one RX + one TX queue each); veth exposes
/// separate `rx` and `tx` counts and no combined ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channels {
    /// Most RX-only channels the device supports.
    pub max_rx: u32,
    /// Most TX-only channels the device supports.
    pub max_tx: u32,
    /// Most combined channels the device supports.
    pub max_combined: u32,
    /// RX-only channels in use.
    pub rx: u32,
    /// TX-only channels in use.
    pub tx: u32,
    /// Combined channels in use.
    pub combined: u32,
}

impl Channels {
    /// RX queues in use: RX-only plus combined channels. AF_XDP can bind queue ids below this.
    pub fn rx_queues(&self) -> u32 {
        self.rx.saturating_add(self.combined)
    }

    /// TX queues in use: TX-only plus combined channels.
    pub fn tx_queues(&self) -> u32 {
        self.tx.saturating_add(self.combined)
    }
}

/// Channel counts to request with [`set_channel_counts`]; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// RX-only channels.
    pub rx: Option<u32>,
    /// TX-only channels.
    pub tx: Option<u32>,
    /// Combined channels.
    pub combined: Option<u32>,
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// `struct ethtool_cmd` (legacy `ETHTOOL_GSET`, still served by every driver with link settings).
#[repr(C)]
#[derive(Default)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

/// Checks that `name` can be a Linux interface name (what `dev_valid_name()` accepts).
pub(crate) fn validate_ifname(name: &str) -> Result<(), NetdevError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() >= IFNAMSIZ {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("reserved name")
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        Some("contains '/', ':', NUL or whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetdevError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Runs one `SIOCETHTOOL` command; `data` starts with the command number.
pub(crate) fn ioctl<T>(name: &str, cmd: &'static str, data: &mut T) -> Result<(), NetdevError> {
    validate_ifname(name)?;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(NetdevError::syscall("socket(AF_INET, SOCK_DGRAM)"));
    }
    // SAFETY: raw is a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = IfReq {
        name: [0; IFNAMSIZ],
        data: (data as *mut T).cast(),
        _pad: [0; 16],
    };
    for (dst, src) in ifr.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq whose data pointer refers to a live, correctly sized
    // ethtool struct for the command it starts with.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ENODEV) {
            return Err(NetdevError::NoSuchLink {
                op: cmd,
                name: name.to_owned(),
            });
        }
        return Err(NetdevError::Ethtool {
            cmd,
            ifname: name.to_owned(),
            source,
            message: None,
        });
    }
    Ok(())
}

/// Driver name, version, firmware and bus address (`ETHTOOL_GDRVINFO`, `ethtool -i`).
///
/// Works for virtual devices too (veth answers `veth`). `lo` does not implement it:
/// that is an [`NetdevError::Ethtool`] with `EOPNOTSUPP` ([`NetdevError::is_not_supported`]).
pub fn driver_info(name: &str) -> Result<DriverInfo, NetdevError> {
    let mut d = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    ioctl(name, "ETHTOOL_GDRVINFO", &mut d)?;
    Ok(DriverInfo {
        driver: c_str(&d.driver),
        version: c_str(&d.version),
        firmware: c_str(&d.fw_version),
        bus_info: c_str(&d.bus_info),
    })
}

/// Link speed in Mb/s (`ETHTOOL_GSET`); `Ok(None)` when the driver does not know it
/// (link down, virtual device without a nominal speed).
pub fn speed_mbps(name: &str) -> Result<Option<u32>, NetdevError> {
    let mut c = EthtoolCmd {
        cmd: ETHTOOL_GSET,
        ..Default::default()
    };
    ioctl(name, "ETHTOOL_GSET", &mut c)?;
    Ok(speed_from_parts(c.speed, c.speed_hi))
}

fn speed_from_parts(lo: u16, hi: u16) -> Option<u32> {
    let speed = (u32::from(hi) << 16) | u32::from(lo);
    match speed {
        0 | SPEED_UNKNOWN => None,
        // Drivers that only fill the low half report 0xffff for unknown.
        0xffff if hi == 0 => None,
        s => Some(s),
    }
}

/// The ethtool generic-netlink family.
static FAMILY: GenlFamilyId = GenlFamilyId::new("ethtool");

/// Names the failed ethtool-netlink command in `err`, as the ioctl path does.
fn ethtool_error<'a>(
    cmd: &'static str,
    name: &'a str,
) -> impl FnOnce(NetdevError) -> NetdevError + 'a {
    move |err| match err {
        NetdevError::Netlink { source, .. } if source.raw_os_error() == Some(libc::ENODEV) => {
            NetdevError::NoSuchLink {
                op: cmd,
                name: name.to_owned(),
            }
        }
        NetdevError::Netlink {
            source, message, ..
        } => NetdevError::Ethtool {
            cmd,
            ifname: name.to_owned(),
            source,
            message,
        },
        other => other,
    }
}

/// Reads the counts of an `ETHTOOL_MSG_CHANNELS_GET_REPLY`; absent ones are 0.
fn channels_from(nlas: &[EthtoolAttr]) -> Channels {
    let mut c = Channels {
        max_rx: 0,
        max_tx: 0,
        max_combined: 0,
        rx: 0,
        tx: 0,
        combined: 0,
    };
    for a in nlas {
        match a {
            EthtoolAttr::Channel(EthtoolChannelAttr::RxMax(n)) => c.max_rx = *n,
            EthtoolAttr::Channel(EthtoolChannelAttr::TxMax(n)) => c.max_tx = *n,
            EthtoolAttr::Channel(EthtoolChannelAttr::CombinedMax(n)) => c.max_combined = *n,
            EthtoolAttr::Channel(EthtoolChannelAttr::RxCount(n)) => c.rx = *n,
            EthtoolAttr::Channel(EthtoolChannelAttr::TxCount(n)) => c.tx = *n,
            EthtoolAttr::Channel(EthtoolChannelAttr::CombinedCount(n)) => c.combined = *n,
            _ => {}
        }
    }
    c
}

/// Current and maximum channel counts (`ETHTOOL_MSG_CHANNELS_GET`, `ethtool -l`).
///
/// # Errors
/// [`NetdevError::NoSuchLink`]; [`NetdevError::Ethtool`] with `EOPNOTSUPP` when the driver
/// has no channels (`lo`); `ENOENT` from the family lookup before Linux 5.6.
pub fn channels(name: &str) -> Result<Channels, NetdevError> {
    validate_ifname(name)?;
    let (mut sock, family) = FAMILY.socket()?;
    let req = genl_request(EthtoolMessage::new_channel_get(Some(name)), family);
    let reply = sock
        .request_one(CHANNELS_GET, req)
        .map_err(ethtool_error(CHANNELS_GET, name))?;
    Ok(channels_from(&reply.payload.nlas))
}

/// The `ETHTOOL_MSG_CHANNELS_SET` for `counts`: only the counts given, the rest unchanged.
fn set_message(name: &str, counts: ChannelCounts) -> EthtoolMessage {
    let mut msg = EthtoolMessage::new_channel_set(name);
    let attrs = [
        counts.rx.map(EthtoolChannelAttr::RxCount),
        counts.tx.map(EthtoolChannelAttr::TxCount),
        counts.combined.map(EthtoolChannelAttr::CombinedCount),
    ];
    msg.nlas
        .extend(attrs.into_iter().flatten().map(EthtoolAttr::Channel));
    msg
}

/// Sets channel counts exactly as given (`ETHTOOL_MSG_CHANNELS_SET`, `ethtool -L`); fields
/// left `None` keep their current value. Returns the counts read back afterwards.
///
/// # Errors
/// `EINVAL` when a count exceeds the maximum or the driver refuses the combination (veth
/// refuses 0 RX or TX channels), with the kernel's reason in the error; `EOPNOTSUPP` when the
/// driver cannot change channels.
pub fn set_channel_counts(name: &str, counts: ChannelCounts) -> Result<Channels, NetdevError> {
    validate_ifname(name)?;
    tracing::debug!(ifname = name, ?counts, "setting channels");
    let (mut sock, family) = FAMILY.socket()?;
    let req = genl_request(set_message(name, counts), family);
    sock.request_ack(CHANNELS_SET, req, 0)
        .map_err(ethtool_error(CHANNELS_SET, name))?;
    channels(name)
}

/// Makes `queues` RX/TX queue pairs usable: sets the combined channel count on devices that
/// have combined channels (most NICs), or both the RX and TX counts on devices that only
/// have separate ones (veth). Returns the counts read back afterwards.
///
/// # Errors
/// As [`set_channel_counts`].
pub fn set_channels(name: &str, queues: u32) -> Result<Channels, NetdevError> {
    let cur = channels(name)?;
    set_channel_counts(name, counts_for(&cur, queues))
}

fn counts_for(cur: &Channels, queues: u32) -> ChannelCounts {
    if cur.max_combined > 0 {
        ChannelCounts {
            combined: Some(queues),
            ..Default::default()
        }
    } else {
        ChannelCounts {
            rx: Some(queues),
            tx: Some(queues),
            combined: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::size_of::<EthtoolCmd>(), 44);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn interface_names_are_validated() {
        for ok in ["eth0", "veth-a_1", "a", "fifteen_chars_x"] {
            validate_ifname(ok).unwrap();
        }
        for bad in [
            "",
            "sixteen_chars_xx",
            "a/b",
            "a b",
            "a:1",
            ".",
            "..",
            "a\0b",
        ] {
            assert!(
                matches!(validate_ifname(bad), Err(NetdevError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn speed_unknown_values_become_none() {
        assert_eq!(speed_from_parts(10000, 0), Some(10000));
        assert_eq!(speed_from_parts(0x86a0, 0x1), Some(100_000));
        assert_eq!(speed_from_parts(0xffff, 0xffff), None);
        assert_eq!(speed_from_parts(0xffff, 0), None);
        assert_eq!(speed_from_parts(0, 0), None);
    }

    #[test]
    fn channel_messages_carry_only_the_given_counts() {
        let m = set_message(
            "veth0",
            ChannelCounts {
                rx: Some(2),
                combined: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(m.nlas.len(), 3, "{m:?}");
        assert!(m
            .nlas
            .contains(&EthtoolAttr::Channel(EthtoolChannelAttr::RxCount(2))));
        assert!(m
            .nlas
            .contains(&EthtoolAttr::Channel(EthtoolChannelAttr::CombinedCount(0))));
        let reply = [
            EthtoolAttr::Channel(EthtoolChannelAttr::RxMax(4)),
            EthtoolAttr::Channel(EthtoolChannelAttr::TxMax(4)),
            EthtoolAttr::Channel(EthtoolChannelAttr::RxCount(3)),
            EthtoolAttr::Channel(EthtoolChannelAttr::TxCount(2)),
        ];
        let c = channels_from(&reply);
        assert_eq!((c.max_rx, c.max_tx, c.max_combined), (4, 4, 0));
        assert_eq!((c.rx, c.tx, c.combined), (3, 2, 0));
    }

    #[test]
    fn set_channels_picks_combined_or_rx_tx() {
        let nic = Channels {
            max_rx: 0,
            max_tx: 0,
            max_combined: 64,
            rx: 0,
            tx: 0,
            combined: 8,
        };
        assert_eq!(
            counts_for(&nic, 4),
            ChannelCounts {
                combined: Some(4),
                ..Default::default()
            }
        );
        let veth = Channels {
            max_rx: 4,
            max_tx: 4,
            max_combined: 0,
            rx: 4,
            tx: 4,
            combined: 0,
        };
        assert_eq!(
            counts_for(&veth, 2),
            ChannelCounts {
                rx: Some(2),
                tx: Some(2),
                combined: None
            }
        );
        assert_eq!(veth.rx_queues(), 4);
        assert_eq!(nic.rx_queues(), 8);
    }
}
