//! The capabilities the host grants a plugin, one imported interface per file, each on its own
//! narrow context type so that it can be tested without wasm.
//!
//! [`CallState`] is what one call's `Store` holds: the contexts of every capability and the
//! WASI context that grants nothing.

pub mod catalogue;
pub mod log;
pub mod upstream;
pub mod wasi;

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, catalogue::Snapshot};

/// What every call of one plugin shares: built once, cloned cheaply into each call.
#[derive(Clone)]
pub struct Grants {
    /// The plugin's name in logs.
    pub plugin: Arc<str>,
    /// The catalogue snapshot.
    pub catalogue: Arc<Snapshot>,
    /// The upstream the plugin may call.
    pub upstream: upstream::UpstreamCap,
}

/// The state of one call's `Store`.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    catalogue: catalogue::CatalogueCap,
    log: log::LogCap,
    upstream: upstream::UpstreamCap,
    pub(crate) limits: StoreLimits,
}

impl CallState {
    /// A fresh state for one call.
    pub fn new(grants: &Grants, limits: StoreLimits) -> Self {
        let (wasi, stderr) = wasi::empty_ctx();
        CallState {
            wasi,
            table: ResourceTable::new(),
            stderr,
            catalogue: catalogue::CatalogueCap::new(grants.catalogue.clone()),
            log: log::LogCap::new(grants.plugin.clone()),
            upstream: grants.upstream.clone(),
            limits,
        }
    }

    /// What the guest wrote to stderr (a panic message, for instance), lossily decoded.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
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
