//! A whole plugin built against `billing:reseller@0.1.0` (the frozen copy in `wit/v0.1.0`), as
//! the built-in plugin was before 0.2: the markup policy, the BILLmanager price list and the
//! order hooks in one component. The host must keep serving it: prices and orders.

#![cfg(target_arch = "wasm32")]
#![expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]

wit_bindgen::generate!({ world: "plugin", path: "../../../wit/v0.1.0" });

use billing::reseller::{catalogue, types, upstream};
use exports::billing::reseller::{orders, pricing};
use reseller_plugin::PricingPolicy;
use reseller_plugin::model::{Date, Format, Money, Offer, PeriodCost, Query};
use reseller_plugin::orders::{self as protocol, CallError, Response, Upstream};

struct V01;

export!(V01);

fn offer(o: types::Offer) -> Offer {
    Offer {
        tariff_id: o.tariff_id,
        intname: o.intname,
        additionintname: o.additionintname,
        name: o.name,
        upstream_costs: o
            .upstream_costs
            .into_iter()
            .map(|c| PeriodCost {
                months: c.months,
                cost: Money {
                    units: c.cost.units,
                    currency: c.cost.currency,
                },
            })
            .collect(),
        orderable: o.orderable,
    }
}

fn other(e: impl std::fmt::Display) -> types::OrderError {
    types::OrderError::Other(e.to_string())
}

impl pricing::Guest for V01 {
    fn export_prices(query: pricing::Query) -> Result<pricing::Document, types::PricingError> {
        let snapshot = catalogue::get();
        let offers: Vec<Offer> = snapshot.offers.into_iter().map(offer).collect();
        // 0.1 had no calendar: a fixed day, which the markup ignores anyway.
        let today = Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let query = Query {
            itemtype: query.itemtype,
            only_available: query.only_available,
            pricelist: query.pricelist,
            format: match query.format {
                pricing::Format::Xml => Format::Xml,
                pricing::Format::Json => Format::Json,
            },
        };
        reseller_plugin::Markup::prices(&offers, &snapshot.settings, today)
            .and_then(|prices| reseller_plugin::price_list(&offers, &prices, &query))
            .map(|doc| pricing::Document {
                content_type: doc.content_type.to_owned(),
                body: doc.body,
            })
            .map_err(|e| types::PricingError::Other(e.to_string()))
    }
}

/// The host's mediated upstream call.
struct Host;

impl Upstream for Host {
    fn call(&mut self, func: &str, params: &[(&str, &str)]) -> Result<Response, CallError> {
        let request = upstream::Request {
            func: func.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        match upstream::call(&request) {
            Ok(r) => Ok(Response {
                status: r.status,
                body: r.body,
                truncated: r.truncated,
            }),
            Err(upstream::CallError::NotAllowed(m)) => Err(CallError::NotAllowed(m)),
            Err(upstream::CallError::NotSent(m)) => Err(CallError::NotSent(m)),
            Err(upstream::CallError::InDoubt(m)) => Err(CallError::InDoubt(m)),
        }
    }
}

impl orders::Guest for V01 {
    fn place(order: orders::Order) -> Result<orders::Placed, types::OrderError> {
        let order = protocol::Order {
            id: order.id,
            licence_id: order.licence_id,
            tariff_id: order.tariff_id,
            period: order.period,
            autoprolong: order.autoprolong,
            fields: Vec::new(),
        };
        match protocol::place(&mut Host, &order) {
            Ok(placed) => Ok(orders::Placed {
                service_id: placed.service_id,
            }),
            Err(protocol::OrderError::InDoubt(m)) => Err(types::OrderError::InDoubt(m)),
            Err(protocol::OrderError::NotSent(m)) => Err(types::OrderError::NotSent(m)),
            Err(e) => Err(types::OrderError::Upstream(types::UpstreamFailure {
                kind: "refused".to_owned(),
                object: String::new(),
                message: e.to_string(),
            })),
        }
    }

    fn rebind(service_id: String, licence_id: String) -> Result<(), types::OrderError> {
        protocol::rebind(&mut Host, &service_id, &licence_id).map_err(other)
    }

    fn renew(service_id: String, period: types::Months) -> Result<(), types::OrderError> {
        protocol::renew(&mut Host, &service_id, period)
            .map(drop)
            .map_err(other)
    }

    fn remove(service_id: String) -> Result<(), types::OrderError> {
        protocol::remove(&mut Host, &service_id).map_err(other)
    }

    fn upstream_costs() -> Result<Vec<orders::UpstreamOffer>, types::OrderError> {
        let offers = protocol::upstream_costs(&mut Host).map_err(other)?;
        Ok(offers
            .into_iter()
            .map(|o| orders::UpstreamOffer {
                tariff_id: o.tariff_id,
                costs: o
                    .costs
                    .into_iter()
                    .map(|c| types::PeriodCost {
                        months: c.months,
                        cost: types::Money {
                            units: c.cost.units,
                            currency: c.cost.currency,
                        },
                    })
                    .collect(),
            })
            .collect())
    }
}
