//! A plugin built against `billing:reseller@0.2.1`, a later patch of the host's 0.2.0 (one
//! additive function): the host serves it. Its price list names the catalogue's modules.

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
        let body = format!("<doc><!-- 0.2.1 plugin: {} --></doc>", ids.join(" "));
        Ok(pricing::Document {
            content_type: "text/xml; charset=utf-8".to_owned(),
            body: body.into_bytes(),
        })
    }

    fn plugin_version() -> String {
        "newer-minor 0.2.1".to_owned()
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

    fn renew(
        _service_id: String,
        _period: types::Months,
    ) -> Result<orders::Renewed, types::OrderError> {
        Ok(orders::Renewed { expires: None })
    }

    fn quote_renewal(
        _service_id: String,
        _period: types::Months,
    ) -> Result<orders::RenewalQuote, types::OrderError> {
        Err(types::OrderError::Other("no quotes".to_owned()))
    }

    fn suspend(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn resume(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn remove(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn service(_service_id: String) -> Result<orders::UpstreamService, types::OrderError> {
        Err(types::OrderError::Other("no services".to_owned()))
    }

    fn services() -> Result<Vec<orders::UpstreamService>, types::OrderError> {
        Ok(Vec::new())
    }

    fn balance() -> Result<types::Money, types::OrderError> {
        Err(types::OrderError::Other("no balance".to_owned()))
    }

    fn upstream_costs() -> Result<Vec<orders::UpstreamOffer>, types::OrderError> {
        Ok(Vec::new())
    }
}
