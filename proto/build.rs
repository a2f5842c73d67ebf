//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler), so
//! the build needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["warp.proto", "broker.proto", "trace.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
