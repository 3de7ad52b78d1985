//! A plugin built against `billing:reseller@0.1.1`, a later minor version than the host's: the
//! host serves it. It prices every module of the catalogue at its upstream monthly cost.

#![cfg(target_arch = "wasm32")]
#![expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]

wit_bindgen::generate!({ world: "plugin", path: "wit" });

use billing::reseller::{catalogue, log, types};
use exports::billing::reseller::{orders, pricing};

struct NewerMinor;

export!(NewerMinor);

impl pricing::Guest for NewerMinor {
    fn export_prices(_query: pricing::Query) -> Result<pricing::Document, types::PricingError> {
        let offers = catalogue::get().offers;
        log::emit(
            log::Level::Debug,
            &format!("pricing {} modules", offers.len()),
        );
        let ids: Vec<String> = offers.iter().map(|o| o.tariff_id.to_string()).collect();
        let body = format!("<doc><!-- 0.1.1 plugin: {} --></doc>", ids.join(" "));
        Ok(pricing::Document {
            content_type: "text/xml; charset=utf-8".to_owned(),
            body: body.into_bytes(),
        })
    }

    fn plugin_version() -> String {
        "newer-minor 0.1.1".to_owned()
    }
}

impl orders::Guest for NewerMinor {
    fn place(_order: orders::Order) -> Result<orders::Placed, types::OrderError> {
        Err(types::OrderError::Other(
            "this plugin does not place orders".to_owned(),
        ))
    }

    fn rebind(_service_id: String, _licence_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn renew(_service_id: String, _period: types::Months) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn remove(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn upstream_costs() -> Result<Vec<orders::UpstreamOffer>, types::OrderError> {
        Ok(Vec::new())
    }
}
