//! Builds the guest components from source for `wasm32-wasip2` and tells the host where they are.
//!
//! The guests get their own target directory (`target/guest`): sharing the outer build's would
//! deadlock on its lock, and `OUT_DIR` differs between build, test and clippy, which would
//! rebuild them cold each time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Guest packages to build, and the environment variable that carries each one's path.
const GUESTS: &[(&str, &str)] = &[("reseller-plugin", "RESELLER_PLUGIN_WASM")];

/// What the outer (host) build puts in the environment that must not reach the wasm build.
const HOST_ONLY_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("the host crate sits in the workspace")
        .to_owned();
    let target_dir = root.join("target").join("guest");

    for dir in [
        "plugin/src",
        "plugin/Cargo.toml",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    for (package, var) in GUESTS {
        let wasm = build(&root, &target_dir, package);
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}

fn build(root: &Path, target_dir: &Path, package: &str) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--locked", "--package", package])
        .args(["--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(target_dir);
    for var in HOST_ONLY_ENV {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for {package}: {e}"));
    if !status.success() {
        panic!(
            "building the guest {package} for wasm32-wasip2 failed ({status}); \
             is the target installed? `rustup target add wasm32-wasip2`"
        );
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    target_dir.join("wasm32-wasip2").join("guest").join(file)
}
