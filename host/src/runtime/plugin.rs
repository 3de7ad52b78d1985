//! One loaded plugin version: compiled once (or taken from the cache), linked once,
//! instantiated in a fresh store for every call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::Runtime;
use super::cache::CacheOutcome;
use super::call::{self, CallSlots, Fault, Usage, root};
use crate::bindings::{self, PACKAGE_NAME, Plugin, PluginPre, orders, pricing, types};
use crate::capabilities::{self, CallState, Grants, Hook};
use crate::limits::{Limit, LimitHit, Limits};

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
    /// It was built against a version of the contract this host does not serve.
    #[error(
        "it was built against {PACKAGE_NAME}@{plugin}, but this host serves {PACKAGE_NAME}@{host} (and compatible versions)"
    )]
    IncompatibleVersion {
        /// The version the plugin was built against.
        plugin: String,
        /// The version this host serves.
        host: &'static str,
    },
    /// The engine could not be set up.
    #[error("{0}")]
    Engine(String),
}

/// The interfaces of our own package a plugin may import, without versions.
const OWN_IMPORTS: &[&str] = &[
    "billing:reseller/types",
    "billing:reseller/catalogue",
    "billing:reseller/log",
    "billing:reseller/upstream",
];

/// Counters of one loaded plugin, for monitoring.
#[derive(Debug, Default)]
pub struct PluginStats {
    calls: AtomicU64,
    faults: AtomicU64,
    limit_hits: [AtomicU64; Limit::ALL.len()],
}

impl PluginStats {
    /// Calls made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that ended in a fault (limit hits included).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Calls that hit `limit`.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        Limit::ALL
            .iter()
            .position(|l| *l == limit)
            .map_or(0, |i| self.limit_hits[i].load(Ordering::Relaxed))
    }
}

/// A compiled and linked plugin, ready to be instantiated for each call.
pub struct LoadedPlugin {
    name: Arc<str>,
    sha256: String,
    pre: PluginPre<CallState>,
    imports: Vec<String>,
    exports: Vec<String>,
    limits: Limits,
    cache: Option<CacheOutcome>,
    stats: PluginStats,
    slots: CallSlots,
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// What a hook call returned, or its fault, and what it used.
pub type Called<R> = (Result<R, Fault>, Usage);

impl LoadedPlugin {
    /// Compiles (or takes from the runtime's cache) and links the component in `bytes`, to run
    /// within `limits`; `name` identifies it in logs.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Self, LoadError> {
        check_header(bytes)?;
        let sha256 = sha256_hex(bytes);
        let engine = runtime
            .engine(&limits)
            .map_err(|e| LoadError::Engine(root(&e)))?;
        let compile = || Component::new(&engine, bytes);
        let (component, cache) = match runtime.cache() {
            Some(cache) => cache
                .load_or_compile(&engine, &sha256, compile)
                .map(|(c, o)| (c, Some(o))),
            None => compile().map(|c| (c, None)),
        }
        .map_err(|e| {
            LoadError::NotAComponent(format!("it is not a valid component: {}", root(&e)))
        })?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports: Vec<String> = ty
            .exports(&engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        if let Some(version) = imports
            .iter()
            .chain(&exports)
            .find_map(|name| contract_version(name))
            && !compatible(version, bindings::VERSION)
        {
            return Err(LoadError::IncompatibleVersion {
                plugin: version.to_owned(),
                host: bindings::VERSION,
            });
        }
        if let Some(forbidden) = imports.iter().find(|name| !granted(name)) {
            return Err(LoadError::ForbiddenImport(forbidden.clone()));
        }
        let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
            package: bindings::PACKAGE,
            detail: root(&e),
        };
        let mut linker = Linker::new(&engine);
        capabilities::add_to_linker(&mut linker).map_err(incompatible)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(incompatible)?;
        let pre = PluginPre::new(instance_pre).map_err(incompatible)?;
        Ok(LoadedPlugin {
            name: name.into(),
            sha256,
            pre,
            imports,
            exports,
            slots: CallSlots::new(limits.concurrent_calls),
            limits,
            cache,
            stats: PluginStats::default(),
        })
    }

    /// The plugin's name in logs.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The SHA-256 of the component file, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// What the component imports, as named in its type.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// What the component exports, as named in its type.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The limits every call runs within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the compiled-code cache did when this plugin loaded (`None`: no cache).
    pub fn cache_outcome(&self) -> Option<&CacheOutcome> {
        self.cache.as_ref()
    }

