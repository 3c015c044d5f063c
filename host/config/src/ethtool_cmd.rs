//! Upstream `ethtoolCmds`, translated: each string is read as the ethtool
//! arguments it stands for and turned into the operation afxdp-dp and
//! afxdp-cni already perform through the kernel's ethtool interface. Nothing
//! is ever passed to a shell or to the `ethtool` binary.
//!
//! Understood (upstream substitutes `-device-` with the device and `-ip-`
//! with the pod's address; so does this translation):
//!
//! * `-L|--set-channels -device- combined N` → the pool's channel count;
//! * `-N|-U|--config-ntuple|--config-nfc -device- flow-type tcp4|udp4|sctp4|tcp6|udp6|sctp6
//!   [src-ip A [m MASK]] [dst-ip A|-ip- [m MASK]] [src-port P [m MASK]]
//!   [dst-port P [m MASK]] action [Q|-1]` → an ntuple filter rule, programmed
//!   at CNI ADD with the pod's address and removed at DEL (action `-1` drops;
//!   a bare trailing `action`, as upstream's README writes it, steers to the
//!   first queue of the device's queue plan).
//!
//! Anything else (RSS indirection `-X`, other ntuple fields, a literal
//! device name) is refused with the reason: an accepted command always takes
//! effect.

use std::net::IpAddr;

/// One ntuple rule of an `ethtool -N` command; `-ip-` stays a placeholder
/// until the pod's address is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtupleTemplate {
    /// The command as written.
    pub text: String,
    /// `flow-type`.
    pub flow_type: NtupleFlow,
    /// `src-ip`.
    pub src_ip: Option<AddrSpec>,
    /// `src-ip ... m MASK`.
    pub src_ip_mask: Option<IpAddr>,
    /// `dst-ip`.
    pub dst_ip: Option<AddrSpec>,
    /// `dst-ip ... m MASK`.
    pub dst_ip_mask: Option<IpAddr>,
    /// `src-port`.
    pub src_port: Option<u16>,
    /// `src-port ... m MASK`.
    pub src_port_mask: Option<u16>,
    /// `dst-port`.
    pub dst_port: Option<u16>,
    /// `dst-port ... m MASK`.
    pub dst_port_mask: Option<u16>,
    /// `action`.
    pub action: NtupleTarget,
}

/// An ntuple rule's `flow-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtupleFlow {
    /// `tcp4`.
    Tcp4,
    /// `udp4`.
    Udp4,
    /// `sctp4`.
    Sctp4,
    /// `tcp6`.
    Tcp6,
    /// `udp6`.
    Udp6,
    /// `sctp6`.
    Sctp6,
}

impl NtupleFlow {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tcp4" => Self::Tcp4,
            "udp4" => Self::Udp4,
            "sctp4" => Self::Sctp4,
            "tcp6" => Self::Tcp6,
            "udp6" => Self::Udp6,
            "sctp6" => Self::Sctp6,
            _ => return None,
        })
    }

    /// Whether the flow's addresses are IPv6.
    pub fn is_ipv6(self) -> bool {
        matches!(self, Self::Tcp6 | Self::Udp6 | Self::Sctp6)
    }
}

/// An address in a rule: written, or the pod's (`-ip-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrSpec {
    /// `-ip-`: the pod's IPAM address of the rule's family.
    PodAddress,
    /// A literal address.
    Literal(IpAddr),
}

/// An ntuple rule's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtupleTarget {
    /// Steer to this rx queue.
    Queue(u32),
    /// `action -1`: drop.
    Drop,
    /// A bare trailing `action`: the first queue of the device's queue plan.
    FirstQueue,
}

/// What one command translates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EthtoolOp {
    /// `-L -device- combined N`.
    Channels(u32),
    /// `-N -device- flow-type ...`.
    Ntuple(NtupleTemplate),
}

/// Why a command cannot be translated (the message says what to write).
pub type TranslateError = String;

/// Translates one upstream ethtool command.
///
/// # Errors
/// The reason, naming the offending argument.
pub fn translate(cmd: &str) -> Result<EthtoolOp, TranslateError> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let (verb, rest) = match words.as_slice() {
        [verb, device, rest @ ..] if *device == "-device-" => (*verb, rest),
        [_, device, ..] => {
            return Err(format!(
                "the device must be written -device- (it is the allocated one), not {device:?}"
            ))
        }
        _ => return Err("expected an ethtool option and -device-".into()),
    };
    match verb {
        "-L" | "--set-channels" => channels(rest).map(EthtoolOp::Channels),
        "-N" | "-U" | "--config-ntuple" | "--config-nfc" => {
            ntuple(cmd, rest).map(EthtoolOp::Ntuple)
        }
        "-X" | "--set-rxfh-indir" | "--rxfh" => {
            Err("RSS indirection (-X) is not supported yet: steer with -N rules".into())
        }
        other => Err(format!(
            "{other} is not an ethtool option afxdp-rs translates (supported: -L combined, -N flow rules)"
        )),
    }
}

fn channels(args: &[&str]) -> Result<u32, TranslateError> {
    match args {
        ["combined", n] => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("combined takes a channel count > 0, got {n:?}")),
        },
        _ => Err("only `-L -device- combined N` is supported".into()),
    }
}

