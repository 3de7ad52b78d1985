//! The contract's generated types: the one `bindgen!` of the host. Conversions between them and
//! the host's own types live in [`crate::convert`].

#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
mod generated {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        // Host functions may trap the guest: a limit hit is the guest's fault.
        imports: { default: trappable },
    });
}

pub use generated::billing::reseller::{catalogue, log, types, upstream};
pub use generated::exports::billing::reseller::{orders, pricing};
pub use generated::{Plugin, PluginPre};

/// The WIT package this host is built against.
pub const PACKAGE: &str = "billing:reseller@0.1.0";
/// The package's name, without its version.
pub const PACKAGE_NAME: &str = "billing:reseller";
/// The package's version.
pub const VERSION: &str = "0.1.0";
