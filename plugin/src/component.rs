//! The built-in protocol component: binds the protocol logic to the `billing:reseller` protocol
//! world, the only module that sees its generated types. The price export asks the policy the
//! host joined to it for the prices and renders them; the order hooks speak to upstream through
//! the host's `upstream` capability. Conversions between the generated types and
//! [`crate::model`] are here and in `model_conversions!`, nowhere else.

wit_bindgen::generate!({
    world: "protocol",
    path: "../wit",
});

use billing::reseller::{calendar, catalogue as host_catalogue, log, types as wit, upstream};
use exports::billing::reseller::{orders as hooks, pricing};

use crate::model::{Document, Format, Money, Offer, OfferPrices, PeriodPrice, Query};
use crate::orders::{self, CallError, OrderError, Response, ServiceStatus, Upstream};

/// The built-in protocol.
struct Protocol;

export!(Protocol);

impl pricing::Guest for Protocol {
    fn export_prices(query: pricing::Query) -> Result<pricing::Document, wit::PricingError> {
        let snapshot = host_catalogue::get();
        let prices = billing::reseller::policy::price(
            &snapshot.offers,
            &snapshot.settings,
            calendar::today(),
        )?;
        let offers: Vec<Offer> = snapshot.offers.into_iter().map(offer).collect();
        let prices: Vec<OfferPrices> = prices.into_iter().map(offer_prices).collect();
        crate::price_list(&offers, &prices, &self::query(query))
            .map(document)
            .map_err(pricing_error)
    }
}

impl hooks::Guest for Protocol {
    fn place(order: hooks::Order) -> Result<hooks::Placed, wit::OrderError> {
        place(order)
    }

    fn rebind(service_id: String, licence_id: String) -> Result<(), wit::OrderError> {
        orders::rebind(&mut HostUpstream, &service_id, &licence_id).map_err(order_error)
    }

    fn renew(service_id: String, period: wit::Months) -> Result<hooks::Renewed, wit::OrderError> {
        orders::renew(&mut HostUpstream, &service_id, period)
            .map(|expires| hooks::Renewed {
                expires: expires.map(date),
            })
            .map_err(order_error)
    }

    fn quote_renewal(
        service_id: String,
        period: wit::Months,
    ) -> Result<hooks::RenewalQuote, wit::OrderError> {
        orders::quote_renewal(&mut HostUpstream, &service_id, period)
            .map(|q| hooks::RenewalQuote {
                expires: q.expires.map(date),
                new_expires: q.new_expires.map(date),
                cost: q.cost.map(money),
            })
            .map_err(order_error)
    }

    fn suspend(service_id: String) -> Result<(), wit::OrderError> {
        orders::suspend(&mut HostUpstream, &service_id).map_err(order_error)
    }

    fn resume(service_id: String) -> Result<(), wit::OrderError> {
        orders::resume(&mut HostUpstream, &service_id).map_err(order_error)
    }

    fn remove(service_id: String) -> Result<(), wit::OrderError> {
        orders::remove(&mut HostUpstream, &service_id).map_err(order_error)
    }

    fn service(service_id: String) -> Result<hooks::UpstreamService, wit::OrderError> {
        orders::service(&mut HostUpstream, &service_id)
            .map(upstream_service)
            .map_err(order_error)
    }

    fn services() -> Result<Vec<hooks::UpstreamService>, wit::OrderError> {
        orders::services(&mut HostUpstream)
            .map(|list| list.into_iter().map(upstream_service).collect())
            .map_err(order_error)
    }

    fn balance() -> Result<wit::Money, wit::OrderError> {
        orders::balance(&mut HostUpstream)
            .map(money)
            .map_err(order_error)
    }

    fn upstream_costs() -> Result<Vec<hooks::UpstreamOffer>, wit::OrderError> {
        upstream_costs()
    }
}

fn offer_prices(p: billing::reseller::policy::OfferPrices) -> OfferPrices {
    OfferPrices {
        tariff_id: p.tariff_id,
        prices: p
            .prices
            .into_iter()
            .map(|p| PeriodPrice {
                months: p.months,
                price: Money {
                    units: p.price.units,
                    currency: p.price.currency,
                },
            })
            .collect(),
    }
}

