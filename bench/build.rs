//! Compiles the client protocol and the log records from the repository's proto/ with
//! protox (pure Rust), as the ferry crate does, so the generator speaks the same wire.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["../proto/gateway.proto", "../proto/records.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["../proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
