//! Running plugins: the process-wide [`Runtime`] (engines, the epoch ticker, the compiled-code
//! cache), a loaded plugin version ([`LoadedPlugin`]) and one call's store ([`call`]).

mod cache;
mod call;
mod component;
mod plugin;

pub use cache::{CacheOutcome, CodeCache};
pub use call::{Fault, Usage};
pub use component::{Contract, Inspected, LoadError, inspect, read_component};
pub use plugin::{
    Called, Harness, LoadedPlugin, LoadedPolicy, NOT_IN_0_1, PluginStats,
    sha256_hex as plugin_sha256,
};

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::limits::{Limits, MAX_TABLE_ELEMENTS};

/// How often the epoch ticker advances every engine: the resolution of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide side of running plugins. Each loaded plugin gets an engine configured from
/// its limits (the wasm stack is an engine setting); one thread per process advances the epoch
/// of every live engine, for as long as the process runs.
#[derive(Clone)]
pub struct Runtime {
    cache: Option<CodeCache>,
    pooling: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

/// The engines the ticker advances, held weakly: an engine lives as long as its plugin.
fn ticked_engines() -> &'static Mutex<Vec<EngineWeak>> {
    static ENGINES: OnceLock<Mutex<Vec<EngineWeak>>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        thread::Builder::new()
            .name("epoch-ticker".to_owned())
            .spawn(tick)
            .map(drop)
            // Without the ticker deadlines would never fire; fuel still bounds every call.
            .unwrap_or_else(|e| tracing::error!("cannot start the epoch ticker: {e}"));
        Mutex::default()
    })
}

impl Runtime {
    /// A runtime without a compiled-code cache, with pooled instances.
    pub fn new() -> Self {
        Runtime {
            cache: None,
            pooling: true,
        }
    }

    /// The same, allocating each instance's memory on demand instead of from a pool of
    /// pre-reserved slots (slower to instantiate; for comparison).
    pub fn without_pooling(self) -> Self {
        Runtime {
            pooling: false,
            ..self
        }
    }

    /// The same, caching compiled code in `dir`.
    pub fn with_cache(dir: PathBuf) -> Self {
        Runtime {
            cache: Some(CodeCache::new(dir)),
            pooling: true,
        }
    }

    /// The compiled-code cache, if any.
    pub fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }

    /// An engine for a plugin with `limits`, registered with the ticker.
    pub fn engine(&self, limits: &Limits) -> wasmtime::Result<Engine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes);
        if self.pooling {
            // One slot per call in flight (the plugin never runs more at once), sized to the
            // limits, so that the pool reserves only what those calls can use.
            let slots = limits.concurrent_calls;
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(limits.instances))
                .max_core_instances_per_component(limits.instances)
                .total_memories(slots.saturating_mul(limits.memories))
                .max_memories_per_component(limits.memories)
                .total_tables(slots.saturating_mul(limits.tables))
                .max_tables_per_component(limits.tables)
                .table_elements(MAX_TABLE_ELEMENTS)
                .max_memory_size(limits.memory_bytes);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config)?;
        if let Ok(mut engines) = ticked_engines().lock() {
            engines.retain(|e| e.upgrade().is_some());
            engines.push(engine.weak());
        }
        Ok(engine)
    }
}

/// Advances the epoch of every live engine, forever.
fn tick() {
    loop {
        thread::sleep(EPOCH_TICK);
        if let Ok(engines) = ticked_engines().lock() {
            for engine in engines.iter().filter_map(EngineWeak::upgrade) {
                engine.increment_epoch();
            }
        }
    }
}
