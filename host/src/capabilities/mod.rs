//! The capabilities the host grants a plugin, one imported interface per file, each on its own
//! narrow context type so that it can be tested without wasm.
//!
//! [`CallState`] is what one call's `Store` holds: the contexts of every capability, the WASI
//! context that grants nothing, and the call's limits. [`add_to_linker`] links what a component
//! of each [`Role`] may import, and nothing else.

pub mod calendar;
pub mod catalogue;
pub mod log;
pub mod policy;
pub mod upstream;
pub mod wasi;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, catalogue::Snapshot};
use crate::limits::{Limit, LimitHit, Limiter, Limits};

/// What every call of one plugin shares: built once, cloned cheaply into each call.
#[derive(Clone)]
pub struct Grants {
    /// The plugin's name in logs.
    pub plugin: Arc<str>,
    /// The catalogue snapshot.
    pub catalogue: Arc<Snapshot>,
    /// The upstream the plugin may call, and the functions it may call there.
    pub upstream: Arc<upstream::UpstreamPolicy>,
    /// The pricing policy joined to a protocol component; none for a whole plugin.
    pub policy: Option<Arc<policy::PolicyLink>>,
}

impl Grants {
    /// What a whole plugin is granted: the catalogue and upstream through `upstream`.
    pub fn new(
        plugin: Arc<str>,
        catalogue: Snapshot,
        upstream: upstream::UpstreamPolicy,
    ) -> Grants {
        Grants {
            plugin,
            catalogue: Arc::new(catalogue),
            upstream: Arc::new(upstream),
            policy: None,
        }
    }

    /// The same, for a protocol component, with `policy` joined to it.
    pub fn with_policy(self, policy: Arc<crate::runtime::LoadedPolicy>) -> Grants {
        Grants {
            policy: Some(Arc::new(policy::PolicyLink::new(policy))),
            ..self
        }
    }

    /// What a pricing policy is granted: its name in logs, and nothing else it can reach.
    pub fn for_policy(name: Arc<str>) -> Grants {
        Grants {
            plugin: name,
            catalogue: Arc::new(Snapshot {
                version: 0,
                offers: Vec::new(),
                settings: String::new(),
            }),
            upstream: Arc::new(upstream::UpstreamPolicy::not_configured()),
            policy: None,
        }
    }
}

/// What a component is to the host, which decides what it may import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A whole plugin (`plugin` world): the catalogue, the calendar, the log and upstream.
    Plugin,
    /// The protocol alone (`protocol` world): a whole plugin's imports and a pricing policy.
    Protocol,
    /// A pricing policy (`pricing-policy` world): the log.
    Policy,
}

impl Role {
    /// The interfaces of our own package this role may import, without versions.
    pub fn own_imports(self) -> &'static [&'static str] {
        match self {
            Role::Plugin => &[
                "billing:reseller/types",
                "billing:reseller/catalogue",
                "billing:reseller/calendar",
                "billing:reseller/log",
                "billing:reseller/upstream",
            ],
            Role::Protocol => &[
                "billing:reseller/types",
                "billing:reseller/catalogue",
                "billing:reseller/calendar",
                "billing:reseller/log",
                "billing:reseller/upstream",
                "billing:reseller/policy",
            ],
            Role::Policy => &["billing:reseller/types", "billing:reseller/log"],
        }
    }

    /// Whether this role may import `import` (a versioned interface name).
    pub fn grants(self, import: &str) -> bool {
        let unversioned = import.split_once('@').map_or(import, |(name, _)| name);
        self.own_imports().contains(&unversioned)
            || wasi::GRANTED.iter().any(|p| unversioned.starts_with(p))
    }
}

/// Which hook a call runs: it decides what the call may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A price export: answers a panel, may not call upstream.
    Pricing,
    /// An order hook: may call upstream, within its budget.
    Orders,
}

/// The host calls one guest call may make, and the bytes each may carry. Shared by the
/// capabilities of the call.
pub struct Budget {
    limits: Limits,
    hostcalls: AtomicU32,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Budget {
            limits,
            hostcalls: AtomicU32::new(0),
        })
    }

    /// Counts one host call passing `bytes`; the guest's fault past a limit.
    pub fn host_call(&self, bytes: usize) -> Result<(), LimitHit> {
        let made = self
            .hostcalls
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if made > self.limits.hostcalls {
            return Err(LimitHit::new(
                Limit::Hostcalls,
                &self.limits,
                Some(u64::from(made)),
            ));
        }
        if bytes > self.limits.hostcall_bytes {
            return Err(LimitHit::new(
                Limit::HostcallBytes,
                &self.limits,
                u64::try_from(bytes).ok(),
            ));
        }
        Ok(())
    }

    /// The call's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// The state of one call's `Store`.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    catalogue: catalogue::CatalogueCap,
    calendar: calendar::CalendarCap,
    log: log::LogCap,
    upstream: upstream::UpstreamCap,
    policy: policy::PolicyCap,
    limiter: Limiter,
}

