//! eBPF bytecode images, as bpfman defines them ("backwards compatible OCI
//! compliant spec", `docs/developer-guide/shipping-bytecode.md` and
//! `bpfman/src/oci_utils/image_manager.rs` in bpfman):
//!
//! - an OCI (or Docker v2) image manifest with exactly one layer of media
//!   type `application/vnd.oci.image.layer.v1.tar+gzip` or
//!   `application/vnd.docker.image.rootfs.diff.tar.gzip`;
//! - that layer is a gzip'd tar holding the eBPF ELF object (`*.o`) at its
//!   root;
//! - the image config (`application/vnd.oci.image.config.v1+json`, or the
//!   Docker one) carries, under `config.Labels`:
//!   - `io.ebpf.programs`: a JSON object, function name → program type
//!     (`{"xdp_redirect_xsk":"xdp"}`), and `io.ebpf.maps`: map name → map type;
//!   - or, in the older single-program form, `io.ebpf.bpf_function_name` and
//!     `io.ebpf.program_type` (with `io.ebpf.program_name` and
//!     `io.ebpf.filename`).
//!
//! Everything here is pure and in memory: the layer is never extracted to
//! disk, so no entry name can escape anywhere; names with `..` or absolute
//! names are refused anyway, as a sign of a hostile layer.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use oci_client::manifest::{
    OciDescriptor, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde::Deserialize;
use serde_json::Value;

use crate::artifact::{sha256_digest, Artifact, Kind};
use crate::OciError;

/// Label: JSON object, function name → program type (`xdp`, `tc`, …).
pub const LABEL_PROGRAMS: &str = "io.ebpf.programs";
/// Label: JSON object, map name → map type (`xskmap`, `hash`, …).
pub const LABEL_MAPS: &str = "io.ebpf.maps";
/// Label: the object's file name in the layer (older spec; also honoured,
/// and written, alongside [`LABEL_PROGRAMS`]).
pub const LABEL_FILENAME: &str = "io.ebpf.filename";
/// Older single-program label: the program's name (informational).
pub const LABEL_PROGRAM_NAME: &str = "io.ebpf.program_name";
/// Older single-program label: the function (ELF symbol) to load.
pub const LABEL_BPF_FUNCTION_NAME: &str = "io.ebpf.bpf_function_name";
/// Older single-program label: its program type.
pub const LABEL_PROGRAM_TYPE: &str = "io.ebpf.program_type";

/// ELF `e_machine` of eBPF objects.
pub const EM_BPF: u16 = 247;

/// Largest object accepted (the `.o` inside the layer).
pub const MAX_OBJECT_BYTES: u64 = 32 * 1024 * 1024;

/// Largest uncompressed tar stream read from a layer (gzip bomb guard).
pub const MAX_UNPACKED_BYTES: u64 = 128 * 1024 * 1024;

/// Largest file name of the object (it names a file in the cache).
const MAX_FILE_NAME: usize = 255;

/// The verified content of a bytecode image.
#[derive(Debug, Clone)]
pub(crate) struct BytecodeImage {
    /// The object's name at the root of the layer.
    pub file_name: String,
    /// The ELF object.
    pub object: Vec<u8>,
    /// Function name → program type.
    pub programs: BTreeMap<String, String>,
    /// Map name → map type.
    pub maps: BTreeMap<String, String>,
}

impl Artifact for BytecodeImage {
    const KIND: Kind = Kind::Bytecode;
    fn decode(subject: &str, config: Option<&[u8]>, layer: &[u8]) -> Result<Self, OciError> {
        let labels = parse_labels(subject, config.unwrap_or_default())?;
        let (file_name, object) = extract_object(subject, layer, labels.filename.as_deref())?;
        check_bpf_object(&format!("{subject}: {file_name}"), &object, true)?;
        Ok(BytecodeImage {
            file_name,
            object,
            programs: labels.programs,
            maps: labels.maps,
        })
    }
}

fn invalid(subject: &str, reason: impl Into<String>) -> OciError {
    OciError::InvalidBytecode {
        subject: subject.to_string(),
        reason: reason.into(),
    }
}

/// The labels that matter, in either form of the spec.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Labels {
    pub programs: BTreeMap<String, String>,
    pub maps: BTreeMap<String, String>,
    pub filename: Option<String>,
}

