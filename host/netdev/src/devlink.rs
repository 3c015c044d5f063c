//! devlink: PCI subfunction ports for `cdq` mode, through the kernel's devlink generic-netlink
//! family (`"devlink"`), what `devlink port add pci/0000:81:00.0 flavour pcisf pfnum 0 sfnum 88`,
//! `devlink port function set ... state active` and `devlink port del` send.
//!
//! No rust-netlink crate has devlink messages, so the few attributes used here are written as
//! a small [`GenlFamily`] payload on top of `netlink-packet-core`'s [`Nla`]; the socket,
//! request/ack handling and family lookup are the ones ethtool netlink uses (`crate::nl`).
//! The numbers come from the kernel uapi header `<linux/devlink.h>`; a test compiles a C
//! program against that header and checks every one of them.
//!
//! afxdp-dp creates and activates a `cdq` slot's subfunction with these at Allocate and deletes
//! it at release (`afxdp_dp::subfunction`).
//!
//! Every call blocks and needs `CAP_NET_ADMIN`. devlink instances live in a network namespace
//! (the initial one unless moved); call from the namespace that holds the device.

use netlink_packet_core::{
    parse_string, parse_u16, parse_u32, parse_u8, DecodeError, DefaultNla, Emitable, Nla,
    NlaBuffer, NlasIterator, Parseable, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::nl::{genl_request, GenlFamilyId, NlSocket};
use crate::NetdevError;

/// `DEVLINK_GENL_NAME`.
const FAMILY_NAME: &str = "devlink";
/// `DEVLINK_GENL_VERSION`.
const GENL_VERSION: u8 = 1;

// `enum devlink_command` (uapi <linux/devlink.h>): DEVLINK_CMD_UNSPEC = 0, GET, SET, NEW, DEL,
// PORT_GET = 5, PORT_SET = 6, PORT_NEW = 7, PORT_DEL = 8.
/// `DEVLINK_CMD_PORT_SET`.
const CMD_PORT_SET: u8 = 6;
/// `DEVLINK_CMD_PORT_NEW`.
const CMD_PORT_NEW: u8 = 7;
/// `DEVLINK_CMD_PORT_DEL`.
const CMD_PORT_DEL: u8 = 8;

// `enum devlink_attr` (uapi <linux/devlink.h>).
/// `DEVLINK_ATTR_BUS_NAME` (NUL-terminated string).
const ATTR_BUS_NAME: u16 = 1;
/// `DEVLINK_ATTR_DEV_NAME` (NUL-terminated string).
const ATTR_DEV_NAME: u16 = 2;
/// `DEVLINK_ATTR_PORT_INDEX` (u32).
const ATTR_PORT_INDEX: u16 = 3;
/// `DEVLINK_ATTR_PORT_NETDEV_NAME` (string).
const ATTR_PORT_NETDEV_NAME: u16 = 7;
/// `DEVLINK_ATTR_PORT_FLAVOUR` (u16, `enum devlink_port_flavour`).
const ATTR_PORT_FLAVOUR: u16 = 77;
/// `DEVLINK_ATTR_PORT_PCI_PF_NUMBER` (u16).
const ATTR_PORT_PCI_PF_NUMBER: u16 = 127;
/// `DEVLINK_ATTR_PORT_FUNCTION` (nested, `enum devlink_port_function_attr`).
const ATTR_PORT_FUNCTION: u16 = 145;
/// `DEVLINK_ATTR_PORT_PCI_SF_NUMBER` (u32).
const ATTR_PORT_PCI_SF_NUMBER: u16 = 164;

/// `DEVLINK_PORT_FLAVOUR_PCI_SF` (`enum devlink_port_flavour`: PHYSICAL = 0, CPU, DSA,
/// PCI_PF, PCI_VF, VIRTUAL, UNUSED, PCI_SF = 7).
const PORT_FLAVOUR_PCI_SF: u16 = 7;
/// `DEVLINK_PORT_FN_ATTR_STATE` (u8; `enum devlink_port_function_attr`: UNSPEC = 0,
/// HW_ADDR = 1, STATE = 2).
const PORT_FN_ATTR_STATE: u16 = 2;
/// `DEVLINK_PORT_FN_STATE_ACTIVE` (`enum devlink_port_fn_state`: INACTIVE = 0, ACTIVE = 1).
const PORT_FN_STATE_ACTIVE: u8 = 1;

const PORT_NEW: &str = "DEVLINK_CMD_PORT_NEW";
const PORT_SET: &str = "DEVLINK_CMD_PORT_SET";
const PORT_DEL: &str = "DEVLINK_CMD_PORT_DEL";

/// A subfunction port [`port_new`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHandle {
    /// devlink bus name of the parent device, e.g. `pci`.
    pub bus: String,
    /// devlink device name of the parent device, e.g. `0000:81:00.0`.
    pub dev: String,
    /// The port index the kernel gave the new port.
    pub port_index: u32,
    /// The subfunction's representor netdev, when the kernel's reply named one.
    pub netdev: Option<String>,
}

