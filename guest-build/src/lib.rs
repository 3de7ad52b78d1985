//! Builds guest components of this workspace for `wasm32-wasip2` from a build script, and tells
//! the calling crate where each one is (an environment variable per guest, for `env!`).
//!
//! Each set of guests gets a target directory of its own under the workspace's `target/`:
//! sharing the outer build's would deadlock on its lock, and `OUT_DIR` differs between build,
//! test and clippy, which would rebuild them cold each time. What the outer (host) build puts
//! in the environment for itself is removed: host link flags break the wasm linker.
//!
//! Build scripts speak to cargo on stdout: that is what the `println!`s here are for.
#![expect(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions on stdout"
)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest package and the environment variable that carries its component's path.
pub type Guest = (&'static str, &'static str);

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

/// The workspace's root, found from the calling crate's manifest directory: the nearest
/// ancestor holding `Cargo.lock`.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the crate sits in the workspace")
        .to_owned()
}

/// Asks cargo to run the build script again when a guest's sources may have changed.
pub fn rerun_if_changed(root: &Path, paths: &[&str]) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}

/// Builds `guests` in one cargo run into `target/<dir>`, so that they share dependencies and
/// build in parallel, and sets each guest's variable to its component's path.
///
/// Panics with the reason when the build fails: a build script has no other way to fail.
pub fn build(root: &Path, dir: &str, guests: &[Guest]) {
    let target_dir = root.join("target").join(dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in guests {
        cmd.args(["--package", package]);
    }
    for var in HOST_ONLY_ENV {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the guests: {e}"));
    if !status.success() {
        panic!(
            "building the guests for wasm32-wasip2 failed ({status}); \
             is the target installed? `rustup target add wasm32-wasip2`"
        );
    }
    for (package, var) in guests {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let wasm = target_dir.join("wasm32-wasip2").join("guest").join(file);
        println!("cargo:rustc-env={var}={}", wasm.display());
    }
}
