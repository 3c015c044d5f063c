fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/deviceplugin_v1beta1.proto",
        "proto/podresources_v1.proto",
        "proto/nodeapi_v1.proto",
        "proto/csi_v1.proto",
        "proto/pluginregistration_v1.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // csi_v1.proto imports protobuf's well-known types; their files are kept
    // in proto/google/protobuf (Debian's protoc ships none) and their Rust
    // types come from prost-types.
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    Ok(())
}
