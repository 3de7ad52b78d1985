//! The default ispmanager-reseller plugin: the partner's pricing policy and the ispmanager
//! protocol logic, compiled to a wasm component for the `billing:reseller` world.
//!
//! Everything here is plain Rust over the types of [`model`]; only the `component` module, built
//! for `wasm32` alone, binds it to the contract. The same logic compiles natively for unit tests
//! and for benchmarks that compare the sandboxed call with a native one.
//!
//! The crate is also the library other pricing plugins are built on. Such a plugin implements
//! [`PricingPolicy`], depends on this crate with `default-features = false` (the `export`
//! feature, on by default, exports the built-in [`policy::Markup`] policy), and exports itself
//! with [`export_plugin!`]; it gets the same order hooks, rendering and query rules
//! ([`price_list`]), and may share the settings' building blocks of [`policy`]:
//!
//! ```
//! use reseller_plugin::PricingPolicy;
//! use reseller_plugin::model::{Document, Offer, PricingError, Query};
//!
//! /// Lists every module at its upstream cost; takes no settings.
//! struct AtCost;
//!
//! impl PricingPolicy for AtCost {
//!     fn export_prices(
//!         offers: &[Offer],
//!         _settings_json: &str,
//!         query: &Query,
//!     ) -> Result<Document, PricingError> {
//!         reseller_plugin::price_list(offers, query, |offer, months| {
//!             let cost = offer.upstream_costs.iter().find(|c| c.months == months);
//!             Ok(cost.map(|c| c.cost.clone()))
//!         })
//!     }
//! }
//!
//! reseller_plugin::export_plugin!(AtCost);
//! ```

pub mod model;
pub mod orders;
pub mod policy;
pub mod render;

/// The bindings of the `billing:reseller` world and the conversions between their types and
/// [`model`]'s: the plumbing of [`export_plugin!`], not an API of its own.
// Only the export expands unsafe code that the lint sees here: the generated imports come from a
// proc macro, which it does not look into. Without the export there is nothing to expect.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[cfg_attr(
    feature = "export",
    expect(
        unsafe_code,
        reason = "the generated bindings export functions by symbol name"
    )
)]
pub mod component;

use model::{Document, FieldError, Format, Money, Offer, PricingError, Query};
use policy::Settings;
use render::PriceLine;

/// A partner's pricing policy: what the partner charges for each module of the catalogue.
///
/// A policy is a type without state: the host may run each price export in a fresh instance.
/// Export one as a plugin with [`export_plugin!`].
pub trait PricingPolicy {
    /// Answers a `pricelist.export` query over the catalogue. `settings_json` is the JSON form of
    /// the host configuration's `[pricing]` table, whose schema the policy defines; a bad setting
    /// is [`PricingError::InvalidSettings`] naming its dotted path under `pricing.`.
    fn export_prices(
        offers: &[Offer],
        settings_json: &str,
        query: &Query,
    ) -> Result<Document, PricingError>;
}

/// Answers a `pricelist.export` query over the catalogue, priced by the settings.
pub fn export_prices(
    offers: &[Offer],
    settings: &Settings,
    query: &Query,
) -> Result<Document, PricingError> {
    price_list(offers, query, |offer, months| settings.price(offer, months))
}

