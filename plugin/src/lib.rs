//! The ispmanager-reseller guest library: the ispmanager protocol logic and the built-in pricing
//! policy, compiled to wasm components of the `billing:reseller` package.
//!
//! Everything here is plain Rust over the types of [`model`]; only the `component` modules,
//! built for `wasm32` alone, bind it to the contract. The same logic compiles natively for unit
//! tests and for benchmarks that compare the sandboxed call with a native one.
//!
//! The crate's own component (the `export` feature, on by default) is the built-in **protocol**
//! (world `protocol`): it renders the panel's price list ([`price_list`]) from the prices a
//! pricing policy gives, and runs the order hooks ([`orders`]). A **pricing policy** is a
//! component of its own (world `pricing-policy`): a crate implements [`PricingPolicy`], depends
//! on this one with `default-features = false, features = ["policy"]`, and exports itself with
//! [`export_policy!`]; the
//! host joins it to the protocol. The building blocks of [`policy`] (the built-in [`Markup`]
//! policy's settings) are public for other policies to share:
//!
//! ```
//! use reseller_plugin::PricingPolicy;
//! use reseller_plugin::model::{Date, Offer, OfferPrices, PricingError};
//!
//! /// Sells every module at its upstream cost; takes no settings.
//! struct AtCost;
//!
//! impl PricingPolicy for AtCost {
//!     fn prices(
//!         offers: &[Offer],
//!         _settings_json: &str,
//!         _today: Date,
//!     ) -> Result<Vec<OfferPrices>, PricingError> {
//!         reseller_plugin::price_each(offers, |offer, months| {
//!             let cost = offer.upstream_costs.iter().find(|c| c.months == months);
//!             Ok(cost.map(|c| c.cost.clone()))
//!         })
//!     }
//! }
//!
//! reseller_plugin::export_policy!(AtCost);
//! ```
//!
//! [`Markup`]: policy::Markup

pub mod model;
pub mod orders;
pub mod policy;
pub mod render;

/// The built-in protocol component (the `export` feature): the bindings of the `protocol` world
/// and the conversions between their types and [`model`]'s.
#[cfg(all(target_arch = "wasm32", feature = "export"))]
#[expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]
mod component;

/// The bindings of the `pricing-policy` world for a policy crate (the `policy` feature, without
/// `export`: one component carries one world): the plumbing of [`export_policy!`].
#[cfg(all(target_arch = "wasm32", feature = "policy", not(feature = "export")))]
#[doc(hidden)]
pub mod policy_component;

/// Conversions between a world's generated types (`wit`, in scope where this expands) and
/// [`model`]'s, shared by the protocol's and a policy's bindings.
#[cfg(all(target_arch = "wasm32", any(feature = "export", feature = "policy")))]
macro_rules! model_conversions {
    () => {
        /// An offer of the host's catalogue as the logic sees it.
        pub fn offer(o: wit::Offer) -> $crate::model::Offer {
            $crate::model::Offer {
                tariff_id: o.tariff_id,
                intname: o.intname,
                additionintname: o.additionintname,
                name: o.name,
                upstream_costs: o
                    .upstream_costs
                    .into_iter()
                    .map(|c| $crate::model::PeriodCost {
                        months: c.months,
                        cost: $crate::model::Money {
                            units: c.cost.units,
                            currency: c.cost.currency,
                        },
                    })
                    .collect(),
                orderable: o.orderable,
            }
        }

        /// Money as the contract has it.
        pub fn money(m: $crate::model::Money) -> wit::Money {
            wit::Money {
                units: m.units,
                currency: m.currency,
            }
        }

        /// A date as the contract has it.
        pub fn date(d: $crate::model::Date) -> wit::Date {
            wit::Date {
                year: d.year,
                month: d.month,
                day: d.day,
            }
        }

        /// A date of the contract as the logic has it.
        #[allow(dead_code, reason = "a policy reads dates, the protocol writes them")]
        pub fn from_date(d: wit::Date) -> $crate::model::Date {
            $crate::model::Date {
                year: d.year,
                month: d.month,
                day: d.day,
            }
        }

        /// A field error as the contract has it.
        pub fn field_error(e: $crate::model::FieldError) -> wit::FieldError {
            wit::FieldError {
                field: e.field,
                value: e.value,
                message: e.message,
            }
        }

        /// A pricing error as the contract returns it.
        pub fn pricing_error(e: $crate::model::PricingError) -> wit::PricingError {
            use $crate::model::PricingError as E;
            match e {
                E::InvalidValue(f) => wit::PricingError::InvalidValue(field_error(f)),
                E::InvalidSettings(f) => wit::PricingError::InvalidSettings(field_error(f)),
                E::Overflow(m) => wit::PricingError::Overflow(m),
            }
        }
    };
}
#[cfg(all(target_arch = "wasm32", any(feature = "export", feature = "policy")))]
use model_conversions;

