//! The contract's generated types: every `bindgen!` of the host. Conversions between them and
//! the host's own types live in [`crate::convert`].
//!
//! One set of types serves every world of the current version (`billing:reseller@0.2.0`): the
//! `plugin` world's bindings are the base, and the other worlds' bindings map the interfaces
//! they share onto it (`with`), so that one capability implementation serves them all. Plugins
//! built against 0.1.0 are served through [`v0_1`], whose imports are the current ones (the
//! records they use did not change) and whose exports are 0.1's own.

#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
mod generated {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        // Host functions may trap the guest: a limit hit is the guest's fault.
        imports: { default: trappable },
        // The host compares what a policy is asked, to keep its answers.
        additional_derives: [PartialEq],
    });
}

#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
mod protocol {
    wasmtime::component::bindgen!({
        world: "protocol",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "billing:reseller/types": super::generated::billing::reseller::types,
            "billing:reseller/catalogue": super::generated::billing::reseller::catalogue,
            "billing:reseller/calendar": super::generated::billing::reseller::calendar,
            "billing:reseller/log": super::generated::billing::reseller::log,
            "billing:reseller/upstream": super::generated::billing::reseller::upstream,
            "billing:reseller/pricing": super::generated::exports::billing::reseller::pricing,
            "billing:reseller/orders": super::generated::exports::billing::reseller::orders,
        },
    });
}

#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
mod pricing_policy {
    wasmtime::component::bindgen!({
        world: "pricing-policy",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "billing:reseller/types": super::generated::billing::reseller::types,
            "billing:reseller/log": super::generated::billing::reseller::log,
        },
    });
}

/// Plugins built against `billing:reseller@0.1.0` (the frozen `wit/v0.1.0`): their imports are
/// the current version's (linked under 0.1.0's names), their exports 0.1's own.
#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit/v0.1.0",
        imports: { default: trappable },
        with: {
            "billing:reseller/types@0.1.0": super::generated::billing::reseller::types,
            "billing:reseller/catalogue@0.1.0": super::generated::billing::reseller::catalogue,
            "billing:reseller/log@0.1.0": super::generated::billing::reseller::log,
            "billing:reseller/upstream@0.1.0": super::generated::billing::reseller::upstream,
        },
    });

    pub use exports::billing::reseller::{orders, pricing};

    /// The version these bindings serve.
    pub const VERSION: &str = "0.1.0";
}

pub use generated::billing::reseller::{calendar, catalogue, log, types, upstream};
pub use generated::exports::billing::reseller::{orders, pricing};
pub use generated::{Plugin, PluginPre};
/// The `policy` interface as a pricing-policy component exports it.
pub use pricing_policy::exports::billing::reseller::policy as policy_export;
pub use pricing_policy::{PricingPolicy, PricingPolicyPre};
/// The `policy` interface as a protocol component imports it: the host's side of the join.
pub use protocol::billing::reseller::policy;

/// The WIT package this host is built against.
pub const PACKAGE: &str = "billing:reseller@0.2.0";
/// The package's name, without its version.
pub const PACKAGE_NAME: &str = "billing:reseller";
/// The package's version.
pub const VERSION: &str = "0.2.0";
