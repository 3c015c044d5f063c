//! Compiles `bpf/xsk_redirect.bpf.c` into `$OUT_DIR/xsk_redirect.bpf.o` with clang.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest_dir.join("../../bpf/xsk_redirect.bpf.c");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("xsk_redirect.bpf.o");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]);
    // <linux/types.h> includes <asm/types.h>, which Debian keeps in the
    // multiarch directory of the build host.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = Path::new("/usr/include").join(format!("{arch}-linux-gnu"));
    if multiarch.is_dir() {
        cmd.arg("-I").arg(&multiarch);
    }
    cmd.arg("-c").arg(&src).arg("-o").arg(&out);

    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`{clang}` failed ({status}) compiling {}: see the compiler output above",
            src.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{clang}` not found: clang (>= 11) with the BPF target is needed to build {} \
             (Debian: apt-get install clang libbpf-dev; or set CLANG=/path/to/clang)",
            src.display()
        ),
        Err(e) => panic!("cannot run `{clang}`: {e}"),
    }
}
