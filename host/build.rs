//! Builds the guest components from source for `wasm32-wasip2` and tells the host where they are.
//!
//! The guests get their own target directory (`target/guest`): sharing the outer build's would
//! deadlock on its lock, and `OUT_DIR` differs between build, test and clippy, which would
//! rebuild them cold each time.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest package and the environment variable that carries its component's path.
type Guest = (&'static str, &'static str);

/// The guests, by target directory. Those in one directory build in one cargo run. A plugin
/// built on the built-in plugin's library builds apart: in one run cargo would unify the
/// library's features and export both plugins' symbols, and its own build would overwrite
/// the built-in plugin's component with an empty one.
const BUILDS: &[(&str, &[Guest])] = &[
    (
        "guest",
        &[
            ("reseller-plugin", "RESELLER_PLUGIN_WASM"),
            ("hostile-guest", "RESELLER_HOSTILE_WASM"),
            ("incompatible-guest", "RESELLER_INCOMPATIBLE_WASM"),
            ("newer-minor-guest", "RESELLER_NEWER_MINOR_WASM"),
        ],
    ),
    ("guest-charm", &[("reseller-charm", "RESELLER_CHARM_WASM")]),
];

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

    for dir in [
        "plugin",
        "plugins",
        "tests/guests",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    for (dir, guests) in BUILDS {
        let target_dir = root.join("target").join(dir);
        build(&root, &target_dir, guests);
        for (package, var) in *guests {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let wasm = target_dir.join("wasm32-wasip2").join("guest").join(file);
            println!("cargo:rustc-env={var}={}", wasm.display());
        }
    }
}

/// Builds `guests` in one cargo run, so that they share dependencies and build in parallel.
fn build(root: &Path, target_dir: &Path, guests: &[Guest]) {
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
        .arg(target_dir);
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
}
