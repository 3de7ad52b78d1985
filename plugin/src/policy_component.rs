//! Binds a [`PricingPolicy`](crate::PricingPolicy) to the `billing:reseller` pricing-policy
//! world: the generated types, their conversions, and the function [`export_policy!`] calls.
//!
//! The bindings are generated for use from the crate that exports a policy:
//! [`export_policy!`](crate::export_policy) expands there into an implementation of the
//! generated `Guest` trait and into the generated `export!`, which finds the types here through
//! `$crate::policy_component`.

wit_bindgen::generate!({
    world: "pricing-policy",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "$crate::policy_component",
});

use billing::reseller::{log, types as wit};
use exports::billing::reseller::policy as exported;

use crate::PricingPolicy;

crate::model_conversions!();

/// Prices the host's offers with `P`, converting on the way in and out; logs how many were
/// priced.
pub fn price<P: PricingPolicy>(
    offers: Vec<wit::Offer>,
    settings: &str,
    today: wit::Date,
) -> Result<Vec<exported::OfferPrices>, wit::PricingError> {
    let offers: Vec<crate::model::Offer> = offers.into_iter().map(offer).collect();
    let priced = P::prices(&offers, settings, from_date(today)).map_err(pricing_error)?;
    log::emit(
        log::Level::Debug,
        &format!("priced {} of {} offers", priced.len(), offers.len()),
    );
    Ok(priced
        .into_iter()
        .map(|p| exported::OfferPrices {
            tariff_id: p.tariff_id,
            prices: p
                .prices
                .into_iter()
                .map(|p| exported::PeriodPrice {
                    months: p.months,
                    price: money(p.price),
                })
                .collect(),
        })
        .collect())
}
