//! Builds the test plugins from source for `wasm32-wasip2` and tells this crate where they are.
//!
//! The policies built on the built-in plugin's library (charm, the Rust example policy, the
//! hostile policy) build apart: in one cargo run cargo would unify the library's features and
//! export the protocol's symbols with theirs.

fn main() {
    let root = guest_build::workspace_root();
    guest_build::rerun_if_changed(
        &root,
        &[
            "plugin",
            "plugins",
            "tests/guests",
            "examples/policy-rust",
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
        &[
            ("reseller-charm", "RESELLER_CHARM_WASM"),
            ("policy-rust", "RESELLER_POLICY_RUST_WASM"),
            ("hostile-policy-guest", "RESELLER_HOSTILE_POLICY_WASM"),
        ],
    );
}
