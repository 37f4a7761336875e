//! Builds the bundled connectors (and the test-only hostile one) from `connectors/` for
//! wasm32-wasip2, so that the `sluice` binary embeds real components compiled from source
//! and needs nothing but cargo.
//!
//! The guests have a cargo workspace of their own and are built by a nested cargo with its
//! own target directory, beside this build's, so the two never contend for one lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages and the artifact each produces.
const GUESTS: &[&str] = &["salesforce", "rest", "test_hostile"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let connectors = root.join("connectors");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    // Paths relative to this package's root: cargo keeps them as they are, so a target
    // directory shared by two checkouts checks each checkout's own files (absolute paths
    // would keep pointing at whichever checkout built last).
    for watched in ["wit", "connectors/Cargo.toml", "connectors/Cargo.lock"] {
        println!("cargo:rerun-if-changed=../{watched}");
    }
    for entry in std::fs::read_dir(&connectors).expect("reading connectors/") {
        let path = entry.unwrap().path();
        if path.join("Cargo.toml").exists() {
            let name = path.file_name().unwrap().to_string_lossy();
            println!("cargo:rerun-if-changed=../connectors/{name}");
        }
    }

    ensure_wasm_target();
    let target_dir = guest_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&connectors)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (flags for the host target, its target dir, its
    // features) must not leak into the guests' build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE"
            || [
                "RUSTFLAGS",
                "RUSTC",
                "RUSTC_WRAPPER",
                "RUSTC_WORKSPACE_WRAPPER",
                "RUSTDOC",
            ]
            .contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().expect("running cargo for the connectors");
    if !status.success() {
        panic!(
            "building the connectors in {} failed (see above). Is the wasm32-wasip2 target \
             installed? `rustup target add wasm32-wasip2`",
            connectors.display()
        );
    }

    let built = target_dir.join("wasm32-wasip2").join("release");
    for guest in GUESTS {
        let from = built.join(format!("{guest}.wasm"));
        let to = out_dir.join(format!("{guest}.wasm"));
        std::fs::copy(&from, &to)
            .unwrap_or_else(|err| panic!("copying {} to {}: {err}", from.display(), to.display()));
    }
}

/// `<target>/wasm-guests`, found from OUT_DIR (`<target>/<profile>/build/<pkg>-<hash>/out`),
/// so that every profile and every clean of this package's build reuses one guest build.
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(|target| target.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"))
}

/// Installs the wasm32-wasip2 standard library when rustup manages this toolchain and it
/// is missing, so that a fresh checkout builds with nothing but `cargo`.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return;
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").exists() {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", "wasm32-wasip2"]);
    if let Some(toolchain) = toolchain {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => println!(
            "cargo:warning=could not install wasm32-wasip2; run `rustup target add wasm32-wasip2`"
        ),
    }
}