/// Reads `config.Labels` of an OCI/Docker image config.
pub(crate) fn parse_labels(subject: &str, config: &[u8]) -> Result<Labels, OciError> {
    #[derive(Deserialize)]
    struct ImageConfig {
        config: Option<ContainerConfig>,
    }
    #[derive(Deserialize)]
    struct ContainerConfig {
        #[serde(rename = "Labels")]
        labels: Option<BTreeMap<String, Value>>,
    }
    let cfg: ImageConfig = serde_json::from_slice(config)
        .map_err(|e| invalid(subject, format!("image config is not JSON: {e}")))?;
    let labels = cfg.config.and_then(|c| c.labels).unwrap_or_default();
    // Labels are strings; one of ours that is not is an error, others are
    // none of our business.
    let label = |name: &str| -> Result<Option<&str>, OciError> {
        match labels.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(invalid(
                subject,
                format!("label {name} is not a string but {other}"),
            )),
        }
    };
    let json_map = |name: &str, text: &str| -> Result<BTreeMap<String, String>, OciError> {
        let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
            invalid(
                subject,
                format!("label {name} is not a JSON object of strings: {e}"),
            )
        })?;
        if let Some((k, v)) = map.iter().find(|(k, v)| k.is_empty() || v.is_empty()) {
            return Err(invalid(
                subject,
                format!("label {name} has an empty name or type ({k:?}: {v:?})"),
            ));
        }
        Ok(map)
    };
    let filename = label(LABEL_FILENAME)?.map(str::to_string);
    let (programs, maps) = if let Some(p) = label(LABEL_PROGRAMS)? {
        let maps = match label(LABEL_MAPS)? {
            Some(m) => json_map(LABEL_MAPS, m)?,
            None => BTreeMap::new(),
        };
        (json_map(LABEL_PROGRAMS, p)?, maps)
    } else {
        match (label(LABEL_BPF_FUNCTION_NAME)?, label(LABEL_PROGRAM_TYPE)?) {
            (Some(f), Some(t)) if !f.is_empty() && !t.is_empty() => (
                BTreeMap::from([(f.to_string(), t.to_string())]),
                BTreeMap::new(),
            ),
            _ => {
                return Err(invalid(
                    subject,
                    format!(
                        "the image config has no {LABEL_PROGRAMS} label (nor the older \
                         {LABEL_BPF_FUNCTION_NAME} and {LABEL_PROGRAM_TYPE}): not a bytecode image"
                    ),
                ))
            }
        }
    };
    if programs.is_empty() {
        return Err(invalid(
            subject,
            format!("label {LABEL_PROGRAMS} names no program"),
        ));
    }
    Ok(Labels {
        programs,
        maps,
        filename,
    })
}

