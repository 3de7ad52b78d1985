//! The default ispmanager-reseller plugin: the partner's pricing policy and the ispmanager
//! protocol logic, compiled to a wasm component for the `billing:reseller` world.
//!
//! Everything here is plain Rust over the types of [`model`]; only the `component` module, built
//! for `wasm32` alone, binds it to the contract. The same logic compiles natively for unit tests
//! and for benchmarks that compare the sandboxed call with a native one.

pub mod model;
pub mod orders;
pub mod policy;
pub mod render;

#[cfg(target_arch = "wasm32")]
#[expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]
mod component;

use model::{Document, FieldError, Format, Offer, PricingError, Query};
use policy::Settings;
use render::PriceLine;

/// Answers a `pricelist.export` query over the catalogue, priced by the settings.
pub fn export_prices(
    offers: &[Offer],
    settings: &Settings,
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
        // The panel needs the 1-month price: a module without one gets no line at all.
        let Some(month) = settings.price(offer, 1)? else {
            continue;
        };
        let mut periods = vec![(1, month)];
        if let Some(year) = settings.price(offer, 12)? {
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
