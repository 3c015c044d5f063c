//! Finding the project's binaries (afxdp-cni, afxdp-pod-app) next to the running one.

use std::path::PathBuf;

/// Locate `name`: `$AFXDP_BIN_DIR`, then the running executable's directory and
/// its parent (cargo puts test binaries in `target/<profile>/deps`).
pub fn find(name: &str) -> Result<PathBuf, crate::LabError> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("AFXDP_BIN_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(p) = d.parent() {
                dirs.push(p.to_path_buf());
            }
        }
    }
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| crate::LabError::MissingBinary {
            name: name.to_string(),
            searched: dirs,
        })
}
