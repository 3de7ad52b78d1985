//! The contract's generated types, and the one place they meet the host's own.

use crate::config::Config;

#[expect(missing_docs, reason = "generated; the WIT carries the documentation")]
mod generated {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        // Host functions may trap the guest: a limit hit is the guest's fault.
        imports: { default: trappable },
    });
}

pub use generated::billing::reseller::{catalogue, log, types, upstream};
pub use generated::exports::billing::reseller::{orders, pricing};
pub use generated::{Plugin, PluginPre};

/// The WIT package this host is built against.
pub const PACKAGE: &str = "billing:reseller@0.1.0";
/// The package's name, without its version.
pub const PACKAGE_NAME: &str = "billing:reseller";
/// The package's version.
pub const VERSION: &str = "0.1.0";

/// The catalogue as the plugin receives it, built once per configuration.
pub fn snapshot(config: &Config, version: u64) -> catalogue::Snapshot {
    let offers = config
        .catalogue
        .modules
        .iter()
        .map(|m| {
            let currency = m
                .currency
                .as_ref()
                .unwrap_or(&config.catalogue.currency)
                .0
                .clone();
            let money = |units| types::Money {
                units,
                currency: currency.clone(),
            };
            let mut upstream_costs = vec![types::PeriodCost {
                months: 1,
                cost: money(m.cost.month.0),
            }];
            if let Some(year) = m.cost.year {
                upstream_costs.push(types::PeriodCost {
                    months: 12,
                    cost: money(year.0),
                });
            }
            types::Offer {
                tariff_id: config.tariff_id(m),
                intname: m.intname.clone(),
                additionintname: m.additionintname.clone(),
                name: m.name.clone(),
                upstream_costs,
                orderable: m.orderable,
            }
        })
        .collect();
    catalogue::Snapshot {
        version,
        offers,
        settings: config.pricing_json(),
    }
}
