//! Builds the test plugins from source for `wasm32-wasip2` and tells this crate where they are.
//!
//! A plugin built on the built-in plugin's library (charm) builds apart: in one cargo run cargo
//! would unify the library's features and export both plugins' symbols.

fn main() {
    let root = guest_build::workspace_root();
    guest_build::rerun_if_changed(
        &root,
        &[
            "plugin",
            "plugins",
            "tests/guests",
            "wit",
            "Cargo.lock",
            "Cargo.toml",
        ],
    );
    guest_build::build(
        &root,
        "guest-tests",
        &[
            ("hostile-guest", "RESELLER_HOSTILE_WASM"),
            ("incompatible-guest", "RESELLER_INCOMPATIBLE_WASM"),
            ("newer-minor-guest", "RESELLER_NEWER_MINOR_WASM"),
            ("v0-1-guest", "RESELLER_V0_1_WASM"),
        ],
    );
    guest_build::build(
        &root,
        "guest-charm",
        &[("reseller-charm", "RESELLER_CHARM_WASM")],
    );
}
