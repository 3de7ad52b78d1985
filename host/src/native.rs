//! The built-in protocol's price export, compiled into the host: the same code as the protocol
//! component's ([`reseller_plugin::price_list`]), rendering the prices the sandboxed pricing
//! policy gave.
//!
//! The protocol built into the host is the host's own code: the partner's logic is the policy,
//! and that runs in the sandbox, once per catalogue version and day (its answer kept by the
//! [`PolicyLink`]). What is left of a price export, filtering the catalogue by the query and
//! writing the document, needs no sandbox; rendered here it costs what native code costs,
//! instead of a fresh instance, the catalogue copied into it and the prices copied in and out on
//! every request. A protocol component from a file always runs in the sandbox, and so do the
//! order hooks of the built-in one.
//!
//! The host checks the two renderers against each other when a configuration loads (see
//! [`crate::reseller::Active::load`]): the component answers the trial export, the native
//! renderer the same query, and a difference keeps the component serving.

use std::sync::{Arc, Mutex, PoisonError};

use reseller_plugin::model;

use crate::bindings::catalogue::Snapshot;
use crate::bindings::policy::OfferPrices;
use crate::bindings::{pricing, types};
use crate::capabilities::calendar;
use crate::capabilities::policy::{PolicyLink, Priced};
use crate::convert::wit_date;
use crate::runtime::Fault;

/// The catalogue as the native renderer reads it, converted once per configuration, and the
/// policy's last prices converted for it.
pub struct NativeProtocol {
    offers: Vec<model::Offer>,
    converted: Mutex<Option<Converted>>,
}

/// A policy's answer, and its prices as the renderer reads them.
type Converted = (Arc<Priced>, Arc<Vec<model::OfferPrices>>);

impl NativeProtocol {
    /// The renderer of `snapshot`'s catalogue.
    pub fn new(snapshot: &Snapshot) -> Self {
        NativeProtocol {
            offers: snapshot.offers.iter().map(offer).collect(),
            converted: Mutex::new(None),
        }
    }

    /// Answers `query` as the built-in protocol component does, with the prices `link`'s policy
    /// gives for `snapshot` today: the same document, the same refusals, and the policy's fault
    /// blamed on the policy.
    pub fn export_prices(
        &self,
        snapshot: &Snapshot,
        link: &PolicyLink,
        query: &pricing::Query,
    ) -> Result<Result<pricing::Document, types::PricingError>, Fault> {
        let today = wit_date(calendar::today());
        let priced = link
            .price_shared(&snapshot.offers, &snapshot.settings, today)
            .map_err(|fault| Fault::Policy(Box::new(fault)))?;
        let prices = match &*priced {
            Ok(_) => self.converted(&priced),
            Err(refusal) => return Ok(Err(refusal.clone())),
        };
        let query = model::Query {
            itemtype: query.itemtype.clone(),
            only_available: query.only_available,
            pricelist: query.pricelist,
            format: match query.format {
                pricing::Format::Xml => model::Format::Xml,
                pricing::Format::Json => model::Format::Json,
            },
        };
        Ok(reseller_plugin::price_list(&self.offers, &prices, &query)
            .map(|doc| pricing::Document {
                content_type: doc.content_type.to_owned(),
                body: doc.body,
            })
            .map_err(pricing_error))
    }

    /// The policy's prices as the renderer reads them, converted once per answer of the policy.
    fn converted(&self, priced: &Arc<Priced>) -> Arc<Vec<model::OfferPrices>> {
        let mut converted = self
            .converted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((answer, prices)) = &*converted
            && Arc::ptr_eq(answer, priced)
        {
            return prices.clone();
        }
        let prices = Arc::new(match &**priced {
            Ok(list) => list.iter().map(offer_prices).collect(),
            Err(_) => Vec::new(),
        });
        *converted = Some((priced.clone(), prices.clone()));
        prices
    }
}

fn offer(o: &types::Offer) -> model::Offer {
    model::Offer {
        tariff_id: o.tariff_id,
        intname: o.intname.clone(),
        additionintname: o.additionintname.clone(),
        name: o.name.clone(),
        upstream_costs: o
            .upstream_costs
            .iter()
            .map(|c| model::PeriodCost {
                months: c.months,
                cost: money(&c.cost),
            })
            .collect(),
        orderable: o.orderable,
    }
}

fn money(m: &types::Money) -> model::Money {
    model::Money {
        units: m.units,
        currency: m.currency.clone(),
    }
}

fn offer_prices(p: &OfferPrices) -> model::OfferPrices {
    model::OfferPrices {
        tariff_id: p.tariff_id,
        prices: p
            .prices
            .iter()
            .map(|p| model::PeriodPrice {
                months: p.months,
                price: money(&p.price),
            })
            .collect(),
    }
}

fn pricing_error(e: model::PricingError) -> types::PricingError {
    let field = |f: model::FieldError| types::FieldError {
        field: f.field,
        value: f.value,
        message: f.message,
    };
    match e {
        model::PricingError::InvalidValue(f) => types::PricingError::InvalidValue(field(f)),
        model::PricingError::InvalidSettings(f) => types::PricingError::InvalidSettings(field(f)),
        model::PricingError::Overflow(m) => types::PricingError::Overflow(m),
    }
}
