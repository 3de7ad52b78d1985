//! Running plugins: the process-wide engine ([`Runtime`]), a loaded plugin version
//! ([`LoadedPlugin`]) and one call's store ([`call`]).

mod call;
mod plugin;

pub use call::{Fault, Limits};
pub use plugin::{LoadError, LoadedPlugin};

use wasmtime::{Config, Engine};

/// The process-wide wasm engine: one per process, shared by every plugin.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
}

impl Runtime {
    /// An engine for components, compiling with Cranelift.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot start the wasm engine: {e}"))?;
        Ok(Runtime { engine })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
