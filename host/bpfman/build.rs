//! Compiles bpfman's `bpfman.v1` API (client side only).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/bpfman_v1.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[proto], &["proto"])?;
    Ok(())
}
