//! One loaded plugin version: compiled once (or taken from the cache), linked once,
//! instantiated in a fresh store for every call.
//!
//! A [`LoadedPlugin`] is a whole plugin or a protocol component (which gets its prices from the
//! pricing policy the host joins to it, see [`crate::capabilities::policy`]), built against the
//! current contract or against 0.1.0; a [`LoadedPolicy`] is a pricing policy. Both run on one
//! [`Harness`]: the engine, the linked component, the limits, the counters and the call slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::Runtime;
use super::cache::CacheOutcome;
use super::call::{self, CallSlots, Fault, Usage, root};
use super::component::{self, Contract, Inspected, LoadError, role_name};
use crate::bindings::{self, PluginPre, PricingPolicyPre, orders, pricing, types, v0_1};
use crate::capabilities::{self, CallState, Grants, Hook, Role};
use crate::convert::v0_1 as old;
use crate::limits::{Limit, LimitHit, Limits};

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

/// The SHA-256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// What a hook call returned, or its fault, and what it used.
pub type Called<R> = (Result<R, Fault>, Usage);

/// A hook of the current contract that a plugin built against 0.1.0 does not have.
pub const NOT_IN_0_1: &str =
    "the plugin is built against billing:reseller@0.1.0, which has no such hook";

/// What every loaded component has: compiled and linked once, run in a fresh store per call
/// within its limits, with its counters.
pub struct Harness {
    name: Arc<str>,
    sha256: String,
    inspected: Inspected,
    limits: Limits,
    cache: Option<CacheOutcome>,
    stats: PluginStats,
    slots: CallSlots,
    engine: Engine,
}

impl Harness {
    /// Inspects, compiles (or takes from the cache) and links the component in `bytes`, to run
    /// within `limits`; `name` identifies it in logs. Returns the harness and the component's
    /// instance ready to instantiate.
    fn load(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<(Harness, InstancePre<CallState>), LoadError> {
        let inspected = component::inspect(bytes, &limits)?;
        let sha256 = sha256_hex(bytes);
        let engine = runtime
            .engine(&limits)
            .map_err(|e| LoadError::Engine(root(&e)))?;
        let (component, cache) = component::compile(runtime, &engine, &sha256, bytes)?;
        let pre = link(&engine, &component, &inspected)?;
        Ok((
            Harness {
                name: name.into(),
                sha256,
                slots: CallSlots::new(limits.concurrent_calls),
                inspected,
                limits,
                cache,
                stats: PluginStats::default(),
                engine,
            },
            pre,
        ))
    }

    /// The component's name in logs.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The SHA-256 of the component file, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// What the component imports, as named in its type.
    pub fn imports(&self) -> &[String] {
        &self.inspected.imports
    }

    /// What the component exports, as named in its type.
    pub fn exports(&self) -> &[String] {
        &self.inspected.exports
    }

    /// What the component is to the host.
    pub fn role(&self) -> Role {
        self.inspected.role
    }

    /// The contract version the component is served as (`0.2.0`, `0.1.0`).
    pub fn contract_version(&self) -> &'static str {
        self.inspected.contract.version()
    }

    /// The core instances the component creates.
    pub fn core_instances(&self) -> u32 {
        self.inspected.core_instances
    }

    /// The limits every call runs within.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the compiled-code cache did when this component loaded (`None`: no cache).
    pub fn cache_outcome(&self) -> Option<&CacheOutcome> {
        self.cache.as_ref()
    }

    /// Counters since the component loaded.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Runs `f` (which instantiates and calls) in a fresh store, and counts the outcome.
    fn call<R>(
        &self,
        grants: &Grants,
        hook: Hook,
        f: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Called<R> {
        let slot = self.slots.acquire();
        let (result, usage) = call::run(&self.engine, grants, &self.limits, hook, f);
        drop(slot);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(fault) = &result {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            if let Some(hit) = fault.limit_hit()
                && let Some(i) = Limit::ALL.iter().position(|l| *l == hit.limit)
                && matches!(fault, Fault::Limit(_))
            {
                self.stats.limit_hits[i].fetch_add(1, Ordering::Relaxed);
            }
            match fault {
                Fault::Host(_) => tracing::error!(plugin = %self.name, "{fault}"),
                _ => tracing::warn!(plugin = %self.name, "{fault}"),
            }
        }
        (result, usage)
    }
}

/// Links `component` with what its role may import, and nothing else.
fn link(
    engine: &Engine,
    component: &Component,
    inspected: &Inspected,
) -> Result<InstancePre<CallState>, LoadError> {
    let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
        package: bindings::PACKAGE,
        detail: root(&e),
    };
    let mut linker = Linker::new(engine);
    capabilities::add_to_linker(&mut linker, inspected.role, inspected.contract.version())
        .map_err(incompatible)?;
    capabilities::wasi::stub_http(&mut linker, engine, component).map_err(incompatible)?;
    linker.instantiate_pre(component).map_err(incompatible)
}

