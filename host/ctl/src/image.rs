//! `afxdpctl image`: push and inspect eBPF bytecode images (bpfman's
//! layout) with the same OCI code, verification and cache afxdp-dp uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;

use afxdp_oci::{PolicyRef, PullPolicy};

use crate::policy::{cache_dir, fetcher_with};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Push an eBPF ELF object as a bytecode image (one tar+gzip layer with
    /// the object at its root under its file name; `io.ebpf.programs` and
    /// `io.ebpf.maps` labels); prints the pinned reference.
    Push {
        /// The eBPF object (`.o`, ELF with e_machine EM_BPF).
        object: PathBuf,
        /// `registry/repo:tag`.
        reference: String,
        /// A program of the object: function name and program type
        /// (`xsk_redirect=xdp`). Repeat for several.
        #[arg(long = "program", value_name = "NAME=TYPE", required = true, value_parser = name_type)]
        programs: Vec<(String, String)>,
        /// A map of the object: name and type (`xsks_map=xskmap`). Repeat for several.
        #[arg(long = "map", value_name = "NAME=TYPE", value_parser = name_type)]
        maps: Vec<(String, String)>,
        /// Allow plain HTTP to this registry although it is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// Fetch (verifying digests) and describe a bytecode image as JSON:
    /// digest, programs, maps, object name, size and digest. A tag is
    /// resolved online; a pinned reference is served from the cache when
    /// there.
    Inspect {
        /// `registry/repo@sha256:…` or `registry/repo:tag`.
        reference: String,
        /// Allow plain HTTP to this registry although it is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
}

/// `NAME=TYPE`, both non-empty.
fn name_type(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, t)) if !n.is_empty() && !t.is_empty() => Ok((n.to_string(), t.to_string())),
        _ => Err(format!("{s:?} is not NAME=TYPE")),
    }
}

fn to_map(what: &str, pairs: Vec<(String, String)>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, ty) in pairs {
        if out.insert(name.clone(), ty).is_some() {
            bail!("--{what} {name} given more than once");
        }
    }
    Ok(out)
}

fn insecure_list(r: &PolicyRef, insecure: bool) -> Vec<String> {
    if insecure {
        vec![r.registry().to_string()]
    } else {
        Vec::new()
    }
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<bool> {
    let rt = crate::runtime()?;
    rt.block_on(async move {
        match cmd {
            ImageCommand::Push {
                object,
                reference,
                programs,
                maps,
                insecure,
            } => {
                let programs = to_map("program", programs)?;
                let maps = to_map("map", maps)?;
                let bytes = std::fs::read(&object)
                    .with_context(|| format!("reading {}", object.display()))?;
                let file_name = file_name(&object)?;
                let r = PolicyRef::parse_with_pull_policy(&reference, Some(PullPolicy::Always))?;
                let pinned = fetcher_with(&cache_dir(), insecure_list(&r, insecure))?
                    .push_bytecode_file(&reference, &file_name, &bytes, &programs, &maps)
                    .await?;
                println!("{pinned}");
                Ok(true)
            }
            ImageCommand::Inspect {
                reference,
                insecure,
            } => {
                let r =
                    PolicyRef::parse_with_pull_policy(&reference, Some(PullPolicy::IfNotPresent))?;
                let pull = if r.digest().is_some() {
                    PullPolicy::IfNotPresent
                } else {
                    PullPolicy::Always
                };
                let f = fetcher_with(&cache_dir(), insecure_list(&r, insecure))?
                    .fetch_bytecode(&r, pull)
                    .await?;
                let out = json!({
                    "reference": reference,
                    "pinned": format!("{}/{}@{}", r.registry(), r.repository(), f.manifest_digest),
                    "digest": f.manifest_digest,
                    "layerDigest": f.layer_digest,
                    "programs": f.programs,
                    "maps": f.maps,
                    "file": f.file_name,
                    "objectSize": f.object_size,
                    "objectDigest": f.object_digest,
                    "objectPath": f.object_path,
                    "fromCache": f.from_cache,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                Ok(true)
            }
        }
    })
}

/// The object's file name, as it will appear at the layer root.
fn file_name(object: &Path) -> anyhow::Result<String> {
    object
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no UTF-8 file name", object.display()))
}
