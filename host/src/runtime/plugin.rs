//! One loaded plugin version: compiled once, linked once, instantiated per call.

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::call::{self, Fault, Limits};
use crate::bindings::{self, Plugin, PluginPre, orders, pricing, types};
use crate::capabilities::{self, CallState, Grants};

/// Why a plugin file cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly, or a core module rather than a component.
    #[error("{0}")]
    NotAComponent(String),
    /// It imports something this host does not grant.
    #[error("it imports `{0}`, which this host does not grant to plugins")]
    ForbiddenImport(String),
    /// It does not fit the world this host serves.
    #[error("it does not fit the world {package}: {detail}")]
    Incompatible {
        /// The package the host serves.
        package: &'static str,
        /// What did not fit.
        detail: String,
    },
}

/// The interfaces of our own package a plugin may import, without versions.
const OWN_IMPORTS: &[&str] = &[
    "billing:reseller/types",
    "billing:reseller/catalogue",
    "billing:reseller/log",
    "billing:reseller/upstream",
];

/// A compiled and linked plugin, ready to be instantiated for each call.
pub struct LoadedPlugin {
    name: Arc<str>,
    pre: PluginPre<CallState>,
    imports: Vec<String>,
    exports: Vec<String>,
    limits: Limits,
}

impl LoadedPlugin {
    /// Compiles and links the component in `bytes`; `name` identifies it in logs.
    pub fn load(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Self, LoadError> {
        check_header(bytes)?;
        let component = Component::new(engine, bytes).map_err(|e| {
            LoadError::NotAComponent(format!("it is not a valid component: {}", root(&e)))
        })?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if let Some(forbidden) = imports.iter().find(|name| !granted(name)) {
            return Err(LoadError::ForbiddenImport(forbidden.clone()));
        }
        let mut linker = Linker::new(engine);
        capabilities::add_to_linker(&mut linker).map_err(|e| LoadError::Incompatible {
            package: bindings::PACKAGE,
            detail: root(&e),
        })?;
        let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
            package: bindings::PACKAGE,
            detail: root(&e),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(incompatible)?;
        let pre = PluginPre::new(instance_pre).map_err(incompatible)?;
        Ok(LoadedPlugin {
            name: name.into(),
            pre,
            imports,
            exports,
            limits: Limits::default(),
        })
    }

    /// The plugin's name in logs.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// What the component imports, as named in its type.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// What the component exports, as named in its type.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Answers a price export query in a fresh instance.
    pub fn export_prices(
        &self,
        grants: &Grants,
        query: &pricing::Query,
    ) -> Result<Result<pricing::Document, types::PricingError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin
                .billing_reseller_pricing()
                .call_export_prices(store, query)
        })
    }

    /// Places a paid order upstream through the plugin.
    pub fn place(
        &self,
        grants: &Grants,
        order: &orders::Order,
    ) -> Result<Result<orders::Placed, types::OrderError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin.billing_reseller_orders().call_place(store, order)
        })
    }

    /// Binds a placed module to another licence.
    pub fn rebind(
        &self,
        grants: &Grants,
        service_id: &str,
        licence_id: &str,
    ) -> Result<Result<(), types::OrderError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin
                .billing_reseller_orders()
                .call_rebind(store, service_id, licence_id)
        })
    }

    /// Renews a placed module.
    pub fn renew(
        &self,
        grants: &Grants,
        service_id: &str,
        period: types::Months,
    ) -> Result<Result<(), types::OrderError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin
                .billing_reseller_orders()
                .call_renew(store, service_id, period)
        })
    }

    /// Removes a placed module upstream.
    pub fn remove(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Result<Result<(), types::OrderError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin
                .billing_reseller_orders()
                .call_remove(store, service_id)
        })
    }

    /// Fetches upstream's current costs.
    pub fn upstream_costs(
        &self,
        grants: &Grants,
    ) -> Result<Result<Vec<orders::UpstreamOffer>, types::OrderError>, Fault> {
        self.call(grants, |plugin, store| {
            plugin.billing_reseller_orders().call_upstream_costs(store)
        })
    }

    /// Runs `f` against a fresh instance in a fresh store.
    fn call<R>(
        &self,
        grants: &Grants,
        f: impl FnOnce(&Plugin, &mut wasmtime::Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        call::run(&self.pre, grants, &self.limits, f)
    }
}

fn granted(import: &str) -> bool {
    let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
    OWN_IMPORTS.contains(&unversioned) || capabilities::wasi::GRANTED.contains(&unversioned)
}

/// Tells a component from a core module or another file before the compiler's message does.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    match (bytes.get(..4), bytes.get(4..8)) {
        (Some(MAGIC), Some(CORE_MODULE)) => Err(LoadError::NotAComponent(
            "it is a core wasm module, not a component; build it for wasm32-wasip2".to_owned(),
        )),
        (Some(MAGIC), Some(_)) => Ok(()),
        _ => Err(LoadError::NotAComponent(
            "it is not a WebAssembly file".to_owned(),
        )),
    }
}

/// The innermost cause of an error, without a backtrace.
pub(super) fn root(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(
            matches!(check_header(b"hello"), Err(LoadError::NotAComponent(m)) if m.contains("not a WebAssembly"))
        );
        assert!(
            matches!(check_header(b"\0asm\x01\0\0\0"), Err(LoadError::NotAComponent(m)) if m.contains("core wasm module"))
        );
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn only_granted_interfaces_at_any_version() {
        assert!(granted("wasi:io/streams@0.2.6"));
        assert!(granted("wasi:cli/stderr@0.2.0"));
        assert!(granted("billing:reseller/catalogue@0.1.0"));
        assert!(!granted("wasi:filesystem/types@0.2.6"));
        assert!(!granted("wasi:sockets/tcp@0.2.6"));
        assert!(!granted("wasi:clocks/wall-clock@0.2.6"));
        assert!(!granted("wasi:random/random@0.2.6"));
    }
}