use model::{Date, Document, FieldError, Format, Money, Offer, OfferPrices, PeriodPrice};
use model::{PricingError, Query};
use render::PriceLine;

pub use policy::Markup;

/// A partner's pricing policy: what the partner charges for each module of the catalogue.
///
/// A policy is a type without state: the host may run each call in a fresh instance, and keep
/// an answer for as long as the catalogue, the settings and the day stay the same. Export one as
/// a component with [`export_policy!`].
pub trait PricingPolicy {
    /// Prices the offers. `settings_json` is the JSON form of the host configuration's
    /// `[pricing]` table, whose schema the policy defines; a bad setting is
    /// [`PricingError::InvalidSettings`] naming its dotted path under `pricing.`. `today` is the
    /// day priced for (UTC), for policies that price by date.
    fn prices(
        offers: &[Offer],
        settings_json: &str,
        today: Date,
    ) -> Result<Vec<OfferPrices>, PricingError>;
}

/// Prices every period each offer has an upstream cost for with `price(offer, months)`, which
/// gives the partner's price or `None` when that period is not offered. Offers keep their order,
/// periods their upstream order; the first error stops it.
pub fn price_each<F>(offers: &[Offer], mut price: F) -> Result<Vec<OfferPrices>, PricingError>
where
    F: FnMut(&Offer, u16) -> Result<Option<Money>, PricingError>,
{
    offers
        .iter()
        .map(|offer| {
            let mut prices: Vec<PeriodPrice> = Vec::with_capacity(offer.upstream_costs.len());
            for cost in &offer.upstream_costs {
                if prices.iter().any(|p| p.months == cost.months) {
                    continue;
                }
                if let Some(price) = price(offer, cost.months)? {
                    prices.push(PeriodPrice {
                        months: cost.months,
                        price,
                    });
                }
            }
            Ok(OfferPrices {
                tariff_id: offer.tariff_id,
                prices,
            })
        })
        .collect()
}

/// Answers a `pricelist.export` query over the catalogue with the partner's `prices`: the query
/// rules and the rendering every policy shares.
///
/// Only `itemtype=addition` is served; `only_available` leaves out modules that cannot be
/// ordered, `pricelist` keeps only that tariff. A module without a 1-month price gets no line
/// (the panel shows only that one); its other periods follow it, shortest first, grouped by
/// currency.
pub fn price_list(
    offers: &[Offer],
    prices: &[OfferPrices],
    query: &Query,
) -> Result<Document, PricingError> {
    if query.itemtype != "addition" {
        return Err(PricingError::InvalidValue(FieldError {
            field: "itemtype".to_owned(),
            value: query.itemtype.clone(),
            message: "only modules (itemtype=addition) are sold here".to_owned(),
        }));
    }
    let mut lines = Vec::with_capacity(offers.len());
    for offer in offers {
        if query.pricelist.is_some_and(|id| id != offer.tariff_id)
            || (query.only_available && !offer.orderable)
        {
            continue;
        }
        let Some(priced) = prices.iter().find(|p| p.tariff_id == offer.tariff_id) else {
            continue;
        };
        // The panel needs the 1-month price: a module without one gets no line at all.
        if !priced.prices.iter().any(|p| p.months == 1) {
            continue;
        }
        let mut periods: Vec<(u16, Money)> = priced
            .prices
            .iter()
            .map(|p| (p.months, p.price.clone()))
            .collect();
        periods.sort_by_key(|(months, _)| *months);
        lines.push(PriceLine {
            id: offer.tariff_id,
            intname: &offer.intname,
            name: &offer.name,
            additionintname: &offer.additionintname,
            periods,
        });
    }
    Ok(match query.format {
        Format::Xml => render::xml(&lines),
        Format::Json => render::json(&lines),
    })
}