/// Answers a `pricelist.export` query with the prices `price` gives: the query rules and the
/// rendering every policy shares.
///
/// `price(offer, months)` is the partner's price of a module for a period, or `None` when it is
/// not offered for that period. Only `itemtype=addition` is served; `only_available` leaves out
/// modules that cannot be ordered, `pricelist` keeps only that tariff. A module without a 1-month
/// price gets no line; the 12-month price is listed when there is one. The first error stops the
/// export.
pub fn price_list<F>(
    offers: &[Offer],
    query: &Query,
    mut price: F,
) -> Result<Document, PricingError>
where
    F: FnMut(&Offer, u16) -> Result<Option<Money>, PricingError>,
{
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
        // The panel needs the 1-month price: a module without one gets no line at all.
        let Some(month) = price(offer, 1)? else {
            continue;
        };
        let mut periods = vec![(1, month)];
        if let Some(year) = price(offer, 12)? {
            periods.push((12, year));
        }
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

/// Exports a [`PricingPolicy`] as the crate's `billing:reseller` plugin component.
///
/// Invoke it once, at item level, in the crate built as the component (`cdylib`) for
/// `wasm32-wasip2`, e.g. `reseller_plugin::export_plugin!(Charm);` (see the
/// [crate documentation](crate) for a whole plugin). The policy answers
/// `pricing.export-prices` over the host's catalogue snapshot and settings; the order hooks are
/// this crate's ([`orders`]) over the host's `upstream` capability.
///
/// The calling crate must depend on this one with `default-features = false`, or the built-in
/// policy's exports clash with its own at link time; for the same reason, build each plugin
/// component in a cargo invocation of its own (cargo unifies features within one build). On
/// other targets the macro only checks that the type is a policy, so the crate still builds
/// natively for its unit tests.
#[macro_export]
macro_rules! export_plugin {
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

            use $crate::component::billing::reseller::types as wit;
            use $crate::component::exports::billing::reseller::{orders, pricing};

            struct Plugin;

            impl pricing::Guest for Plugin {
                fn export_prices(
                    query: pricing::Query,
                ) -> Result<pricing::Document, wit::PricingError> {
                    let (offers, settings) = $crate::component::catalogue();
                    let query = $crate::component::query(query);
                    <$policy as $crate::PricingPolicy>::export_prices(&offers, &settings, &query)
                        .map($crate::component::document)
                        .map_err($crate::component::pricing_error)
                }
            }

            impl orders::Guest for Plugin {
                fn place(order: orders::Order) -> Result<orders::Placed, wit::OrderError> {
                    $crate::component::place(order)
                }

                fn rebind(service_id: String, licence_id: String) -> Result<(), wit::OrderError> {
                    $crate::component::rebind(service_id, licence_id)
                }

                fn renew(service_id: String, period: wit::Months) -> Result<(), wit::OrderError> {
                    $crate::component::renew(service_id, period)
                }

                fn remove(service_id: String) -> Result<(), wit::OrderError> {
                    $crate::component::remove(service_id)
                }

                fn upstream_costs() -> Result<Vec<orders::UpstreamOffer>, wit::OrderError> {
                    $crate::component::upstream_costs()
                }
            }

            $crate::component::export! { Plugin with_types_in $crate::component }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::PeriodCost;
    use policy::Markup;

    #[test]
    fn the_markup_policy_is_the_settings_export() {
        let offers = [Offer {
            tariff_id: 277,
            intname: "drweb".to_owned(),
            additionintname: "DrWeb".to_owned(),
            name: "Dr.Web".to_owned(),
            upstream_costs: vec![PeriodCost {
                months: 1,
                cost: Money {
                    units: 76_153,
                    currency: "EUR".to_owned(),
                },
            }],
            orderable: true,
        }];
        let json = r#"{"markup_percent": "12.5", "rounding_step": "0.10"}"#;
        for format in [Format::Xml, Format::Json] {
            let query = Query {
                itemtype: "addition".to_owned(),
                only_available: false,
                pricelist: None,
                format,
            };
            let settings = Settings::from_json(json).expect("settings");
            let direct = export_prices(&offers, &settings, &query).expect("export");
            assert_eq!(Markup::export_prices(&offers, json, &query), Ok(direct));
            match Markup::export_prices(&offers, r#"{"rounding": "sideways"}"#, &query) {
                Err(PricingError::InvalidSettings(e)) => assert_eq!(e.field, "pricing.rounding"),
                other => panic!("expected invalid settings, got {other:?}"),
            }
        }
    }
}
