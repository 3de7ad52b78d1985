//! The conversions between the contract's generated types ([`crate::bindings`]) and the host's
//! own: what a plugin is given, and how what it answers is read. Nothing else in the host builds
//! a WIT record or reads one field by field, with one exception kept on purpose: the order side
//! sits above the rest of the host and this module below it, so the order a `place` hook
//! receives is built where orders are placed ([`crate::orders::placement`]), and a call's end is
//! read where upstream calls are journaled ([`crate::orders::journal`]).

use crate::billmgr::BillmgrError;
use crate::bindings::{catalogue, orders as hooks, policy, policy_export, pricing, types};
use crate::catalogue::{UpstreamPrices, UpstreamTariff};
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
            let upstream_costs = m
                .cost
                .iter()
                .map(|(months, amount)| types::PeriodCost {
                    months: months.get(),
                    cost: types::Money {
                        units: amount.units(),
                        currency: currency.clone(),
                    },
                })
                .collect();
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

/// The `upstream-costs` hook's answer, checked: every tariff, and its costs per period and
/// currency. A cost listed twice for one tariff, period and currency keeps its first value.
pub fn upstream_prices(offers: &[hooks::UpstreamOffer]) -> Result<UpstreamPrices, MoneyError> {
    let costs: Vec<UpstreamCost> = offers
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
        .collect::<Result<_, MoneyError>>()?;
    let mut seen = std::collections::HashSet::new();
    let costs = costs
        .into_iter()
        .filter(|c| {
            let first = seen.insert((c.tariff_id, c.period, c.cost.currency.clone()));
            if !first {
                tracing::warn!(
                    tariff = c.tariff_id,
                    "upstream lists the cost of {} months in {} twice; the first one counts",
                    c.period,
                    c.cost.currency
                );
            }
            first
        })
        .collect();
    let tariffs = offers
        .iter()
        .map(|o| UpstreamTariff {
            tariff_id: o.tariff_id,
            intname: o.intname.clone(),
            additionintname: o.additionintname.clone(),
            name: o.name.clone(),
            trial: o.trial,
        })
        .collect();
    Ok(UpstreamPrices { tariffs, costs })
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

/// A day as the contract has it.
pub fn wit_date(d: time::Date) -> types::Date {
    types::Date {
        year: u16::try_from(d.year()).unwrap_or(0),
        month: u8::from(d.month()),
        day: d.day(),
    }
}

/// A day of the contract, if it is one.
pub fn date(d: &types::Date) -> Option<time::Date> {
    let month = time::Month::try_from(d.month).ok()?;
    time::Date::from_calendar_date(i32::from(d.year), month, d.day).ok()
}

/// A policy's answer, as the protocol's import gives it.
pub fn offer_prices(p: policy_export::OfferPrices) -> policy::OfferPrices {
    policy::OfferPrices {
        tariff_id: p.tariff_id,
        prices: p
            .prices
            .into_iter()
            .map(|p| policy::PeriodPrice {
                months: p.months,
                price: p.price,
            })
            .collect(),
    }
}

/// The conversions between the current contract's records and those of 0.1.0, for plugins
/// built against it: what 0.2 added is dropped on the way in and absent on the way out.
pub mod v0_1 {
    use crate::bindings::v0_1::{orders as old, pricing as old_pricing};
    use crate::bindings::{orders, pricing};

    /// A price export query.
    pub fn query(q: &pricing::Query) -> old_pricing::Query {
        old_pricing::Query {
            itemtype: q.itemtype.clone(),
            only_available: q.only_available,
            pricelist: q.pricelist,
            format: match q.format {
                pricing::Format::Xml => old_pricing::Format::Xml,
                pricing::Format::Json => old_pricing::Format::Json,
            },
            lang: q.lang.clone(),
        }
    }

    /// A rendered answer.
    pub fn document(d: old_pricing::Document) -> pricing::Document {
        pricing::Document {
            content_type: d.content_type,
            body: d.body,
        }
    }

    /// An order to place (0.1 has no order fields).
    pub fn order(o: &orders::Order) -> old::Order {
        old::Order {
            id: o.id.clone(),
            licence_id: o.licence_id.clone(),
            licence_ip: o.licence_ip.clone(),
            tariff_id: o.tariff_id,
            period: o.period,
            autoprolong: o.autoprolong,
            price: o.price.clone(),
        }
    }

    /// A placed order (0.1 says nothing of expiry).
    pub fn placed(p: old::Placed) -> orders::Placed {
        orders::Placed {
            service_id: p.service_id,
            expires: None,
        }
    }

    /// Upstream's prices of a module (0.1 has no names and no trials).
    pub fn upstream_offer(o: old::UpstreamOffer) -> orders::UpstreamOffer {
        orders::UpstreamOffer {
            tariff_id: o.tariff_id,
            intname: String::new(),
            additionintname: String::new(),
            name: String::new(),
            costs: o.costs,
            trial: false,
        }
    }
}
