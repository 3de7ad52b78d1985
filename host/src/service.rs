//! [`Reseller`]: the host as a library. A billing system that embeds the host builds one from a
//! configuration and calls it; the HTTP server and the CLI are thin layers over it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use crate::bindings::{self, pricing, types};
use crate::capabilities::Grants;
use crate::capabilities::upstream::UpstreamCap;
use crate::config::{Config, ConfigError};
use crate::runtime::{Fault, LoadedPlugin, Runtime};

/// The plugin built into the host, used when the configuration names none.
pub const BUILTIN_PLUGIN: &[u8] = include_bytes!(env!("RESELLER_PLUGIN_WASM"));

/// Why a price export has no document.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The plugin refused the query or could not price (a business error).
    #[error("{}", pricing_message(.0))]
    Pricing(types::PricingError),
    /// The plugin could not be run to the end.
    #[error(transparent)]
    Fault(#[from] Fault),
}

/// A configured host: the loaded plugin and what it is granted.
pub struct Reseller {
    config: Config,
    plugin: LoadedPlugin,
    grants: Grants,
}

impl Reseller {
    /// Loads the configured plugin and checks the configuration against it with one price
    /// export, so that a bad setting stops the start rather than a later request.
    pub fn new(runtime: &Runtime, config: Config) -> Result<Reseller, ConfigError> {
        let plugin = load_plugin(runtime, &config)?;
        let snapshot = bindings::snapshot(&config, catalogue_version(&config));
        let grants = Grants {
            plugin: plugin.name().clone(),
            catalogue: Arc::new(snapshot),
            upstream: UpstreamCap::not_configured(),
        };
        let reseller = Reseller {
            config,
            plugin,
            grants,
        };
        reseller.check()?;
        Ok(reseller)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let query = pricing::Query {
            itemtype: "addition".to_owned(),
            only_available: false,
            pricelist: None,
            format: pricing::Format::Xml,
            lang: None,
        };
        let source = &self.config.source;
        match self.export_prices(&query) {
            Ok(_) => Ok(()),
            Err(ExportError::Pricing(types::PricingError::InvalidSettings(f))) => {
                Err(ConfigError::new(source, f.field, f.message))
            }
            Err(ExportError::Pricing(e)) => Err(ConfigError::new(
                source,
                "pricing",
                format!(
                    "the plugin cannot price this catalogue: {}",
                    pricing_message(&e)
                ),
            )),
            Err(ExportError::Fault(f)) => Err(ConfigError::new(
                source,
                "plugin.path",
                format!("the plugin failed its first price export: {f}"),
            )),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Answers a `pricelist.export` query through the plugin. Blocks while the plugin runs:
    /// from async code, call it on a blocking thread.
    pub fn export_prices(&self, query: &pricing::Query) -> Result<pricing::Document, ExportError> {
        self.plugin
            .export_prices(&self.grants, query)?
            .map_err(ExportError::Pricing)
    }
}

/// A one-line description of a pricing error, for logs and messages.
pub fn pricing_message(e: &types::PricingError) -> String {
    match e {
        types::PricingError::InvalidValue(f) => {
            format!("invalid {} `{}`: {}", f.field, f.value, f.message)
        }
        types::PricingError::InvalidSettings(f) => {
            format!("invalid setting {}: {}", f.field, f.message)
        }
        types::PricingError::Overflow(m) | types::PricingError::Other(m) => m.clone(),
    }
}

fn load_plugin(runtime: &Runtime, config: &Config) -> Result<LoadedPlugin, ConfigError> {
    let source = &config.source;
    let (name, bytes) = match &config.plugin.path {
        None => ("builtin".to_owned(), BUILTIN_PLUGIN.to_vec()),
        Some(path) => {
            let path = source.resolve(path);
            let bytes = std::fs::read(&path).map_err(|e| {
                ConfigError::new(
                    source,
                    "plugin.path",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            (path.display().to_string(), bytes)
        }
    };
    LoadedPlugin::load(runtime.engine(), &name, &bytes)
        .map_err(|e| ConfigError::new(source, "plugin.path", format!("{name}: {e}")))
}

/// Identifies what the plugin prices, so that it may key caches on it.
fn catalogue_version(config: &Config) -> u64 {
    let mut h = DefaultHasher::new();
    config.pricing_json().hash(&mut h);
    format!("{:?}", config.catalogue).hash(&mut h);
    h.finish()
}
