//! Parsing and validation shared by the two config forms: device, driver and
//! node selectors, names, counts.

use std::collections::hash_map::{Entry, HashMap};

use crate::json::{Json, JsonPath};
use crate::model::{
    DeviceMatch, DeviceSelector, DriverSelector, MacAddress, NodeSelector, PciAddress, PoolConfig,
};
use crate::reader::{Ctx, Keys, ObjReader};

/// Largest number of secondary devices (CDQ subfunctions) per primary
/// device. Upstream's bound moved between 64 and 350 across versions (and
/// its message said 1000); 350 is what its own e2e config uses.
pub const SECONDARY_MAX: i64 = 350;
/// Largest upstream `primary` value (upstream's message said 100, its code 10).
pub const UPSTREAM_PRIMARY_MAX: i64 = 10;
/// Largest `maxDevices` in the richer form.
pub const MAX_DEVICES_MAX: i64 = 1024;
/// Linux `IFNAMSIZ - 1`.
pub const IFNAME_MAX: usize = 15;

/// Which form is being read; decides key names and defaults.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Upstream,
    V1Alpha1,
}

impl Dialect {
    pub fn keys(self) -> Keys {
        match self {
            Dialect::Upstream => Keys::GoFold,
            Dialect::V1Alpha1 => Keys::Exact,
        }
    }
}

/// Refuses a setting the schema knows but afxdp-dp cannot honour yet, so
/// that no file silently means something the daemon does not do:
/// `pools[0].sharing: "csi" (bpfman's CSI driver) is not supported yet`. `what` names
/// the value (and what it would do); `hint` follows, e.g. `; use "native"`.
pub(crate) fn not_supported(path: &JsonPath, what: &str, hint: &str, ctx: &mut Ctx) {
    ctx.invalid(path, format!("{what} is not supported yet{hint}"));
}

/// What `requiresUnprivilegedBpf: true` is refused with (both forms).
pub(crate) fn refuse_unprivileged_bpf(path: &JsonPath, ctx: &mut Ctx) {
    not_supported(
        path,
        "true (taking devices only where kernel.unprivileged_bpf_disabled is 0)",
        "",
        ctx,
    );
}

/// Interface names: 1 to 15 bytes of letters, digits, `_`, `-` and `.`
/// (upstream allowed 50 characters, which can never match a netdev, and no
/// `.`, which VLAN devices use).
pub(crate) fn check_ifname(name: &str, path: &JsonPath, ctx: &mut Ctx) -> bool {
    if name.is_empty() {
        ctx.missing(path, "interface name must not be empty");
        return false;
    }
    if name.len() > IFNAME_MAX {
        ctx.invalid(
            path,
            format!("interface name {name:?} is longer than {IFNAME_MAX} bytes (Linux IFNAMSIZ)"),
        );
        return false;
    }
    if name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        ctx.invalid(
            path,
            format!("invalid interface name {name:?}: use letters, digits, '_', '-' and '.'"),
        );
        return false;
    }
    true
}

/// Kernel driver names: 1 to 50 letters, digits, `_` and `-` (upstream rule).
pub(crate) fn check_driver_name(name: &str, path: &JsonPath, ctx: &mut Ctx) -> bool {
    if name.is_empty() {
        ctx.missing(path, "a driver must have a name");
        return false;
    }
    if name.len() > 50 {
        ctx.invalid(
            path,
            format!("driver name {name:?} is longer than 50 characters"),
        );
        return false;
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        ctx.invalid(
            path,
            format!("invalid driver name {name:?}: use letters, digits, '_' and '-'"),
        );
        return false;
    }
    true
}

/// Kubernetes node names are DNS-1123 subdomains (upstream rejected the dots
/// of FQDN node names): labels of 1-63 letters, digits and `-` (not at
/// either end) joined by `.`, 253 characters at most.
pub(crate) fn check_hostname(name: &str, path: &JsonPath, ctx: &mut Ctx) -> bool {
    if name.is_empty() {
        ctx.missing(path, "a node must have a hostname");
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        ctx.invalid(
            path,
            format!(
                "invalid node hostname {name:?}: expected a DNS name (labels of letters, digits \
                 and '-', at most 63 characters each, joined by '.')"
            ),
        );
        return false;
    }
    true
}