/// A `Read` that fails once more than `limit` bytes went through, and says
/// so in `exceeded` (the tar reader wraps the error it sees).
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte more than allowed, to tell "exactly the limit"
        // from "more".
        let want = buf
            .len()
            .min(usize::try_from(self.left + 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(std::io::Error::other(
                "uncompressed layer exceeds the limit",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The path of a tar entry as components, `.`/empty ones dropped; `Err`
/// for absolute paths and `..`.
fn entry_components(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.starts_with(b"/") {
        return Err("is an absolute path".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("contains `..`".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Gunzips and reads the tar in memory; returns the one `.o` regular file
/// at the root (or the one named `wanted`) and its bytes.
pub(crate) fn extract_object(
    subject: &str,
    layer: &[u8],
    wanted: Option<&str>,
) -> Result<(String, Vec<u8>), OciError> {
    if !layer.starts_with(&[0x1f, 0x8b]) {
        return Err(invalid(subject, "the layer is not gzip-compressed"));
    }
    let wanted = match wanted {
        Some(w) => {
            let comps = entry_components(w.as_bytes())
                .map_err(|why| invalid(subject, format!("{LABEL_FILENAME} {w:?} {why}")))?;
            match comps.as_slice() {
                [name] => Some(String::from_utf8_lossy(name).into_owned()),
                _ => {
                    return Err(invalid(
                        subject,
                        format!("{LABEL_FILENAME} {w:?} does not name a file at the layer root"),
                    ))
                }
            }
        }
        None => None,
    };
    let exceeded = Rc::new(Cell::new(false));
    let reader = Limited {
        inner: MultiGzDecoder::new(layer),
        left: MAX_UNPACKED_BYTES,
        exceeded: exceeded.clone(),
    };
    let mut archive = tar::Archive::new(reader);
    let tar_error = |e: std::io::Error| {
        if exceeded.get() {
            OciError::TooLarge {
                reference: subject.to_string(),
                what: "uncompressed layer",
                size: MAX_UNPACKED_BYTES + 1,
                limit: MAX_UNPACKED_BYTES,
            }
        } else {
            invalid(subject, format!("the layer is not a gzip'd tar: {e}"))
        }
    };
    let mut found: Option<(String, Vec<u8>)> = None;
    let mut objects: Vec<String> = Vec::new();
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = entry_components(&raw)
            .map_err(|why| invalid(subject, format!("layer entry {shown:?} {why}")))?;
        let [name] = comps.as_slice() else {
            continue; // the root itself, or below it: not the object
        };
        if !name.ends_with(b".o") || name.starts_with(b".wh.") {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(invalid(
                subject,
                format!("layer entry {shown:?} is not UTF-8"),
            ));
        };
        if wanted.as_deref().is_some_and(|w| w != name) {
            continue;
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous()) {
            return Err(invalid(
                subject,
                format!("layer entry {name:?} is not a regular file ({kind:?})"),
            ));
        }
        objects.push(name.to_string());
        if objects.len() > 1 {
            let why = if wanted.is_some() {
                format!("the layer holds {name:?} more than once")
            } else {
                format!(
                    "the layer holds several .o files ({}) and no {LABEL_FILENAME} label says which",
                    objects.join(", ")
                )
            };
            return Err(invalid(subject, why));
        }
        if name.len() > MAX_FILE_NAME {
            return Err(invalid(
                subject,
                format!("object name {name:?} is too long"),
            ));
        }
        let size = entry.header().size().map_err(tar_error)?;
        if size > MAX_OBJECT_BYTES {
            return Err(OciError::TooLarge {
                reference: subject.to_string(),
                what: "object",
                size,
                limit: MAX_OBJECT_BYTES,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(MAX_OBJECT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(tar_error)?;
        found = Some((name.to_string(), bytes));
    }
    match (found, wanted) {
        (Some(f), _) => Ok(f),
        (None, Some(w)) => Err(invalid(
            subject,
            format!("{LABEL_FILENAME} names {w:?}, which is not at the root of the layer"),
        )),
        (None, None) => Err(invalid(subject, "no .o file at the root of the layer")),
    }
}

/// Checks that `bytes` is an ELF64 eBPF object (`e_machine` == [`EM_BPF`]);
/// with `host_endian`, also that its byte order is the host's (the kernel
/// loads nothing else).
pub(crate) fn check_bpf_object(
    subject: &str,
    bytes: &[u8],
    host_endian: bool,
) -> Result<(), OciError> {
    const EI_CLASS: usize = 4;
    const EI_DATA: usize = 5;
    const E_MACHINE: usize = 18;
    const ELF64_EHDR: usize = 64;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(invalid(subject, "not an ELF file"));
    }
    if bytes.len() < ELF64_EHDR {
        return Err(invalid(subject, "truncated ELF header"));
    }
    if bytes[EI_CLASS] != 2 {
        return Err(invalid(
            subject,
            format!("not a 64-bit ELF (EI_CLASS {})", bytes[EI_CLASS]),
        ));
    }
    let m = [bytes[E_MACHINE], bytes[E_MACHINE + 1]];
    let (machine, little) = match bytes[EI_DATA] {
        1 => (u16::from_le_bytes(m), true),
        2 => (u16::from_be_bytes(m), false),
        other => return Err(invalid(subject, format!("invalid ELF EI_DATA {other}"))),
    };
    if machine != EM_BPF {
        return Err(invalid(
            subject,
            format!("ELF e_machine is {machine}, not EM_BPF ({EM_BPF})"),
        ));
    }
    if host_endian && little != cfg!(target_endian = "little") {
        return Err(invalid(
            subject,
            format!(
                "the object is {}-endian, this host is not",
                if little { "little" } else { "big" }
            ),
        ));
    }
    Ok(())
}

/// Checks a name the object can be stored under in a layer: one path
/// component ending in `.o`.
pub(crate) fn check_file_name(subject: &str, name: &str) -> Result<(), OciError> {
    let ok = name.ends_with(".o")
        && name.len() > 2
        && name.len() <= MAX_FILE_NAME
        && !name.contains(['/', '\0'])
        && !name.starts_with(".wh.");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            subject,
            format!("object file name {name:?} must be one path component ending in .o"),
        ))
    }
}

/// The blobs of an image to push.
pub(crate) struct BuiltImage {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: OciImageManifest,
}

/// Builds the layer (a gzip'd tar with `file_name` at its root; mode 0644,
/// owner 0, mtime 0, so the same input gives the same digests), the image
/// config carrying the labels, and the manifest.
pub(crate) fn build_image(
    subject: &str,
    file_name: &str,
    object: &[u8],
    programs: &BTreeMap<String, String>,
    maps: &BTreeMap<String, String>,
) -> Result<BuiltImage, OciError> {
    let io = |e: std::io::Error| invalid(subject, format!("building the layer: {e}"));
    let mut header = tar::Header::new_ustar();
    header.set_path(file_name).map_err(io)?;
    header.set_size(object.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, object).map_err(io)?;
    let tar = builder.into_inner().map_err(io)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&tar).map_err(io)?;
    let layer = gz.finish().map_err(io)?;

    let to_json = |m: &BTreeMap<String, String>| {
        serde_json::to_string(m).map_err(|e| invalid(subject, format!("labels: {e}")))
    };
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Labels": {
                LABEL_PROGRAMS: to_json(programs)?,
                LABEL_MAPS: to_json(maps)?,
                LABEL_FILENAME: file_name,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let config =
        serde_json::to_vec(&config).map_err(|e| invalid(subject, format!("config: {e}")))?;
    let descriptor = |media_type: &str, bytes: &[u8]| OciDescriptor {
        media_type: media_type.to_string(),
        digest: sha256_digest(bytes),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        artifact_type: None,
    };
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: descriptor(IMAGE_CONFIG_MEDIA_TYPE, &config),
        layers: vec![descriptor(IMAGE_LAYER_GZIP_MEDIA_TYPE, &layer)],
        subject: None,
        artifact_type: None,
        annotations: None,
    };
    Ok(BuiltImage {
        layer,
        config,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header: little-endian, e_machine `machine`.
    pub(crate) fn elf(machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16] = 1; // ET_REL
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            // set_path refuses `..`; write the raw name to test the reader.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_size(data.len() as u64);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn reason(e: OciError) -> String {
        match e {
            OciError::InvalidBytecode { reason, .. } => reason,
            other => panic!("expected InvalidBytecode, got {other:?}"),
        }
    }

    #[test]
    fn elf_checks() {
        assert!(check_bpf_object("o", &elf(EM_BPF), true).is_ok());
        assert!(reason(check_bpf_object("o", &elf(62), true).unwrap_err()).contains("EM_BPF"));
        assert!(reason(check_bpf_object("o", b"\0asm", true).unwrap_err()).contains("not an ELF"));
        assert!(reason(check_bpf_object("o", b"\x7fELF", true).unwrap_err()).contains("truncated"));
        let mut be = elf(0);
        be[5] = 2;
        be[18..20].copy_from_slice(&EM_BPF.to_be_bytes());
        assert!(check_bpf_object("o", &be, false).is_ok());
        if cfg!(target_endian = "little") {
            assert!(reason(check_bpf_object("o", &be, true).unwrap_err()).contains("endian"));
        }
        let mut elf32 = elf(EM_BPF);
        elf32[4] = 1;
        assert!(reason(check_bpf_object("o", &elf32, true).unwrap_err()).contains("64-bit"));
    }

    #[test]
    fn extraction_rules() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let o = elf(EM_BPF);
        let one = tar_gz(&[("./", Directory, b""), ("./a.bpf.o", Regular, &o)]);
        assert_eq!(
            extract_object("s", &one, None).unwrap(),
            ("a.bpf.o".into(), o.clone())
        );
        assert_eq!(
            extract_object("s", &one, Some("a.bpf.o")).unwrap().0,
            "a.bpf.o"
        );
        assert_eq!(
            extract_object("s", &one, Some("./a.bpf.o")).unwrap().0,
            "a.bpf.o"
        );
        assert!(reason(extract_object("s", &one, Some("b.o")).unwrap_err()).contains("b.o"));

        let two = tar_gz(&[("a.o", Regular, &o), ("b.o", Regular, &o)]);
        assert!(reason(extract_object("s", &two, None).unwrap_err()).contains("several"));
        assert_eq!(extract_object("s", &two, Some("b.o")).unwrap().0, "b.o");
        // Below the root and other files do not count.
        let nested = tar_gz(&[
            ("lib/x.o", Regular, &o),
            ("README", Regular, b"hi"),
            ("x.o", Regular, &o),
        ]);
        assert_eq!(extract_object("s", &nested, None).unwrap().0, "x.o");
        assert!(reason(
            extract_object("s", &tar_gz(&[("README", Regular, b"")]), None).unwrap_err()
        )
        .contains("no .o"));

        for evil in ["../x.o", "/x.o", "a/../../x.o"] {
            let t = tar_gz(&[(evil, Regular, &o)]);
            let r = reason(extract_object("s", &t, None).unwrap_err());
            assert!(r.contains(evil), "{evil}: {r}");
        }
        let link = tar_gz(&[("x.o", Symlink, b"")]);
        assert!(reason(extract_object("s", &link, None).unwrap_err()).contains("regular file"));
        assert!(reason(extract_object("s", &o, None).unwrap_err()).contains("gzip"));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(b"not a tar at all, just some bytes").unwrap();
        let junk = gz.finish().unwrap();
        assert!(extract_object("s", &junk, None).is_err());
    }

    #[test]
    fn gzip_bomb_is_cut_off() {
        // A tar entry claiming more than the unpack limit, streamed as zeros.
        let mut h = tar::Header::new_gnu();
        h.set_path("big.bin").unwrap();
        h.set_size(MAX_UNPACKED_BYTES + 4096);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(h.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..=(MAX_UNPACKED_BYTES >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "compresses well: {}", bomb.len());
        match extract_object("s", &bomb, None) {
            Err(OciError::TooLarge { what, .. }) => assert_eq!(what, "uncompressed layer"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn labels_both_forms() {
        let cfg = |labels: Value| {
            serde_json::to_vec(&serde_json::json!({"config": {"Labels": labels}})).unwrap()
        };
        let l = parse_labels(
            "s",
            &cfg(serde_json::json!({
                LABEL_PROGRAMS: r#"{"xsk_redirect":"xdp"}"#,
                LABEL_MAPS: r#"{"xsks_map":"xskmap"}"#,
                "org.other": 3,
            })),
        )
        .unwrap();
        assert_eq!(
            l.programs,
            BTreeMap::from([("xsk_redirect".into(), "xdp".into())])
        );
        assert_eq!(
            l.maps,
            BTreeMap::from([("xsks_map".into(), "xskmap".into())])
        );
        assert_eq!(l.filename, None);

        let v1 = parse_labels(
            "s",
            &cfg(serde_json::json!({
                LABEL_PROGRAM_NAME: "pass",
                LABEL_BPF_FUNCTION_NAME: "xdp_pass",
                LABEL_PROGRAM_TYPE: "xdp",
                LABEL_FILENAME: "pass.bpf.o",
            })),
        )
        .unwrap();
        assert_eq!(
            v1.programs,
            BTreeMap::from([("xdp_pass".into(), "xdp".into())])
        );
        assert!(v1.maps.is_empty());
        assert_eq!(v1.filename.as_deref(), Some("pass.bpf.o"));

        for bad in [
            serde_json::json!({}),
            serde_json::json!({ LABEL_PROGRAMS: "{}" }),
            serde_json::json!({ LABEL_PROGRAMS: "not json" }),
            serde_json::json!({ LABEL_PROGRAMS: r#"{"f":1}"# }),
            serde_json::json!({ LABEL_PROGRAMS: r#"{"f":""}"# }),
            serde_json::json!({ LABEL_PROGRAMS: {"f": "xdp"} }),
            serde_json::json!({ LABEL_PROGRAMS: r#"{"f":"xdp"}"#, LABEL_MAPS: "[]" }),
            serde_json::json!({ LABEL_BPF_FUNCTION_NAME: "f" }),
        ] {
            assert!(parse_labels("s", &cfg(bad.clone())).is_err(), "{bad}");
        }
        assert!(parse_labels("s", b"{}").is_err());
        assert!(parse_labels("s", b"nope").is_err());
    }

    #[test]
    fn built_image_decodes_and_is_reproducible() {
        let o = elf(EM_BPF);
        let programs = BTreeMap::from([("f".to_string(), "xdp".to_string())]);
        let maps = BTreeMap::from([("m".to_string(), "xskmap".to_string())]);
        let a = build_image("s", "f.bpf.o", &o, &programs, &maps).unwrap();
        let b = build_image("s", "f.bpf.o", &o, &programs, &maps).unwrap();
        assert_eq!(a.layer, b.layer);
        assert_eq!(a.config, b.config);
        let img = BytecodeImage::decode("s", Some(&a.config), &a.layer).unwrap();
        assert_eq!(img.file_name, "f.bpf.o");
        assert_eq!(img.object, o);
        assert_eq!(img.programs, programs);
        assert_eq!(img.maps, maps);
        assert_eq!(a.manifest.layers[0].digest, sha256_digest(&a.layer));
        assert_eq!(a.manifest.config.digest, sha256_digest(&a.config));
    }

    #[test]
    fn file_names() {
        for ok in ["a.o", "xsk_redirect.bpf.o"] {
            assert!(check_file_name("s", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".o", "a.c", "d/a.o", ".wh.a.o"] {
            assert!(check_file_name("s", bad).is_err(), "{bad}");
        }
    }
}
