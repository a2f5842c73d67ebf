//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler), so
//! the build needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["warp.proto", "broker.proto", "trace.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    // Two passes: warp.proto uses trace messages, which live in this crate's
    // `trace` module rather than where prost's package-relative path would
    // look (`super::trace::v1`). An extern path fixes the references but
    // also stops prost generating the trace package, so that goes first.
    let trace = protox::compile(["trace.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(trace)?;
    let rest = protox::compile(["warp.proto", "broker.proto"], ["."])?;
    tonic_prost_build::configure()
        .extern_path(".warp.trace.v1", "crate::trace")
        .build_server(true)
        .build_client(true)
        .compile_fds(rest)?;
    Ok(())
}
