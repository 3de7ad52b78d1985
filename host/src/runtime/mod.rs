//! Running plugins: the process-wide [`Runtime`] (engines, the epoch ticker, the compiled-code
//! cache), a loaded plugin version ([`LoadedPlugin`]) and one call's store ([`call`]).

mod cache;
mod call;
pub mod limits;
mod plugin;

pub use cache::{CacheOutcome, CodeCache};
pub use call::{Fault, Usage};
pub use limits::{Limit, LimitHit, Limits};
pub use plugin::{
    HookCall, HookResult, LoadError, LoadedPlugin, PluginStats, sha256_hex as plugin_sha256,
};

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, EngineWeak};

/// How often the epoch ticker advances every engine: the resolution of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide side of running plugins. Each loaded plugin gets an engine configured from
/// its limits (the wasm stack is an engine setting); one thread per process advances the epoch
/// of every live engine, for as long as the process runs.
#[derive(Clone, Default)]
pub struct Runtime {
    cache: Option<CodeCache>,
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
    /// A runtime without a compiled-code cache.
    pub fn new() -> Self {
        Runtime { cache: None }
    }

    /// The same, caching compiled code in `dir`.
    pub fn with_cache(dir: PathBuf) -> Self {
        Runtime {
            cache: Some(CodeCache::new(dir)),
        }
    }

    /// The compiled-code cache, if any.
    pub fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }

    /// An engine for a plugin with `limits`, registered with the ticker.
    pub fn engine(&self, limits: &Limits) -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot start the wasm engine: {e}"))?;
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