impl PortHandle {
    /// The devlink device as `devlink` shows it: `pci/0000:81:00.0`.
    pub fn device(&self) -> String {
        device_name(&self.bus, &self.dev)
    }
}

fn device_name(bus: &str, dev: &str) -> String {
    format!("{bus}/{dev}")
}

/// `DEVLINK_PORT_FN_ATTR_*` inside `DEVLINK_ATTR_PORT_FUNCTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortFnAttr {
    State(u8),
    Other(DefaultNla),
}

impl Nla for PortFnAttr {
    fn value_len(&self) -> usize {
        match self {
            PortFnAttr::State(_) => 1,
            PortFnAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            PortFnAttr::State(_) => PORT_FN_ATTR_STATE,
            PortFnAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            PortFnAttr::State(s) => buffer[0] = *s,
            PortFnAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl PortFnAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        Ok(match buf.kind() {
            PORT_FN_ATTR_STATE => PortFnAttr::State(parse_u8(buf.value())?),
            _ => PortFnAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The `DEVLINK_ATTR_*` this module sends or reads; the rest are kept as [`DefaultNla`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum DevlinkAttr {
    BusName(String),
    DevName(String),
    PortIndex(u32),
    PortNetdevName(String),
    PortFlavour(u16),
    PciPfNumber(u16),
    PciSfNumber(u32),
    PortFunction(Vec<PortFnAttr>),
    Other(DefaultNla),
}

impl Nla for DevlinkAttr {
    fn value_len(&self) -> usize {
        match self {
            // NLA_NUL_STRING in the kernel's policy: the NUL is part of the value.
            DevlinkAttr::BusName(s) | DevlinkAttr::DevName(s) | DevlinkAttr::PortNetdevName(s) => {
                s.len() + 1
            }
            DevlinkAttr::PortIndex(_) | DevlinkAttr::PciSfNumber(_) => 4,
            DevlinkAttr::PortFlavour(_) | DevlinkAttr::PciPfNumber(_) => 2,
            DevlinkAttr::PortFunction(nested) => nested.as_slice().buffer_len(),
            DevlinkAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            DevlinkAttr::BusName(_) => ATTR_BUS_NAME,
            DevlinkAttr::DevName(_) => ATTR_DEV_NAME,
            DevlinkAttr::PortIndex(_) => ATTR_PORT_INDEX,
            DevlinkAttr::PortNetdevName(_) => ATTR_PORT_NETDEV_NAME,
            DevlinkAttr::PortFlavour(_) => ATTR_PORT_FLAVOUR,
            DevlinkAttr::PciPfNumber(_) => ATTR_PORT_PCI_PF_NUMBER,
            DevlinkAttr::PciSfNumber(_) => ATTR_PORT_PCI_SF_NUMBER,
            DevlinkAttr::PortFunction(_) => ATTR_PORT_FUNCTION | NLA_F_NESTED,
            DevlinkAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DevlinkAttr::BusName(s) | DevlinkAttr::DevName(s) | DevlinkAttr::PortNetdevName(s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            DevlinkAttr::PortIndex(n) | DevlinkAttr::PciSfNumber(n) => {
                buffer[..4].copy_from_slice(&n.to_ne_bytes())
            }
            DevlinkAttr::PortFlavour(n) | DevlinkAttr::PciPfNumber(n) => {
                buffer[..2].copy_from_slice(&n.to_ne_bytes())
            }
            DevlinkAttr::PortFunction(nested) => nested.as_slice().emit(buffer),
            DevlinkAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl DevlinkAttr {
    fn parse(buf: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            ATTR_BUS_NAME => DevlinkAttr::BusName(parse_string(v)?),
            ATTR_DEV_NAME => DevlinkAttr::DevName(parse_string(v)?),
            ATTR_PORT_INDEX => DevlinkAttr::PortIndex(parse_u32(v)?),
            ATTR_PORT_NETDEV_NAME => DevlinkAttr::PortNetdevName(parse_string(v)?),
            ATTR_PORT_FLAVOUR => DevlinkAttr::PortFlavour(parse_u16(v)?),
            ATTR_PORT_PCI_PF_NUMBER => DevlinkAttr::PciPfNumber(parse_u16(v)?),
            ATTR_PORT_PCI_SF_NUMBER => DevlinkAttr::PciSfNumber(parse_u32(v)?),
            ATTR_PORT_FUNCTION => DevlinkAttr::PortFunction(
                NlasIterator::new(v)
                    .map(|n| PortFnAttr::parse(&n?))
                    .collect::<Result<_, _>>()?,
            ),
            _ => DevlinkAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// One devlink generic-netlink message: a command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DevlinkMessage {
    cmd: u8,
    nlas: Vec<DevlinkAttr>,
}

impl GenlFamily for DevlinkMessage {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        GENL_VERSION
    }
}

impl Emitable for DevlinkMessage {
    fn buffer_len(&self) -> usize {
        self.nlas.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.nlas.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for DevlinkMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let nlas = NlasIterator::new(buf)
            .map(|n| DevlinkAttr::parse(&n?))
            .collect::<Result<_, _>>()?;
        Ok(DevlinkMessage {
            cmd: header.cmd,
            nlas,
        })
    }
}

fn port_new_message(bus: &str, dev: &str, pfnum: u16, sfnum: u32) -> DevlinkMessage {
    DevlinkMessage {
        cmd: CMD_PORT_NEW,
        nlas: vec![
            DevlinkAttr::BusName(bus.to_owned()),
            DevlinkAttr::DevName(dev.to_owned()),
            DevlinkAttr::PortFlavour(PORT_FLAVOUR_PCI_SF),
            DevlinkAttr::PciPfNumber(pfnum),
            DevlinkAttr::PciSfNumber(sfnum),
        ],
    }
}

/// The attributes that name an existing port: bus, device and port index.
fn port_attrs(h: &PortHandle) -> Vec<DevlinkAttr> {
    vec![
        DevlinkAttr::BusName(h.bus.clone()),
        DevlinkAttr::DevName(h.dev.clone()),
        DevlinkAttr::PortIndex(h.port_index),
    ]
}

fn port_activate_message(h: &PortHandle) -> DevlinkMessage {
    let mut nlas = port_attrs(h);
    nlas.push(DevlinkAttr::PortFunction(vec![PortFnAttr::State(
        PORT_FN_STATE_ACTIVE,
    )]));
    DevlinkMessage {
        cmd: CMD_PORT_SET,
        nlas,
    }
}

fn port_del_message(h: &PortHandle) -> DevlinkMessage {
    DevlinkMessage {
        cmd: CMD_PORT_DEL,
        nlas: port_attrs(h),
    }
}

/// The port a `DEVLINK_CMD_PORT_NEW` reply describes.
fn handle_from_reply(bus: &str, dev: &str, nlas: &[DevlinkAttr]) -> Result<PortHandle, String> {
    let mut port_index = None;
    let mut netdev = None;
    for a in nlas {
        match a {
            DevlinkAttr::PortIndex(i) => port_index = Some(*i),
            DevlinkAttr::PortNetdevName(n) => netdev = Some(n.clone()),
            _ => {}
        }
    }
    Ok(PortHandle {
        bus: bus.to_owned(),
        dev: dev.to_owned(),
        port_index: port_index.ok_or("no DEVLINK_ATTR_PORT_INDEX")?,
        netdev,
    })
}

/// The devlink generic-netlink family.
static FAMILY: GenlFamilyId = GenlFamilyId::new(FAMILY_NAME);

/// Maps a failed family lookup: `ENOENT` means the kernel has no devlink at all.
fn family_error(err: NetdevError) -> NetdevError {
    match err {
        NetdevError::Netlink { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
            NetdevError::NoDevlink { source }
        }
        other => other,
    }
}

/// devlink's generic-netlink family id (looked up once): whether this kernel has devlink.
///
/// # Errors
/// [`NetdevError::NoDevlink`] when the kernel was built without `CONFIG_NET_DEVLINK`.
pub fn family_id() -> Result<u16, NetdevError> {
    socket().map(|(_, id)| id)
}

fn socket() -> Result<(NlSocket, u16), NetdevError> {
    FAMILY.socket().map_err(family_error)
}

/// Names the command and the devlink device in a refused request.
fn devlink_error(op: &'static str, device: String) -> impl FnOnce(NetdevError) -> NetdevError {
    move |err| match err {
        NetdevError::Netlink {
            source, message, ..
        } => NetdevError::Devlink {
            op,
            device,
            source,
            message,
        },
        other => other,
    }
}

/// Creates a PCI subfunction port `sfnum` on PF `pfnum` of devlink device `bus/dev`
/// (`DEVLINK_CMD_PORT_NEW`, flavour `pcisf`); the new function starts inactive.
///
/// # Errors
/// [`NetdevError::Devlink`] with the kernel's errno and reason: `ENODEV` when there is no
/// such devlink device, `EOPNOTSUPP` when its driver has no subfunctions, `EEXIST` when
/// `sfnum` is taken; [`NetdevError::NoDevlink`] on a kernel without devlink.
pub fn port_new(bus: &str, dev: &str, pfnum: u16, sfnum: u32) -> Result<PortHandle, NetdevError> {
    tracing::debug!(bus, dev, pfnum, sfnum, "creating devlink subfunction port");
    let (mut sock, family) = socket()?;
    let reply = sock
        .request_one(
            PORT_NEW,
            genl_request(port_new_message(bus, dev, pfnum, sfnum), family),
        )
        .map_err(devlink_error(PORT_NEW, device_name(bus, dev)))?;
    handle_from_reply(bus, dev, &reply.payload.nlas).map_err(|detail| NetdevError::Malformed {
        op: PORT_NEW,
        detail,
    })
}

/// Activates the subfunction behind `handle` (`DEVLINK_CMD_PORT_SET` with the port function's
/// state `active`): the driver then creates its auxiliary device and netdev.
///
/// # Errors
/// [`NetdevError::Devlink`] with the kernel's errno and reason.
pub fn port_activate(handle: &PortHandle) -> Result<(), NetdevError> {
    tracing::debug!(?handle, "activating devlink subfunction port");
    let (mut sock, family) = socket()?;
    sock.request_ack(
        PORT_SET,
        genl_request(port_activate_message(handle), family),
        0,
    )
    .map_err(devlink_error(PORT_SET, handle.device()))
}

/// Deletes the subfunction port behind `handle` (`DEVLINK_CMD_PORT_DEL`).
///
/// # Errors
/// [`NetdevError::Devlink`] with the kernel's errno and reason (`ENODEV` when the device or
/// port is already gone).
pub fn port_del(handle: &PortHandle) -> Result<(), NetdevError> {
    tracing::debug!(?handle, "deleting devlink subfunction port");
    let (mut sock, family) = socket()?;
    sock.request_ack(PORT_DEL, genl_request(port_del_message(handle), family), 0)
        .map_err(devlink_error(PORT_DEL, handle.device()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};

    /// Serializes `msg` the way `NlSocket` sends it (family id 0x1d for the test).
    fn bytes(msg: DevlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(genl_request(msg, 0x1d)),
        );
        m.finalize();
        let mut b = vec![0u8; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    /// Walks the attributes after the 16-byte netlink and 4-byte genl headers, checking each
    /// one's length field, padding and alignment; returns (type with flags, payload).
    fn attrs(buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < buf.len() {
            assert_eq!(off % 4, 0, "attribute at {off} not 4-byte aligned");
            let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]);
            assert!(
                len >= 4 && off + len <= buf.len(),
                "bad nla_len {len} at {off}"
            );
            out.push((ty, buf[off + 4..off + len].to_vec()));
            let padded = (len + 3) & !3;
            assert!(
                buf[off + len..(off + padded).min(buf.len())]
                    .iter()
                    .all(|&b| b == 0),
                "padding not zero"
            );
            off += padded;
        }
        assert_eq!(off, buf.len());
        out
    }

    fn body(b: &[u8], cmd: u8) -> &[u8] {
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        assert_eq!(
            u16::from_ne_bytes([b[4], b[5]]),
            0x1d,
            "nlmsg_type = family id"
        );
        assert_eq!(b[16], cmd, "genl cmd");
        assert_eq!(b[17], 1, "genl version = DEVLINK_GENL_VERSION");
        assert_eq!(&b[18..20], &[0, 0], "genl reserved");
        &b[20..]
    }

    fn handle() -> PortHandle {
        PortHandle {
            bus: "pci".into(),
            dev: "0000:81:00.0".into(),
            port_index: 0x8000,
            netdev: None,
        }
    }

    /// `DEVLINK_ATTR_BUS_NAME` and `DEVLINK_ATTR_DEV_NAME` of `pci/0000:81:00.0`, NUL included,
    /// then `more`.
    fn device_and(more: &[(u16, &[u8])]) -> Vec<(u16, Vec<u8>)> {
        let mut v = vec![(1, b"pci\0".to_vec()), (2, b"0000:81:00.0\0".to_vec())];
        v.extend(more.iter().map(|(t, p)| (*t, p.to_vec())));
        v
    }

    #[test]
    fn port_new_bytes() {
        let b = bytes(port_new_message("pci", "0000:81:00.0", 0, 88));
        let a = attrs(body(&b, 7));
        let expected = device_and(&[
            (77, &7u16.to_ne_bytes()),
            (127, &0u16.to_ne_bytes()),
            (164, &88u32.to_ne_bytes()),
        ]);
        assert_eq!(a, expected);
        // nla_len counts header + payload without padding: "pci\0" = 8, the u16s = 6.
        let b = body(&b, 7);
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 8);
        assert_eq!(u16::from_ne_bytes([b[8], b[9]]), 17);
        assert_eq!(u16::from_ne_bytes([b[28], b[29]]), 6);
        assert_eq!(b.len(), 8 + 20 + 8 + 8 + 8);
    }

    #[test]
    fn port_activate_bytes_nest_the_function_state() {
        let b = bytes(port_activate_message(&handle()));
        let a = attrs(body(&b, 6));
        assert_eq!(a.len(), 4);
        assert_eq!(a[..3], device_and(&[(3, &0x8000u32.to_ne_bytes())]));
        let (ty, nested) = &a[3];
        assert_eq!(
            *ty,
            145 | 0x8000,
            "DEVLINK_ATTR_PORT_FUNCTION | NLA_F_NESTED"
        );
        // One u8 attribute: nla_len 5, padded to 8.
        assert_eq!(nested.len(), 8);
        assert_eq!(u16::from_ne_bytes([nested[0], nested[1]]), 5);
        assert_eq!(attrs(nested), vec![(2, vec![1])]);
    }

    #[test]
    fn port_del_bytes() {
        let b = bytes(port_del_message(&handle()));
        let a = attrs(body(&b, 8));
        assert_eq!(a, device_and(&[(3, &0x8000u32.to_ne_bytes())]));
    }

    #[test]
    fn port_new_reply_parses() {
        // A reply as the kernel fills it: bus, dev, index, flavour, netdev name, function.
        let mut reply = port_new_message("pci", "0000:81:00.0", 0, 88);
        reply.nlas.push(DevlinkAttr::PortIndex(98304));
        reply
            .nlas
            .push(DevlinkAttr::PortNetdevName("eth0pf0sf88".into()));
        reply
            .nlas
            .push(DevlinkAttr::PortFunction(vec![PortFnAttr::State(0)]));
        reply
            .nlas
            .push(DevlinkAttr::Other(DefaultNla::new(200, vec![1, 2, 3, 4])));
        let b = bytes(reply.clone());
        let parsed = DevlinkMessage::parse_with_param(
            &b[20..],
            GenlHeader {
                cmd: b[16],
                version: b[17],
            },
        )
        .unwrap();
        assert_eq!(parsed, reply);
        let h = handle_from_reply("pci", "0000:81:00.0", &parsed.nlas).unwrap();
        assert_eq!(h.port_index, 98304);
        assert_eq!(h.netdev.as_deref(), Some("eth0pf0sf88"));
        assert_eq!(h.device(), "pci/0000:81:00.0");
        let no_index = port_new_message("pci", "x", 0, 1);
        assert!(handle_from_reply("pci", "x", &no_index.nlas).is_err());
    }

    fn in_ci() -> bool {
        std::env::var("CI").is_ok_and(|v| v == "true")
    }

    /// Compiles a C program against the kernel's uapi `<linux/devlink.h>` and checks every
    /// number this module sends or reads.
    #[test]
    fn constants_match_the_kernel_uapi_header() {
        // Each Rust const next to the uapi name it stands for; the C program prints the latter.
        let ours: [(&str, i64); 16] = [
            ("DEVLINK_GENL_VERSION", GENL_VERSION.into()),
            ("DEVLINK_CMD_PORT_SET", CMD_PORT_SET.into()),
            ("DEVLINK_CMD_PORT_NEW", CMD_PORT_NEW.into()),
            ("DEVLINK_CMD_PORT_DEL", CMD_PORT_DEL.into()),
            ("DEVLINK_ATTR_BUS_NAME", ATTR_BUS_NAME.into()),
            ("DEVLINK_ATTR_DEV_NAME", ATTR_DEV_NAME.into()),
            ("DEVLINK_ATTR_PORT_INDEX", ATTR_PORT_INDEX.into()),
            (
                "DEVLINK_ATTR_PORT_NETDEV_NAME",
                ATTR_PORT_NETDEV_NAME.into(),
            ),
            ("DEVLINK_ATTR_PORT_FLAVOUR", ATTR_PORT_FLAVOUR.into()),
            (
                "DEVLINK_ATTR_PORT_PCI_PF_NUMBER",
                ATTR_PORT_PCI_PF_NUMBER.into(),
            ),
            ("DEVLINK_ATTR_PORT_FUNCTION", ATTR_PORT_FUNCTION.into()),
            (
                "DEVLINK_ATTR_PORT_PCI_SF_NUMBER",
                ATTR_PORT_PCI_SF_NUMBER.into(),
            ),
            ("DEVLINK_PORT_FLAVOUR_PCI_SF", PORT_FLAVOUR_PCI_SF.into()),
            ("DEVLINK_PORT_FN_ATTR_STATE", PORT_FN_ATTR_STATE.into()),
            ("DEVLINK_PORT_FN_STATE_ACTIVE", PORT_FN_STATE_ACTIVE.into()),
            ("NLA_F_NESTED", NLA_F_NESTED.into()),
        ];
        let mut c = String::from(
            "#include <stdio.h>\n#include <linux/netlink.h>\n#include <linux/devlink.h>\n\
             int main(void) {\n    printf(\"DEVLINK_GENL_NAME %s\\n\", DEVLINK_GENL_NAME);\n",
        );
        for (name, _) in &ours {
            c += &format!("    printf(\"{name} %lld\\n\", (long long)({name}));\n");
        }
        c += "    return 0;\n}\n";
        let dir = std::env::temp_dir().join(format!("afxdp-devlink-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("uapi.c");
        let exe = dir.join("uapi");
        std::fs::write(&src, c).unwrap();
        let cc = std::process::Command::new("cc")
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .output();
        let cc = match cc {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !in_ci() => {
                eprintln!("skipping: no cc outside CI");
                return;
            }
            other => other.expect("running cc"),
        };
        assert!(
            cc.status.success(),
            "cc failed (is linux-libc-dev installed?): {}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = std::process::Command::new(&exe).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let kernel: std::collections::HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(' ')).collect();
        assert_eq!(kernel.get("DEVLINK_GENL_NAME"), Some(&FAMILY_NAME));
        for (name, value) in ours {
            assert_eq!(
                kernel.get(name),
                Some(&value.to_string().as_str()),
                "{name}"
            );
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// The kernel refuses a subfunction on a devlink device that does not exist; the error
    /// names the command and the device and carries the kernel's errno. The kernel checks each
    /// attribute against devlink's policy before it looks the device up, so `ENODEV` (not
    /// `EINVAL` "invalid attribute length") also says the three messages have the layout it
    /// expects. On a kernel without devlink it checks that error instead; `tests/qemu/devlink.sh`
    /// runs it in Debian's kernel, which has devlink.
    #[test]
    fn kernel_refuses_port_new_on_a_missing_device() {
        if !is_root() {
            assert!(!in_ci(), "CI=true: this test needs root");
            eprintln!("skipping: needs root");
            return;
        }
        match family_id() {
            Ok(_) => {}
            Err(e @ NetdevError::NoDevlink { .. }) => {
                let msg = e.to_string();
                eprintln!("this kernel has no devlink: {msg}");
                assert!(msg.contains("CONFIG_NET_DEVLINK"), "{msg}");
                assert_eq!(e.errno(), Some(libc::ENOENT));
                return;
            }
            Err(e) => panic!("devlink family lookup: {e}"),
        }
        let err = port_new("pci", "0000:ff:1f.7", 0, 88).unwrap_err();
        let msg = err.to_string();
        eprintln!("the kernel refuses: {msg}");
        assert!(
            matches!(&err, NetdevError::Devlink { op: "DEVLINK_CMD_PORT_NEW", device, .. } if device == "pci/0000:ff:1f.7"),
            "{err:?}"
        );
        assert!(msg.contains("pci/0000:ff:1f.7"), "{msg}");
        assert!(msg.contains("DEVLINK_CMD_PORT_NEW"), "{msg}");
        assert_eq!(err.errno(), Some(libc::ENODEV), "{err:?}");
        // Deleting a port on that device is refused the same way.
        let h = PortHandle {
            bus: "pci".into(),
            dev: "0000:ff:1f.7".into(),
            port_index: 1,
            netdev: None,
        };
        for err in [port_activate(&h).unwrap_err(), port_del(&h).unwrap_err()] {
            assert!(err.to_string().contains("pci/0000:ff:1f.7"), "{err}");
            assert_eq!(err.errno(), Some(libc::ENODEV), "{err:?}");
        }
    }
}
