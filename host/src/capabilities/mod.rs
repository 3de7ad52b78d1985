//! The capabilities the host grants a plugin, one imported interface per file, each on its own
//! narrow context type so that it can be tested without wasm.
//!
//! [`CallState`] is what one call's `Store` holds: the contexts of every capability, the WASI
//! context that grants nothing, and the call's limits.

pub mod catalogue;
pub mod log;
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
    stderr: MemoryOutputPipe,
    catalogue: catalogue::CatalogueCap,
    log: log::LogCap,
    upstream: upstream::UpstreamCap,
    limiter: Limiter,
}

impl CallState {
    /// A fresh state for one call of `hook`.
    pub fn new(grants: &Grants, limits: &Limits, hook: Hook, limiter: Limiter) -> Self {
        let (wasi, stderr) = wasi::empty_ctx();
        let budget = Budget::new(limits.clone());
        CallState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            catalogue: catalogue::CatalogueCap::new(grants.catalogue.clone(), budget.clone()),
            log: log::LogCap::new(grants.plugin.clone(), budget.clone()),
            upstream: upstream::UpstreamCap::new(grants.upstream.clone(), hook, budget),
            limiter,
        }
    }

    /// What the guest wrote to stderr (a panic message, for instance), lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
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

/// Links every capability, and nothing else, into `linker`.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker)?;
    bindings::catalogue::add_to_linker::<CallState, HasCatalogue>(linker, |s| &mut s.catalogue)?;
    bindings::log::add_to_linker::<CallState, HasLog>(linker, |s| &mut s.log)?;
    bindings::upstream::add_to_linker::<CallState, HasUpstream>(linker, |s| &mut s.upstream)?;
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
