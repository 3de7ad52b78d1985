//! Builds the built-in components from source for `wasm32-wasip2` and tells the host where they
//! are, for it to embed: the protocol (`RESELLER_PLUGIN_WASM`) and the markup pricing policy
//! (`RESELLER_MARKUP_WASM`). Each builds in a cargo run and target directory of its own: the
//! two depend on the guest library with other features, which cargo would unify in one run.
//! The test plugins are built by the `reseller-test-artifacts` dev-dependency, not here.

fn main() {
    let root = guest_build::workspace_root();
    guest_build::rerun_if_changed(
        &root,
        &[
            "plugin",
            "plugins/markup",
            "wit",
            "Cargo.lock",
            "Cargo.toml",
        ],
    );
    guest_build::build(
        &root,
        "guest",
        &[("reseller-plugin", "RESELLER_PLUGIN_WASM")],
    );
    guest_build::build(
        &root,
        "guest-policy",
        &[("reseller-markup", "RESELLER_MARKUP_WASM")],
    );
}