fn ntuple(text: &str, args: &[&str]) -> Result<NtupleTemplate, TranslateError> {
    let mut it = args.iter().copied().peekable();
    let flow = match (it.next(), it.next()) {
        (Some("flow-type"), Some(f)) => NtupleFlow::parse(f).ok_or_else(|| {
            format!("flow-type {f:?} is not supported (tcp4, udp4, sctp4, tcp6, udp6, sctp6)")
        })?,
        _ => return Err("an ntuple rule starts with flow-type".into()),
    };
    let mut rule = NtupleTemplate {
        text: text.trim().to_string(),
        flow_type: flow,
        src_ip: None,
        src_ip_mask: None,
        dst_ip: None,
        dst_ip_mask: None,
        src_port: None,
        src_port_mask: None,
        dst_port: None,
        dst_port_mask: None,
        action: NtupleTarget::Drop,
    };
    let mut action = None;
    while let Some(key) = it.next() {
        if key == "action" && it.peek().is_none() {
            action = Some(NtupleTarget::FirstQueue);
            break;
        }
        let value = it.next().ok_or_else(|| format!("{key} needs a value"))?;
        let mask = if it.peek() == Some(&"m") {
            it.next();
            Some(
                it.next()
                    .ok_or_else(|| format!("{key}'s mask (m) needs a value"))?,
            )
        } else {
            None
        };
        match key {
            "src-ip" => {
                rule.src_ip = Some(addr(value, flow)?);
                rule.src_ip_mask = mask.map(|m| literal(m, flow)).transpose()?;
            }
            "dst-ip" => {
                rule.dst_ip = Some(addr(value, flow)?);
                rule.dst_ip_mask = mask.map(|m| literal(m, flow)).transpose()?;
            }
            "src-port" => {
                rule.src_port = Some(port(value)?);
                rule.src_port_mask = mask.map(port).transpose()?;
            }
            "dst-port" => {
                rule.dst_port = Some(port(value)?);
                rule.dst_port_mask = mask.map(port).transpose()?;
            }
            "action" if mask.is_none() => action = Some(target(value)?),
            other => {
                return Err(format!(
                    "{other} is not supported in a rule (src-ip, dst-ip, src-port, dst-port, each with m MASK; action)"
                ))
            }
        }
    }
    rule.action = action.ok_or("an ntuple rule needs an action (a queue, or -1 to drop)")?;
    Ok(rule)
}

fn addr(s: &str, flow: NtupleFlow) -> Result<AddrSpec, TranslateError> {
    if s == "-ip-" {
        return Ok(AddrSpec::PodAddress);
    }
    literal(s, flow).map(AddrSpec::Literal)
}

fn literal(s: &str, flow: NtupleFlow) -> Result<IpAddr, TranslateError> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address"))?;
    if ip.is_ipv6() != flow.is_ipv6() {
        return Err(format!("{s} is not of the flow type's address family"));
    }
    Ok(ip)
}

/// A port or port mask, decimal or `0x` hex as ethtool reads them.
fn port(s: &str) -> Result<u16, TranslateError> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a port (0-65535)"))
}

fn target(s: &str) -> Result<NtupleTarget, TranslateError> {
    if s == "-1" {
        return Ok(NtupleTarget::Drop);
    }
    s.parse()
        .map(NtupleTarget::Queue)
        .map_err(|_| format!("action {s:?} is neither a queue number nor -1 (drop)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cmd: &str) -> NtupleTemplate {
        match translate(cmd) {
            Ok(EthtoolOp::Ntuple(r)) => r,
            other => panic!("{cmd}: {other:?}"),
        }
    }

    #[test]
    fn upstream_examples_translate() {
        let r = rule("-N -device- flow-type udp4 dst-ip -ip- action 3");
        assert_eq!(r.flow_type, NtupleFlow::Udp4);
        assert_eq!(r.dst_ip, Some(AddrSpec::PodAddress));
        assert_eq!(r.action, NtupleTarget::Queue(3));
        assert_eq!(
            translate("-L -device- combined 2"),
            Ok(EthtoolOp::Channels(2))
        );
        let r = rule("--config-ntuple -device- flow-type udp4 dst-ip -ip- action");
        assert_eq!(r.action, NtupleTarget::FirstQueue);
    }

    #[test]
    fn masks_ports_and_drop() {
        let r = rule(
            "--config-ntuple -device- flow-type tcp6 src-ip fd00::1 m ffff:: dst-port 80 m 0xff action -1",
        );
        assert_eq!(
            r.src_ip,
            Some(AddrSpec::Literal("fd00::1".parse().unwrap()))
        );
        assert_eq!(r.src_ip_mask, Some("ffff::".parse().unwrap()));
        assert_eq!(r.action, NtupleTarget::Drop);
        assert_eq!((r.dst_port, r.dst_port_mask), (Some(80), Some(0xff)));
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("-X -device- equal 1 start 3", "RSS indirection"),
            ("-N eth0 flow-type udp4 action 1", "-device-"),
            ("-N -device- flow-type ip4 action 1", "flow-type \"ip4\""),
            (
                "-N -device- flow-type udp4 dst-ip 10.0.0.1",
                "needs an action",
            ),
            (
                "-N -device- flow-type udp4 dst-ip fd00::1 action 1",
                "address family",
            ),
            (
                "-N -device- flow-type udp4 vlan 5 action 1",
                "vlan is not supported",
            ),
            ("-L -device- rx 4", "only `-L -device- combined N`"),
            ("-K -device- tso off", "-K is not an ethtool option"),
            ("-N", "expected an ethtool option"),
            (
                "-N -device- flow-type udp4 dst-port 70000 action 1",
                "not a port",
            ),
        ];
        for (cmd, want) in cases {
            let err = translate(cmd).expect_err(cmd);
            assert!(err.contains(want), "{cmd}: {err}");
        }
    }
}
