//! The test plugins, built from source for `wasm32-wasip2` by this crate's build script, and
//! handed to the host's tests as bytes and paths. A dev-dependency of the host: building the
//! host itself (`cargo build`, a release) compiles none of them.

/// A plugin that misbehaves on purpose, chosen by its settings.
pub const HOSTILE: &[u8] = include_bytes!(env!("RESELLER_HOSTILE_WASM"));
/// The path of [`HOSTILE`], for the CLI and configurations.
pub const HOSTILE_PATH: &str = env!("RESELLER_HOSTILE_WASM");

/// A plugin built against a later major version of the contract: refused.
pub const INCOMPATIBLE: &[u8] = include_bytes!(env!("RESELLER_INCOMPATIBLE_WASM"));
/// The path of [`INCOMPATIBLE`].
pub const INCOMPATIBLE_PATH: &str = env!("RESELLER_INCOMPATIBLE_WASM");

/// A plugin built against a later, compatible version of the contract: served.
pub const NEWER_MINOR: &[u8] = include_bytes!(env!("RESELLER_NEWER_MINOR_WASM"));

/// A second pricing plugin with other logic (`plugins/charm`).
pub const CHARM_PATH: &str = env!("RESELLER_CHARM_WASM");

/// The example pricing policy in Rust (`examples/policy-rust`): a markup and a price ending.
pub const POLICY_RUST_PATH: &str = env!("RESELLER_POLICY_RUST_WASM");

/// A pricing policy that misbehaves on purpose, chosen by its settings.
pub const HOSTILE_POLICY_PATH: &str = env!("RESELLER_HOSTILE_POLICY_WASM");

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The newer-minor guest builds against a copy of the contract; the copy must stay the
    /// real contract, one version and one additive function later.
    #[test]
    fn the_newer_contract_is_the_real_one_plus_one_function() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read the WIT");
        let real = read("wit/reseller.wit");
        let copy = read("tests/guests/newer-minor/wit/reseller.wit");
        let version = real
            .lines()
            .find_map(|l| l.strip_prefix("package billing:reseller@"))
            .and_then(|v| v.strip_suffix(';'))
            .expect("the package line");
        let mut parts: Vec<u64> = version
            .split('.')
            .map(|p| p.parse().expect("semver"))
            .collect();
        parts[2] += 1;
        let newer = format!("{}.{}.{}", parts[0], parts[1], parts[2]);
        let added = "\n    /// Added in {newer} (an additive change): the plugin's own version, for operators.\n    plugin-version: func() -> string;\n"
            .replace("{newer}", &newer);
        let header = format!(
            "/// A copy of the contract at {newer}, one additive function later than the host's {version}, for the\n/// host's test that it serves semver-compatible plugins.\n///\n"
        );
        let expected = real
            .replace(
                &format!("package billing:reseller@{version};"),
                &format!("package billing:reseller@{newer};"),
            )
            .replacen(
                "    export-prices: func(query: query) -> result<document, pricing-error>;\n",
                &format!(
                    "    export-prices: func(query: query) -> result<document, pricing-error>;\n{added}"
                ),
                1,
            );
        assert_eq!(copy, format!("{header}{expected}"), "the copy has drifted");
    }
}
