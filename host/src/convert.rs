//! The conversions between the contract's generated types ([`crate::bindings`]) and the host's
//! own: what a plugin is given, and how what it answers is read. Nothing else in the host builds
//! a WIT record or reads one field by field, with one exception kept on purpose: the order side
//! sits above the rest of the host and this module below it, so the order a `place` hook
//! receives is built where orders are placed ([`crate::orders::placement`]), and a call's end is
//! read where upstream calls are journaled ([`crate::orders::journal`]).

use crate::billmgr::BillmgrError;
use crate::bindings::{catalogue, orders as hooks, pricing, types};
use crate::config::Config;
use crate::money::{Money, MoneyError, Months, UpstreamCost};

/// The catalogue as a plugin receives it, built once per configuration.
pub fn snapshot(config: &Config, version: u64) -> catalogue::Snapshot {
    let offers = config
        .catalogue
        .modules
        .iter()
        .map(|m| {
            let currency = config.currency_of(m).to_string();
            let cost = |months: Months, amount: crate::money::Amount| types::PeriodCost {
                months: months.get(),
                cost: types::Money {
                    units: amount.units(),
                    currency: currency.clone(),
                },
            };
            let mut upstream_costs = vec![cost(Months::MONTH, m.cost.month)];
            upstream_costs.extend(m.cost.year.map(|year| cost(Months::YEAR, year)));
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

/// The panel's query for the modules as XML: the whole list, or one module; every module, or
/// only those that can be ordered now.
pub fn panel_query(pricelist: Option<u64>, only_available: bool) -> pricing::Query {
    pricing::Query {
        itemtype: "addition".to_owned(),
        only_available,
        pricelist,
        format: pricing::Format::Xml,
        lang: None,
    }
}

/// A period as a plugin gives it.
pub fn months(months: types::Months) -> Result<Months, MoneyError> {
    Months::new(i64::from(months))
}

/// The costs of the `upstream-costs` hook, one per module and period, checked.
pub fn upstream_costs(offers: &[hooks::UpstreamOffer]) -> Result<Vec<UpstreamCost>, MoneyError> {
    offers
        .iter()
        .flat_map(|offer| {
            offer.costs.iter().map(|pc| {
                Ok(UpstreamCost {
                    tariff_id: offer.tariff_id,
                    period: months(pc.months)?,
                    cost: Money::from_units(pc.cost.units, &pc.cost.currency)?,
                })
            })
        })
        .collect()
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

/// The panel's error document for a plugin's refusal to price: a query value it does not serve
/// is the caller's `value` error; anything else is the partner's, with the details in the
/// host's log only.
pub fn pricing_error(e: &types::PricingError) -> BillmgrError {
    match e {
        types::PricingError::InvalidValue(f) => BillmgrError::value(&f.field, &f.value, &f.message),
        e => {
            tracing::error!("the plugin cannot price: {}", pricing_message(e));
            BillmgrError::internal()
        }
    }
}

/// A one-line description of an order hook's error, for the order's record and the operator.
pub fn order_error_message(e: &types::OrderError) -> String {
    use types::OrderError as E;
    let field = |what: &str, f: &types::FieldError| {
        format!(
            "upstream: {what} `{}` (`{}`): {}",
            f.field, f.value, f.message
        )
    };
    match e {
        E::Auth(m) => format!("upstream refused the credentials: {m}"),
        E::InvalidValue(f) => field("invalid value for", f),
        E::MissingValue(f) => field("missing value for", f),
        E::InsufficientBalance(m) => format!("insufficient upstream balance: {m}"),
        E::NotSent(m) => format!("not sent: {m}"),
        E::InDoubt(m) => format!("in doubt: {m}"),
        E::MalformedAnswer(m) => format!("unreadable upstream answer: {m}"),
        E::Upstream(f) => format!(
            "upstream error `{}`{}: {}",
            f.kind,
            if f.object.is_empty() {
                String::new()
            } else {
                format!(" on `{}`", f.object)
            },
            f.message
        ),
        E::Other(m) => m.clone(),
    }
}

/// Whether an order hook's error is upstream's refusal (an error document meaning nothing was
/// done there), as opposed to a failure to reach upstream or to read its answer.
pub fn is_refusal(e: &types::OrderError) -> bool {
    matches!(
        e,
        types::OrderError::Auth(_)
            | types::OrderError::InvalidValue(_)
            | types::OrderError::MissingValue(_)
            | types::OrderError::InsufficientBalance(_)
            | types::OrderError::Upstream(_)
    )
}