/// Exports a [`PricingPolicy`] as the crate's `billing:reseller` pricing-policy component.
///
/// Invoke it once, at item level, in the crate built as the component (`cdylib`) for
/// `wasm32-wasip2`, e.g. `reseller_plugin::export_policy!(Charm);` (see the
/// [crate documentation](crate) for a whole policy). The calling crate depends on this one
/// with `default-features = false, features = ["policy"]`, so that the built-in protocol is not
/// exported with it. On
/// other targets the macro only checks that the type is a policy, so the crate still builds
/// natively for its unit tests.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: fn() = || {
            fn is_a_pricing_policy<P: $crate::PricingPolicy>() {}
            is_a_pricing_policy::<$policy>();
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use ::core::result::Result;
            use ::std::string::String;
            use ::std::vec::Vec;

            use $crate::policy_component::billing::reseller::types as wit;
            use $crate::policy_component::exports::billing::reseller::policy;

            struct Policy;

            impl policy::Guest for Policy {
                fn price(
                    offers: Vec<wit::Offer>,
                    settings: String,
                    today: wit::Date,
                ) -> Result<Vec<policy::OfferPrices>, wit::PricingError> {
                    $crate::policy_component::price::<$policy>(offers, &settings, today)
                }
            }

            $crate::policy_component::export! { Policy with_types_in $crate::policy_component }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::PeriodCost;

    fn offer(tariff_id: u64, orderable: bool, costs: &[(u16, i64)]) -> Offer {
        Offer {
            orderable,
            ..Offer::with_costs(
                tariff_id,
                "drweb",
                &costs
                    .iter()
                    .map(|&(m, u)| (m, u, "EUR"))
                    .collect::<Vec<_>>(),
            )
        }
    }

    fn query(format: Format) -> Query {
        Query {
            itemtype: "addition".to_owned(),
            only_available: true,
            pricelist: None,
            format,
        }
    }

    #[test]
    fn the_markup_policy_prices_every_offered_period() {
        let offers = [Offer {
            upstream_costs: vec![
                PeriodCost {
                    months: 12,
                    cost: Money {
                        units: 760_000,
                        currency: "EUR".to_owned(),
                    },
                },
                PeriodCost {
                    months: 1,
                    cost: Money {
                        units: 76_153,
                        currency: "EUR".to_owned(),
                    },
                },
            ],
            ..Offer::with_costs(277, "drweb", &[])
        }];
        let today = Date {
            year: 2027,
            month: 1,
            day: 1,
        };
        let json = r#"{"markup_percent": "12.5", "rounding_step": "0.10", "periods": [1, 12]}"#;
        let prices = Markup::prices(&offers, json, today).expect("prices");
        let got: Vec<(u16, i64)> = prices[0]
            .prices
            .iter()
            .map(|p| (p.months, p.price.units))
            .collect();
        assert_eq!(
            got,
            [(12, 855_000), (1, 86_000)],
            "upstream's order, marked up"
        );
        match Markup::prices(&offers, r#"{"rounding": "sideways"}"#, today) {
            Err(PricingError::InvalidSettings(e)) => assert_eq!(e.field, "pricing.rounding"),
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn the_price_list_follows_the_query_rules() {
        let offers = [
            offer(1, true, &[(1, 10_000), (12, 100_000), (6, 55_000)]),
            offer(2, false, &[(1, 20_000)]),
            offer(3, true, &[(12, 100_000)]),
        ];
        let prices = price_each(&offers, |o, months| {
            Ok(o.upstream_costs
                .iter()
                .find(|c| c.months == months)
                .map(|c| c.cost.clone()))
        })
        .expect("prices");
        let doc = price_list(&offers, &prices, &query(Format::Xml)).expect("list");
        let text = String::from_utf8(doc.body).expect("UTF-8");
        assert!(text.contains("<id>1</id>"), "{text}");
        assert!(!text.contains("<id>2</id>"), "not orderable: {text}");
        assert!(!text.contains("<id>3</id>"), "no 1-month price: {text}");
        let lengths: Vec<&str> = text
            .split("length=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert_eq!(lengths, ["1", "6", "12"], "shortest first: {text}");
        let all = Query {
            only_available: false,
            ..query(Format::Json)
        };
        let doc = price_list(&offers, &prices, &all).expect("list");
        let v: serde_json::Value = serde_json::from_slice(&doc.body).expect("JSON");
        assert_eq!(v["doc"]["pricelist"].as_array().map(Vec::len), Some(2));
        let soft = Query {
            itemtype: "soft".to_owned(),
            ..query(Format::Xml)
        };
        assert!(matches!(
            price_list(&offers, &prices, &soft),
            Err(PricingError::InvalidValue(f)) if f.field == "itemtype"
        ));
    }
}
