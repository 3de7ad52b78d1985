//! Builds the built-in plugin component from source for `wasm32-wasip2` and tells the host
//! where it is (`RESELLER_PLUGIN_WASM`, embedded by the host). The test plugins are built by
//! the `reseller-test-artifacts` dev-dependency, not here.

fn main() {
    let root = guest_build::workspace_root();
    guest_build::rerun_if_changed(&root, &["plugin", "wit", "Cargo.lock", "Cargo.toml"]);
    guest_build::build(
        &root,
        "guest",
        &[("reseller-plugin", "RESELLER_PLUGIN_WASM")],
    );
}