    /// Counters since the plugin loaded.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Answers a price export query.
    pub fn export_prices(
        &self,
        grants: &Grants,
        query: &pricing::Query,
    ) -> Called<Result<pricing::Document, types::PricingError>> {
        let answer_bytes = self.limits.answer_bytes;
        self.call(grants, Hook::Pricing, |p, s| {
            let answer = p.billing_reseller_pricing().call_export_prices(s, query)?;
            if let Ok(doc) = &answer
                && doc.body.len() > answer_bytes
            {
                let asked = u64::try_from(doc.body.len()).ok();
                return Err(wasmtime::Error::new(LimitHit::new(
                    Limit::AnswerBytes,
                    &self.limits,
                    asked,
                )));
            }
            Ok(answer)
        })
    }

    /// Places a paid order upstream.
    pub fn place(
        &self,
        grants: &Grants,
        order: &orders::Order,
    ) -> Called<Result<orders::Placed, types::OrderError>> {
        self.call(grants, Hook::Orders, |p, s| {
            p.billing_reseller_orders().call_place(s, order)
        })
    }

    /// Binds a placed module to another licence.
    pub fn rebind(
        &self,
        grants: &Grants,
        service_id: &str,
        licence_id: &str,
    ) -> Called<Result<(), types::OrderError>> {
        self.call(grants, Hook::Orders, |p, s| {
            p.billing_reseller_orders()
                .call_rebind(s, service_id, licence_id)
        })
    }

    /// Renews a placed module.
    pub fn renew(
        &self,
        grants: &Grants,
        service_id: &str,
        period: types::Months,
    ) -> Called<Result<(), types::OrderError>> {
        self.call(grants, Hook::Orders, |p, s| {
            p.billing_reseller_orders()
                .call_renew(s, service_id, period)
        })
    }

    /// Removes a placed module upstream.
    pub fn remove(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Called<Result<(), types::OrderError>> {
        self.call(grants, Hook::Orders, |p, s| {
            p.billing_reseller_orders().call_remove(s, service_id)
        })
    }

    /// Fetches upstream's current costs.
    pub fn upstream_costs(
        &self,
        grants: &Grants,
    ) -> Called<Result<Vec<orders::UpstreamOffer>, types::OrderError>> {
        self.call(grants, Hook::Orders, |p, s| {
            p.billing_reseller_orders().call_upstream_costs(s)
        })
    }

    /// Instantiates the plugin in a fresh store and drops it, calling nothing: the fixed cost
    /// every call pays. For health checks and benchmarks.
    pub fn instantiate_only(&self, grants: &Grants) -> Called<()> {
        let _slot = self.slots.acquire();
        call::run(
            &self.pre,
            grants,
            &self.limits,
            Hook::Pricing,
            |_, _| Ok(()),
        )
    }

    /// Runs `f` against a fresh instance in a fresh store, and counts the outcome.
    fn call<R>(
        &self,
        grants: &Grants,
        hook: Hook,
        f: impl FnOnce(&Plugin, &mut wasmtime::Store<CallState>) -> wasmtime::Result<R>,
    ) -> (Result<R, Fault>, Usage) {
        let slot = self.slots.acquire();
        let (result, usage) = call::run(&self.pre, grants, &self.limits, hook, f);
        drop(slot);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(fault) = &result {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            match fault {
                Fault::Limit(hit) => {
                    if let Some(i) = Limit::ALL.iter().position(|l| *l == hit.limit) {
                        self.stats.limit_hits[i].fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(plugin = %self.name, limit = hit.limit.key(), "{hit}");
                }
                Fault::Guest { reason, stderr } => {
                    tracing::warn!(plugin = %self.name, stderr = %stderr.escape_debug(), "the plugin failed: {reason}");
                }
                Fault::Host(e) => {
                    tracing::error!(plugin = %self.name, "the host could not run the plugin: {e}")
                }
            }
        }
        (result, usage)
    }
}

/// The version of our package an import or export names, e.g. `0.1.0` in
/// `billing:reseller/pricing@0.1.0`.
fn contract_version(name: &str) -> Option<&str> {
    let (interface, version) = name.split_once('@')?;
    interface.strip_prefix(PACKAGE_NAME)?.strip_prefix('/')?;
    Some(version)
}

/// Semver compatibility as Cargo has it: the same major version, and for 0.x the same minor.
fn compatible(plugin: &str, host: &str) -> bool {
    match (semver::Version::parse(plugin), semver::Version::parse(host)) {
        (Ok(p), Ok(h)) if p.major == 0 && h.major == 0 => p.minor == h.minor,
        (Ok(p), Ok(h)) => p.major == h.major,
        _ => false,
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

    #[test]
    fn contract_versions_follow_semver() {
        assert_eq!(
            contract_version("billing:reseller/pricing@0.1.3"),
            Some("0.1.3")
        );
        assert_eq!(contract_version("wasi:io/streams@0.2.6"), None);
        assert_eq!(contract_version("billing:resellerx/pricing@9.0.0"), None);
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("garbage", "0.1.0"));
    }

    #[test]
    fn digests_are_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