/// How a plugin is instantiated, by the contract it was built against.
enum Pre {
    Current(PluginPre<CallState>),
    V0_1(v0_1::PluginPre<CallState>),
}

/// A whole plugin or a protocol component, ready to be instantiated for each call.
pub struct LoadedPlugin {
    harness: Harness,
    pre: Pre,
}

impl std::ops::Deref for LoadedPlugin {
    type Target = Harness;

    fn deref(&self) -> &Harness {
        &self.harness
    }
}

impl LoadedPlugin {
    /// Loads a whole plugin or a protocol component from `bytes`, to run within `limits`;
    /// `name` identifies it in logs. A pricing policy is refused: it is configured as one.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let (harness, instance_pre) = Harness::load(runtime, name, bytes, limits)?;
        let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
            package: bindings::PACKAGE,
            detail: root(&e),
        };
        let pre = match (harness.role(), harness.inspected.contract) {
            (Role::Policy, _) => {
                return Err(LoadError::WrongRole(
                    "it is a pricing policy, not a plugin: configure it as [plugin.policy] path"
                        .to_owned(),
                ));
            }
            (_, Contract::V0_2) => {
                Pre::Current(PluginPre::new(instance_pre).map_err(incompatible)?)
            }
            (_, Contract::V0_1) => {
                Pre::V0_1(v0_1::PluginPre::new(instance_pre).map_err(incompatible)?)
            }
        };
        Ok(LoadedPlugin { harness, pre })
    }

    /// Answers a price export query.
    pub fn export_prices(
        &self,
        grants: &Grants,
        query: &pricing::Query,
    ) -> Called<Result<pricing::Document, types::PricingError>> {
        let answer_bytes = self.limits.answer_bytes;
        let limits = &self.limits;
        let too_big = |doc: &pricing::Document| {
            (doc.body.len() > answer_bytes).then(|| {
                let asked = u64::try_from(doc.body.len()).ok();
                wasmtime::Error::new(LimitHit::new(Limit::AnswerBytes, limits, asked))
            })
        };
        self.harness.call(grants, Hook::Pricing, |s| {
            let answer = match &self.pre {
                Pre::Current(pre) => {
                    let p = pre.instantiate(&mut *s)?;
                    p.billing_reseller_pricing()
                        .call_export_prices(&mut *s, query)?
                }
                Pre::V0_1(pre) => {
                    let p = pre.instantiate(&mut *s)?;
                    p.billing_reseller_pricing()
                        .call_export_prices(&mut *s, &old::query(query))?
                        .map(old::document)
                }
            };
            match answer.as_ref().ok().and_then(too_big) {
                Some(hit) => Err(hit),
                None => Ok(answer),
            }
        })
    }

    /// Places a paid order upstream.
    pub fn place(
        &self,
        grants: &Grants,
        order: &orders::Order,
    ) -> Called<Result<orders::Placed, types::OrderError>> {
        self.harness
            .call(grants, Hook::Orders, |s| match &self.pre {
                Pre::Current(pre) => {
                    let p = pre.instantiate(&mut *s)?;
                    p.billing_reseller_orders().call_place(&mut *s, order)
                }
                Pre::V0_1(pre) => {
                    let p = pre.instantiate(&mut *s)?;
                    Ok(p.billing_reseller_orders()
                        .call_place(&mut *s, &old::order(order))?
                        .map(old::placed))
                }
            })
    }

    /// Binds a placed module to another licence.
    pub fn rebind(
        &self,
        grants: &Grants,
        service_id: &str,
        licence_id: &str,
    ) -> Called<Result<(), types::OrderError>> {
        self.harness
            .call(grants, Hook::Orders, |s| match &self.pre {
                Pre::Current(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_rebind(&mut *s, service_id, licence_id),
                Pre::V0_1(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_rebind(&mut *s, service_id, licence_id),
            })
    }

    /// Renews a placed module.
    pub fn renew(
        &self,
        grants: &Grants,
        service_id: &str,
        period: types::Months,
    ) -> Called<Result<orders::Renewed, types::OrderError>> {
        self.harness
            .call(grants, Hook::Orders, |s| match &self.pre {
                Pre::Current(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_renew(&mut *s, service_id, period),
                Pre::V0_1(pre) => Ok(pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_renew(&mut *s, service_id, period)?
                    .map(|()| orders::Renewed { expires: None })),
            })
    }

    /// Removes a placed module upstream.
    pub fn remove(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Called<Result<(), types::OrderError>> {
        self.harness
            .call(grants, Hook::Orders, |s| match &self.pre {
                Pre::Current(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_remove(&mut *s, service_id),
                Pre::V0_1(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_remove(&mut *s, service_id),
            })
    }

    /// Fetches upstream's current prices.
    pub fn upstream_costs(
        &self,
        grants: &Grants,
    ) -> Called<Result<Vec<orders::UpstreamOffer>, types::OrderError>> {
        self.harness
            .call(grants, Hook::Orders, |s| match &self.pre {
                Pre::Current(pre) => pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_upstream_costs(&mut *s),
                Pre::V0_1(pre) => Ok(pre
                    .instantiate(&mut *s)?
                    .billing_reseller_orders()
                    .call_upstream_costs(&mut *s)?
                    .map(|offers| offers.into_iter().map(old::upstream_offer).collect())),
            })
    }

    /// Whether the plugin has the hooks that came with 0.2 (quote, suspend, resume, service,
    /// services, balance): a plugin built against 0.1.0 does not.
    pub fn has_lifecycle_hooks(&self) -> bool {
        matches!(self.pre, Pre::Current(_))
    }

    /// A hook of the current contract only; `None` for a plugin built against 0.1.0.
    fn current<R>(
        &self,
        grants: &Grants,
        f: impl FnOnce(&bindings::Plugin, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Option<Called<R>> {
        let Pre::Current(pre) = &self.pre else {
            return None;
        };
        Some(self.harness.call(grants, Hook::Orders, |s| {
            let p = pre.instantiate(&mut *s)?;
            f(&p, s)
        }))
    }

    /// What renewing a placed module would cost and give, without doing it.
    pub fn quote_renewal(
        &self,
        grants: &Grants,
        service_id: &str,
        period: types::Months,
    ) -> Option<Called<Result<orders::RenewalQuote, types::OrderError>>> {
        self.current(grants, |p, s| {
            p.billing_reseller_orders()
                .call_quote_renewal(s, service_id, period)
        })
    }

    /// Suspends a placed module.
    pub fn suspend(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Option<Called<Result<(), types::OrderError>>> {
        self.current(grants, |p, s| {
            p.billing_reseller_orders().call_suspend(s, service_id)
        })
    }

    /// Resumes a suspended module.
    pub fn resume(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Option<Called<Result<(), types::OrderError>>> {
        self.current(grants, |p, s| {
            p.billing_reseller_orders().call_resume(s, service_id)
        })
    }

    /// One module service upstream, read.
    pub fn service(
        &self,
        grants: &Grants,
        service_id: &str,
    ) -> Option<Called<Result<orders::UpstreamService, types::OrderError>>> {
        self.current(grants, |p, s| {
            p.billing_reseller_orders().call_service(s, service_id)
        })
    }

    /// Every module service of the partner's account upstream, read.
    pub fn services(
        &self,
        grants: &Grants,
    ) -> Option<Called<Result<Vec<orders::UpstreamService>, types::OrderError>>> {
        self.current(grants, |p, s| p.billing_reseller_orders().call_services(s))
    }

    /// The partner's upstream balance, read.
    pub fn balance(
        &self,
        grants: &Grants,
    ) -> Option<Called<Result<types::Money, types::OrderError>>> {
        self.current(grants, |p, s| p.billing_reseller_orders().call_balance(s))
    }

    /// Instantiates the plugin in a fresh store and drops it, calling nothing: the fixed cost
    /// every call pays. For health checks and benchmarks.
    pub fn instantiate_only(&self, grants: &Grants) -> Called<()> {
        self.harness
            .call(grants, Hook::Pricing, |s| match &self.pre {
                Pre::Current(pre) => pre.instantiate(s).map(drop),
                Pre::V0_1(pre) => pre.instantiate(s).map(drop),
            })
    }
}

/// A pricing policy, ready to be instantiated for each call.
pub struct LoadedPolicy {
    harness: Harness,
    pre: PricingPolicyPre<CallState>,
    grants: Grants,
}

impl std::ops::Deref for LoadedPolicy {
    type Target = Harness;

    fn deref(&self) -> &Harness {
        &self.harness
    }
}

impl LoadedPolicy {
    /// Loads a pricing policy from `bytes`, to run within `limits`; `name` identifies it in
    /// logs. Anything else is refused.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Self, LoadError> {
        let (harness, instance_pre) = Harness::load(runtime, name, bytes, limits)?;
        if harness.role() != Role::Policy {
            return Err(LoadError::WrongRole(format!(
                "it is a {}, not a pricing policy",
                role_name(harness.role())
            )));
        }
        let pre = PricingPolicyPre::new(instance_pre).map_err(|e| LoadError::Incompatible {
            package: bindings::PACKAGE,
            detail: root(&e),
        })?;
        let grants = Grants::for_policy(harness.name().clone());
        Ok(LoadedPolicy {
            harness,
            pre,
            grants,
        })
    }

    /// Prices `offers` with `settings` for `today`.
    pub fn price(
        &self,
        offers: &[types::Offer],
        settings: &str,
        today: types::Date,
    ) -> Called<Result<Vec<bindings::policy::OfferPrices>, types::PricingError>> {
        self.harness.call(&self.grants, Hook::Pricing, |s| {
            let p = self.pre.instantiate(&mut *s)?;
            Ok(p.billing_reseller_policy()
                .call_price(&mut *s, offers, settings, today)?
                .map(|prices| {
                    prices
                        .into_iter()
                        .map(crate::convert::offer_prices)
                        .collect()
                }))
        })
    }
}