/// The panel's query as the logic sees it.
fn query(query: pricing::Query) -> Query {
    Query {
        itemtype: query.itemtype,
        only_available: query.only_available,
        pricelist: query.pricelist,
        format: match query.format {
            pricing::Format::Xml => Format::Xml,
            pricing::Format::Json => Format::Json,
        },
    }
}

fn document(doc: Document) -> pricing::Document {
    pricing::Document {
        content_type: doc.content_type.to_owned(),
        body: doc.body,
    }
}

crate::model_conversions!();

/// The host's mediated upstream call.
struct HostUpstream;

impl Upstream for HostUpstream {
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

/// The `place` hook: orders the module upstream and logs what happens.
fn place(order: hooks::Order) -> Result<hooks::Placed, wit::OrderError> {
    log::emit(
        log::Level::Info,
        &format!(
            "order {}: placing tariff {} for licence {} ({} months)",
            order.id, order.tariff_id, order.licence_id, order.period
        ),
    );
    let order = orders::Order {
        id: order.id,
        licence_id: order.licence_id,
        tariff_id: order.tariff_id,
        period: order.period,
        autoprolong: order.autoprolong,
        fields: order.fields,
    };
    match orders::place(&mut HostUpstream, &order) {
        Ok(placed) => Ok(hooks::Placed {
            service_id: placed.service_id,
            expires: placed.expires.map(date),
        }),
        Err(e) => {
            log::emit(log::Level::Warn, &format!("placing failed: {e}"));
            Err(order_error(e))
        }
    }
}

fn upstream_service(s: orders::UpstreamService) -> hooks::UpstreamService {
    hooks::UpstreamService {
        service_id: s.service_id,
        licence_id: s.licence_id,
        tariff_id: s.tariff_id,
        status: match s.status {
            ServiceStatus::Ordered => hooks::ServiceStatus::Ordered,
            ServiceStatus::Active => hooks::ServiceStatus::Active,
            ServiceStatus::Suspended => hooks::ServiceStatus::Suspended,
            ServiceStatus::Deleted => hooks::ServiceStatus::Deleted,
            ServiceStatus::Unknown => hooks::ServiceStatus::Unknown,
        },
        expires: s.expires.map(date),
        remote_id: s.remote_id,
    }
}

/// The `upstream-costs` hook.
fn upstream_costs() -> Result<Vec<hooks::UpstreamOffer>, wit::OrderError> {
    let offers = orders::upstream_costs(&mut HostUpstream).map_err(order_error)?;
    Ok(offers
        .into_iter()
        .map(|o| hooks::UpstreamOffer {
            tariff_id: o.tariff_id,
            intname: o.intname,
            additionintname: o.additionintname,
            name: o.name,
            costs: o
                .costs
                .into_iter()
                .map(|c| wit::PeriodCost {
                    months: c.months,
                    cost: money(c.cost),
                })
                .collect(),
            trial: o.trial,
        })
        .collect())
}

fn order_error(e: OrderError) -> wit::OrderError {
    match e {
        OrderError::Auth(m) => wit::OrderError::Auth(m),
        OrderError::InvalidValue(f) => wit::OrderError::InvalidValue(field_error(f)),
        OrderError::MissingValue(f) => wit::OrderError::MissingValue(field_error(f)),
        OrderError::InsufficientBalance(m) => wit::OrderError::InsufficientBalance(m),
        OrderError::NotSent(m) => wit::OrderError::NotSent(m),
        OrderError::InDoubt(m) => wit::OrderError::InDoubt(m),
        OrderError::MalformedAnswer(m) => wit::OrderError::MalformedAnswer(m),
        OrderError::Upstream(f) => wit::OrderError::Upstream(wit::UpstreamFailure {
            kind: f.kind,
            object: f.object,
            message: f.message,
        }),
        OrderError::Other(m) => wit::OrderError::Other(m),
    }
}
