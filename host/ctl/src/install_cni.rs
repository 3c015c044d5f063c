//! `afxdpctl install-cni`: copy the afxdp-cni binary into the node's CNI bin
//! dir under each plugin name, atomically (the DaemonSet's init container; the
//! image carries no shell).
//!
//! Each name is written as a hidden temporary file in the target dir, made
//! executable, then renamed over the old one: a container runtime calling the
//! plugin while it is replaced runs either the old binary or the new one,
//! never a half-written file.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Args)]
pub struct InstallCniArgs {
    /// The plugin binary to install.
    #[arg(long, default_value = "/usr/local/bin/afxdp-cni")]
    pub from: PathBuf,
    /// The node's CNI bin dir (as mounted in this container).
    #[arg(long)]
    pub to: PathBuf,
    /// A name to install it as (repeat for several).
    #[arg(long = "name", default_values = ["afxdp-cni", "afxdp"])]
    pub names: Vec<String>,
}

/// Installs `args.from` as each of `args.names` in `args.to`; returns the paths written.
pub fn run(args: &InstallCniArgs) -> io::Result<Vec<PathBuf>> {
    if !args.to.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", args.to.display()),
        ));
    }
    args.names
        .iter()
        .map(|name| install_as(&args.from, &args.to, name))
        .collect()
}

/// Copies `from` to `dir/name` through a temporary file and a rename.
fn install_as(from: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plugin file name"),
        ));
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let copied = fs::copy(from, &tmp)
        .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)))
        .and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = copied {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(
            e.kind(),
            format!("{} -> {}: {e}", from.display(), target.display()),
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(from: &Path, to: &Path, names: &[&str]) -> InstallCniArgs {
        InstallCniArgs {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn installs_every_name_executable_and_replaces_old() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src-bin");
        fs::write(&src, b"new plugin").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(bin.join("afxdp"), b"old").unwrap();

        let written = run(&args(&src, &bin, &["afxdp-cni", "afxdp"])).unwrap();
        assert_eq!(written, vec![bin.join("afxdp-cni"), bin.join("afxdp")]);
        for p in &written {
            assert_eq!(fs::read(p).unwrap(), b"new plugin");
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{}", p.display());
        }
        let names: Vec<_> = fs::read_dir(&bin)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }

    #[test]
    fn refuses_bad_names_and_missing_dirs_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src-bin");
        fs::write(&src, b"x").unwrap();
        for bad in ["", "../x", ".hidden"] {
            let e = run(&args(&src, dir.path(), &[bad])).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let e = run(&args(&src, &dir.path().join("absent"), &["afxdp"])).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let e = run(&args(&dir.path().join("no-src"), dir.path(), &["afxdp"])).unwrap_err();
        assert!(e.to_string().contains("no-src"), "{e}");
        assert!(!dir.path().join(".afxdp.tmp").exists());
        assert!(!dir.path().join("afxdp").exists());
    }
}
