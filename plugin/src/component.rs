//! Binds the plugin's logic to the `billing:reseller` world: the only module that sees the
//! generated types. Conversions between them and [`crate::model`] live here and nowhere else.
//!
//! The bindings are generated for use from other crates too: [`crate::export_plugin!`] expands,
//! in the crate that exports a plugin, into an implementation of the generated `Guest` traits
//! that calls the functions below and the policy, then into the generated `export!`. The export
//! macros are public (`pub_export_macro`) and find the types here through `$crate::component`
//! wherever they are expanded.

wit_bindgen::generate!({
    world: "plugin",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "$crate::component",
});

use billing::reseller::{catalogue as host_catalogue, log, types as wit, upstream};
use exports::billing::reseller::{orders as hooks, pricing};

use crate::model::{Document, FieldError, Format, Money, Offer, PeriodCost, PricingError, Query};
use crate::orders::{self, CallError, OrderError, Response, Upstream};

#[cfg(feature = "export")]
crate::export_plugin!(crate::policy::Markup);

/// The host's catalogue snapshot: its offers, and its pricing settings as JSON.
pub fn catalogue() -> (Vec<Offer>, String) {
    let snapshot = host_catalogue::get();
    let offers = snapshot.offers.into_iter().map(offer).collect();
    (offers, snapshot.settings)
}

/// The panel's query as the policies see it.
pub fn query(query: pricing::Query) -> Query {
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

/// A rendered answer as the contract returns it.
pub fn document(doc: Document) -> pricing::Document {
    pricing::Document {
        content_type: doc.content_type.to_owned(),
        body: doc.body,
    }
}

fn offer(o: wit::Offer) -> Offer {
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
                cost: money(c.cost),
            })
            .collect(),
        orderable: o.orderable,
    }
}

fn money(m: wit::Money) -> Money {
    Money {
        units: m.units,
        currency: m.currency,
    }
}

fn field_error(e: FieldError) -> wit::FieldError {
    wit::FieldError {
        field: e.field,
        value: e.value,
        message: e.message,
    }
}

/// A pricing error as the contract returns it.
pub fn pricing_error(e: PricingError) -> wit::PricingError {
    match e {
        PricingError::InvalidValue(f) => wit::PricingError::InvalidValue(field_error(f)),
        PricingError::InvalidSettings(f) => wit::PricingError::InvalidSettings(field_error(f)),
        PricingError::Overflow(m) => wit::PricingError::Overflow(m),
    }
}

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
pub fn place(order: hooks::Order) -> Result<hooks::Placed, wit::OrderError> {
    log::emit(
        log::Level::Info,
        &format!(
            "order {}: placing tariff {} for licence {} ({} months)",
            order.id, order.tariff_id, order.licence_id, order.period
        ),
    );
    let order = orders::Order {
        licence_id: order.licence_id,
        tariff_id: order.tariff_id,
        period: order.period,
        autoprolong: order.autoprolong,
    };
    match orders::place(&mut HostUpstream, &order) {
        Ok(service_id) => Ok(hooks::Placed { service_id }),
        Err(e) => {
            log::emit(log::Level::Warn, &format!("placing failed: {e}"));
            Err(order_error(e))
        }
    }
}

/// The `rebind` hook.
pub fn rebind(service_id: String, licence_id: String) -> Result<(), wit::OrderError> {
    orders::rebind(&mut HostUpstream, &service_id, &licence_id).map_err(order_error)
}

/// The `renew` hook.
pub fn renew(service_id: String, period: wit::Months) -> Result<(), wit::OrderError> {
    orders::renew(&mut HostUpstream, &service_id, period).map_err(order_error)
}

/// The `remove` hook.
pub fn remove(service_id: String) -> Result<(), wit::OrderError> {
    orders::remove(&mut HostUpstream, &service_id).map_err(order_error)
}

/// The `upstream-costs` hook.
pub fn upstream_costs() -> Result<Vec<hooks::UpstreamOffer>, wit::OrderError> {
    let offers = orders::upstream_costs(&mut HostUpstream).map_err(order_error)?;
    Ok(offers
        .into_iter()
        .map(|o| hooks::UpstreamOffer {
            tariff_id: o.tariff_id,
            costs: o
                .costs
                .into_iter()
                .map(|c| wit::PeriodCost {
                    months: c.months,
                    cost: wit::Money {
                        units: c.cost.units,
                        currency: c.cost.currency,
                    },
                })
                .collect(),
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
