//! Compiles the sandbox relay (`relay/main.rs`, std only) into OUT_DIR so the crate can embed it:
//! codemill stays one binary, and every test gets the same relay the service uses.

use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = "relay/main.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "--crate-name", "codemill_relay"])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
        ])
        .arg("-o")
        .arg(out.join("codemill-relay"))
        .arg(source);
    if let (Ok(target), Ok(host)) = (std::env::var("TARGET"), std::env::var("HOST"))
        && target != host
    {
        cmd.args(["--target", &target]);
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("compiling the sandbox relay failed: {status}").into());
    }
    Ok(())
}
