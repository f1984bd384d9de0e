//! Compiles `schema/*.proto` with protox (pure Rust, so no system `protoc`)
//! into prost types, and keeps the descriptor set for run-time reflection
//! (JSON rendering in `inspect`, the schema compatibility test).

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("schema");
    println!("cargo:rerun-if-changed={}", schema.display());

    // server.proto imports every other file of the schema.
    let fds = protox::Compiler::new([&schema])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(["server.proto"])?
        .file_descriptor_set();

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor_set.bin"), fds.encode_to_vec())?;

    // Telemetry alone, for the service: reflecting over it needs a pool a
    // fraction of the size of the whole schema's.
    let telemetry = protox::Compiler::new([&schema])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(["telemetry.proto"])?
        .file_descriptor_set();
    std::fs::write(
        out.join("telemetry_descriptor_set.bin"),
        telemetry.encode_to_vec(),
    )?;

    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
