//! Upstream's prices: the plugin's `upstream-costs` hook (`pricelist.export` upstream) fetches
//! what upstream charges now; the prices are applied to the catalogue ([`crate::catalogue`]),
//! checked by pricing the catalogue with them, kept in the database, and made the catalogue's
//! costs from then on. A tariff upstream prices only in a currency the catalogue has no rate
//! for refuses the whole refresh, naming the currencies: the partner's currency never changes
//! behind its back.

use std::sync::Arc;

use serde::Serialize;

use super::placement::journaled;
use super::store::{Backend, CostStore, StoreError};
use crate::bindings::types::OrderError;
use crate::catalogue::{Outcome, TariffReport};
use crate::convert::{order_error_message, upstream_prices};
use crate::reseller::Reseller;
use crate::runtime::Fault;

/// The result of fetching upstream's prices.
#[derive(Clone, Debug, Serialize)]
pub struct PriceRefresh {
    /// The upstream costs stored (one per tariff, period and currency).
    pub costs: usize,
    /// The catalogue's modules whose costs changed to upstream's.
    pub modules_updated: usize,
    /// Tariffs upstream priced that the catalogue does not have (`reseller prices import`
    /// writes catalogue entries for them).
    pub unknown_tariffs: Vec<u64>,
    /// What became of each tariff upstream listed.
    pub tariffs: Vec<TariffReport>,
}

/// Why upstream's prices were not taken.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The plugin, or the host running it, failed.
    #[error(transparent)]
    Fault(Fault),
    /// The hook answered with an error; `not_sent` when its request never left.
    #[error("{message}")]
    Upstream {
        /// Whether nothing reached upstream.
        not_sent: bool,
        /// What happened.
        message: String,
    },
    /// The costs cannot be used: not money, or they cannot price the catalogue.
    #[error("{0}")]
    Unusable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches upstream's prices through `reseller`'s plugin (its upstream calls journaled, with
/// `orders` as for any hook), keeps them in `costs` and applies them.
pub fn refresh(
    reseller: &Reseller,
    store: &Arc<dyn Backend>,
) -> Result<PriceRefresh, RefreshError> {
    let costs: &dyn CostStore = &**store;
    let active = reseller.active();
    let (answer, _) = journaled(&active, store, None, None, |plugin, grants| {
        plugin.upstream_costs(grants)
    });
    let offers = match answer {
        Ok(Ok(offers)) => offers,
        Ok(Err(e)) => {
            return Err(RefreshError::Upstream {
                not_sent: matches!(e, OrderError::NotSent(_)),
                message: order_error_message(&e),
            });
        }
        Err(fault) => return Err(RefreshError::Fault(fault)),
    };
    drop(active);
    let unusable = |e: &dyn std::fmt::Display| {
        RefreshError::Unusable(format!("upstream's prices are not usable: {e}"))
    };
    let prices = upstream_prices(&offers).map_err(|e| unusable(&e))?;
    super::store::check_costs(&prices.costs).map_err(|e| unusable(&e))?;
    let problems = reseller.preview_upstream(&prices).currency_problems();
    if !problems.is_empty() {
        return Err(RefreshError::Unusable(format!(
            "upstream's prices were not taken: {}",
            problems.join("; ")
        )));
    }
    // Applied (and so checked by a price export) first, kept only if that worked: prices that
    // cannot price the catalogue are never stored.
    let applied = reseller.set_upstream(prices.clone()).map_err(|e| {
        RefreshError::Unusable(format!(
            "upstream's prices cannot price the catalogue, so they are not used: {e}"
        ))
    })?;
    costs.replace_upstream(&prices)?;
    let unknown_tariffs: Vec<u64> = applied
        .report
        .iter()
        .filter(|r| r.outcome == Outcome::NotInCatalogue)
        .map(|r| r.tariff_id)
        .collect();
    tracing::info!(
        costs = prices.costs.len(),
        modules_updated = applied.changed,
        "upstream prices refreshed"
    );
    Ok(PriceRefresh {
        costs: prices.costs.len(),
        modules_updated: applied.changed,
        unknown_tariffs,
        tariffs: applied.report,
    })
}