impl CallState {
    /// A fresh state for one call of `hook` on the day `today`.
    pub fn new(
        grants: &Grants,
        limits: &Limits,
        hook: Hook,
        today: time::Date,
        limiter: Limiter,
    ) -> Self {
        let (wasi, stdout, stderr) = wasi::empty_ctx(today);
        let budget = Budget::new(limits.clone());
        CallState {
            wasi,
            table: ResourceTable::new(),
            stdout,
            stderr,
            catalogue: catalogue::CatalogueCap::new(grants.catalogue.clone(), budget.clone()),
            calendar: calendar::CalendarCap::new(today, budget.clone()),
            log: log::LogCap::new(grants.plugin.clone(), budget.clone()),
            upstream: upstream::UpstreamCap::new(grants.upstream.clone(), hook, budget.clone()),
            policy: policy::PolicyCap::new(grants.policy.clone(), budget),
            limiter,
        }
    }

    /// What the guest wrote to stderr and stdout (a panic message, a Python traceback, a
    /// JavaScript error), lossily decoded, stderr first.
    pub fn output(&self) -> String {
        let text =
            |pipe: &MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).trim().to_owned();
        let (stderr, stdout) = (text(&self.stderr), text(&self.stdout));
        match (stderr.is_empty(), stdout.is_empty()) {
            (_, true) => stderr,
            (true, false) => stdout,
            (false, false) => format!("{stderr}\n{stdout}"),
        }
    }

    /// The memory limiter.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The memory limiter, to install with `Store::limiter`.
    pub fn limiter_mut(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct HasCatalogue;
impl HasData for HasCatalogue {
    type Data<'a> = &'a mut catalogue::CatalogueCap;
}

struct HasLog;
impl HasData for HasLog {
    type Data<'a> = &'a mut log::LogCap;
}

struct HasUpstream;
impl HasData for HasUpstream {
    type Data<'a> = &'a mut upstream::UpstreamCap;
}

struct HasCalendar;
impl HasData for HasCalendar {
    type Data<'a> = &'a mut calendar::CalendarCap;
}

struct HasPolicy;
impl HasData for HasPolicy {
    type Data<'a> = &'a mut policy::PolicyCap;
}

/// Links what a component of `role` built against the contract's `version` (`0.1.0` or
/// `0.2.0`) may import, and nothing else, into `linker`.
pub fn add_to_linker(
    linker: &mut Linker<CallState>,
    role: Role,
    version: &str,
) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)?;
    let at = |interface: &str| format!("billing:reseller/{interface}@{version}");
    bindings::log::add_to_linker_instance::<CallState, HasLog>(
        &mut linker.instance(&at("log"))?,
        |s| &mut s.log,
    )?;
    if role == Role::Policy {
        return Ok(());
    }
    bindings::catalogue::add_to_linker_instance::<CallState, HasCatalogue>(
        &mut linker.instance(&at("catalogue"))?,
        |s| &mut s.catalogue,
    )?;
    bindings::upstream::add_to_linker_instance::<CallState, HasUpstream>(
        &mut linker.instance(&at("upstream"))?,
        |s| &mut s.upstream,
    )?;
    if version == bindings::v0_1::VERSION {
        // 0.1 had neither a calendar nor policies.
        return Ok(());
    }
    bindings::calendar::add_to_linker_instance::<CallState, HasCalendar>(
        &mut linker.instance(&at("calendar"))?,
        |s| &mut s.calendar,
    )?;
    if role == Role::Protocol {
        bindings::policy::add_to_linker_instance::<CallState, HasPolicy>(
            &mut linker.instance(&at("policy"))?,
            |s| &mut s.policy,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_calls_and_bytes() {
        let limits = Limits {
            hostcalls: 2,
            hostcall_bytes: 10,
            ..Limits::default()
        };
        let budget = Budget::new(limits);
        assert_eq!(budget.host_call(10), Ok(()));
        assert_eq!(
            budget.host_call(11).map_err(|e| e.limit),
            Err(Limit::HostcallBytes)
        );
        assert_eq!(
            budget.host_call(0).map_err(|e| e.limit),
            Err(Limit::Hostcalls)
        );
    }
}