/// A count such as `secondary`: in the upstream form 0 means "not set" (Go
/// zero value); in the richer form the key must simply be left out.
pub(crate) fn count(
    obj: &mut ObjReader<'_>,
    key: &'static str,
    max: i64,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> Option<u32> {
    let (path, n) = obj.int(key, ctx)?;
    if n == 0 && dialect == Dialect::Upstream {
        return None;
    }
    if !(1..=max).contains(&n) {
        let unset = if dialect == Dialect::Upstream {
            " (0 or absent: not set)"
        } else {
            " (leave it out when not needed)"
        };
        ctx.invalid(
            &path,
            format!("{key} must be between 1 and {max}, got {n}{unset}"),
        );
        return None;
    }
    u32::try_from(n).ok()
}

/// Reads the identification of a device (exactly one of name, pci, mac)
/// from an already opened object.
fn device_match(obj: &mut ObjReader<'_>, ctx: &mut Ctx) -> Option<DeviceMatch> {
    let name = obj.string("name", ctx);
    let pci = obj.string("pci", ctx);
    let mac = obj.string("mac", ctx);
    // Upstream treats "" like an absent key.
    let given: Vec<(&str, JsonPath, &str)> = [("name", name), ("pci", pci), ("mac", mac)]
        .into_iter()
        .filter_map(|(k, v)| v.filter(|(_, s)| !s.is_empty()).map(|(p, s)| (k, p, s)))
        .collect();
    match given.as_slice() {
        [] => {
            ctx.missing(
                obj.path(),
                "a device must be identified by one of name, pci or mac",
            );
            None
        }
        [(kind, path, value)] => match *kind {
            "name" => {
                check_ifname(value, path, ctx).then(|| DeviceMatch::Name((*value).to_owned()))
            }
            "pci" => match value.parse::<PciAddress>() {
                Ok(p) => Some(DeviceMatch::Pci(p)),
                Err(e) => {
                    ctx.invalid(path, e.0);
                    None
                }
            },
            _ => match value.parse::<MacAddress>() {
                Ok(m) => Some(DeviceMatch::Mac(m)),
                Err(e) => {
                    ctx.invalid(path, e.0);
                    None
                }
            },
        },
        many => {
            let kinds: Vec<&str> = many.iter().map(|(k, _, _)| *k).collect();
            ctx.invalid(
                obj.path(),
                format!(
                    "a device must be identified by only one of name, pci or mac (found {})",
                    kinds.join(" and ")
                ),
            );
            None
        }
    }
}

/// A device entry. In the upstream form a bare string is accepted as a
/// device name (the shape of upstream's first config versions).
pub(crate) fn device_selector(
    v: &Json,
    path: &JsonPath,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> Option<DeviceSelector> {
    if let (Json::String(s), Dialect::Upstream) = (v, dialect) {
        return check_ifname(s, path, ctx).then(|| DeviceSelector {
            matcher: DeviceMatch::Name(s.clone()),
            secondary: None,
        });
    }
    let mut obj = ObjReader::new(v, path, dialect.keys(), ctx)?;
    let matcher = device_match(&mut obj, ctx);
    let secondary = count(&mut obj, "secondary", SECONDARY_MAX, dialect, ctx);
    obj.finish(ctx);
    Some(DeviceSelector {
        matcher: matcher?,
        secondary,
    })
}

/// An exclusion entry: a device identified by name, pci or mac.
fn device_exclusion(
    v: &Json,
    path: &JsonPath,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> Option<DeviceMatch> {
    if let (Json::String(s), Dialect::Upstream) = (v, dialect) {
        return check_ifname(s, path, ctx).then(|| DeviceMatch::Name(s.clone()));
    }
    let mut obj = ObjReader::new(v, path, dialect.keys(), ctx)?;
    let m = device_match(&mut obj, ctx);
    if dialect == Dialect::Upstream {
        // Upstream's exclusion entries are full device objects; a secondary
        // count there means nothing.
        if let Some((p, _)) = obj.take("secondary", ctx) {
            ctx.warn(
                &p,
                "ignored: secondary has no meaning on an excluded device",
            );
        }
    }
    obj.finish(ctx);
    m
}

/// A driver entry. In the upstream form a bare string is accepted as a
/// driver name; such entries skip addressed devices, as upstream's first
/// versions (which used that shape) always did.
pub(crate) fn driver_selector(
    v: &Json,
    path: &JsonPath,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> Option<DriverSelector> {
    if let (Json::String(s), Dialect::Upstream) = (v, dialect) {
        return check_driver_name(s, path, ctx).then(|| DriverSelector {
            name: s.clone(),
            max_devices: None,
            secondary: None,
            exclude: Vec::new(),
            exclude_addressed: true,
        });
    }
    let mut obj = ObjReader::new(v, path, dialect.keys(), ctx)?;
    let name = match obj.string("name", ctx) {
        Some((p, s)) => check_driver_name(s, &p, ctx).then(|| s.to_owned()),
        None => {
            ctx.missing(&obj.child_path("name"), "a driver must have a name");
            None
        }
    };
    let (max_key, max_max) = match dialect {
        Dialect::Upstream => ("primary", UPSTREAM_PRIMARY_MAX),
        Dialect::V1Alpha1 => ("maxDevices", MAX_DEVICES_MAX),
    };
    let max_devices = count(&mut obj, max_key, max_max, dialect, ctx);
    let secondary = count(&mut obj, "secondary", SECONDARY_MAX, dialect, ctx);
    let excl_key = match dialect {
        Dialect::Upstream => "excludeDevices",
        Dialect::V1Alpha1 => "exclude",
    };
    let mut exclude = Vec::new();
    if let Some((p, items)) = obj.array(excl_key, ctx) {
        for (i, item) in items.iter().enumerate() {
            if let Some(m) = device_exclusion(item, &p.index(i), dialect, ctx) {
                exclude.push(m);
            }
        }
    }
    let exclude_addressed = obj
        .bool("excludeAddressed", ctx)
        .map(|(_, b)| b)
        .unwrap_or(dialect == Dialect::V1Alpha1);
    obj.finish(ctx);
    Some(DriverSelector {
        name: name?,
        max_devices,
        secondary,
        exclude,
        exclude_addressed,
    })
}

/// Reads `drivers` and `devices` arrays from `obj`.
pub(crate) fn drivers_and_devices(
    obj: &mut ObjReader<'_>,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> (Vec<DriverSelector>, Vec<DeviceSelector>) {
    let mut drivers = Vec::new();
    if let Some((p, items)) = obj.array("drivers", ctx) {
        for (i, item) in items.iter().enumerate() {
            let ip = p.index(i);
            if *item == Json::Null {
                ctx.invalid(&ip, "a driver entry cannot be null");
            } else if let Some(d) = driver_selector(item, &ip, dialect, ctx) {
                drivers.push(d);
            }
        }
    }
    let mut devices = Vec::new();
    if let Some((p, items)) = obj.array("devices", ctx) {
        for (i, item) in items.iter().enumerate() {
            let ip = p.index(i);
            if *item == Json::Null {
                ctx.invalid(&ip, "a device entry cannot be null");
            } else if let Some(d) = device_selector(item, &ip, dialect, ctx) {
                devices.push(d);
            }
        }
    }
    (drivers, devices)
}

/// A `nodes[]` entry. A node with neither drivers nor devices opts that
/// node out of the pool, as upstream's README documents (its validator
/// rejected the README's own example).
pub(crate) fn node_selector(
    v: &Json,
    path: &JsonPath,
    dialect: Dialect,
    ctx: &mut Ctx,
) -> Option<NodeSelector> {
    let mut obj = ObjReader::new(v, path, dialect.keys(), ctx)?;
    let hostname = match obj.string("hostname", ctx) {
        Some((p, s)) => check_hostname(s, &p, ctx).then(|| s.to_owned()),
        None => {
            ctx.missing(&obj.child_path("hostname"), "a node must have a hostname");
            None
        }
    };
    let (drivers, devices) = drivers_and_devices(&mut obj, dialect, ctx);
    obj.finish(ctx);
    Some(NodeSelector {
        hostname: hostname?,
        drivers,
        devices,
    })
}

/// Reads a `nodes` array, rejecting a hostname listed twice (upstream
/// silently used the first).
pub(crate) fn nodes(obj: &mut ObjReader<'_>, dialect: Dialect, ctx: &mut Ctx) -> Vec<NodeSelector> {
    let mut out = Vec::new();
    // Lower-cased hostname -> index of the entry that configured it first.
    let mut seen: HashMap<String, usize> = HashMap::new();
    if let Some((p, items)) = obj.array("nodes", ctx) {
        for (i, item) in items.iter().enumerate() {
            let ip = p.index(i);
            if *item == Json::Null {
                ctx.invalid(&ip, "a node entry cannot be null");
                continue;
            }
            let Some(n) = node_selector(item, &ip, dialect, ctx) else {
                continue;
            };
            match seen.entry(n.hostname.to_ascii_lowercase()) {
                Entry::Occupied(first) => ctx.invalid(
                    &ip.key("hostname"),
                    format!(
                        "node {:?} is already configured by {}",
                        n.hostname,
                        p.index(*first.get())
                    ),
                ),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Cross-pool checks: unique names and unique env var names. Equal names
/// have equal env var names, so one map from env var name to the first pool
/// that has it finds both in a single pass (a 1 MiB ConfigMap holds some
/// 16,000 pools).
pub(crate) fn check_pools(pools: &[(JsonPath, PoolConfig)], ctx: &mut Ctx) {
    let mut first_by_env: HashMap<String, usize> = HashMap::with_capacity(pools.len());
    for (i, (path, pool)) in pools.iter().enumerate() {
        let j = *first_by_env.entry(pool.env_var_name()).or_insert(i);
        if j == i {
            continue;
        }
        let (other_path, other) = &pools[j];
        let message = if other.name == pool.name {
            format!("duplicate pool name {:?} (also {other_path})", pool.name)
        } else {
            format!(
                "pool name {:?} maps to the same environment variable {} as pool {:?} ({other_path})",
                pool.name,
                pool.env_var_name(),
                other.name
            )
        };
        ctx.invalid(&path.key("name"), message);
    }
}

/// Pool names for the upstream form: 1-20 ASCII letters and digits
/// (upstream's rule; it is valid in both `afxdp/<pool>` and env var names).
pub(crate) fn check_upstream_pool_name(name: &str, path: &JsonPath, ctx: &mut Ctx) -> bool {
    if name.is_empty() {
        ctx.missing(path, "a pool must have a name");
        return false;
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        ctx.invalid(
            path,
            format!("invalid pool name {name:?}: use only letters and digits"),
        );
        return false;
    }
    if name.len() > 20 {
        ctx.invalid(
            path,
            format!("pool name {name:?} is longer than 20 characters"),
        );
        return false;
    }
    true
}

/// Pool names for the richer form: `[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?`,
/// at most 63 characters: valid as the name part of `afxdp/<pool>` and
/// mapped to an env var suffix by upper-casing and `-` → `_` (names that
/// collide after that mapping are rejected by `check_pools`). Every
/// upstream pool name is valid here.
pub(crate) fn check_v1_pool_name(name: &str, path: &JsonPath, ctx: &mut Ctx) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if name.is_empty() {
        ctx.missing(path, "a pool must have a name");
    } else if !ok {
        ctx.invalid(
            path,
            format!(
                "invalid pool name {name:?}: use 1-63 letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        );
    }
    ok
}
