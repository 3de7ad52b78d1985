//! Upstream's prices: the plugin's `upstream-costs` hook (`pricelist.export` upstream) fetches
//! what upstream charges now; the costs are checked by pricing the catalogue with them, kept in
//! the database, and made the catalogue's costs from then on.

use std::sync::Arc;

use serde::Serialize;

use super::placement::journaled;
use super::store::{CostStore, OrderStore, StoreError};
use crate::bindings::types::OrderError;
use crate::convert::{order_error_message, upstream_costs};
use crate::reseller::Reseller;
use crate::runtime::Fault;

/// The result of fetching upstream's prices.
#[derive(Clone, Debug, Serialize)]
pub struct PriceRefresh {
    /// The upstream costs stored (one per module and period).
    pub costs: usize,
    /// The catalogue's modules whose costs changed to upstream's.
    pub modules_updated: usize,
    /// Modules upstream priced that the catalogue does not have.
    pub unknown_tariffs: Vec<u64>,
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
    orders: &Arc<dyn OrderStore>,
    costs: &dyn CostStore,
) -> Result<PriceRefresh, RefreshError> {
    let active = reseller.active();
    let (answer, _) = journaled(&active, orders, None, |plugin, grants| {
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
    let list = upstream_costs(&offers).map_err(|e| {
        RefreshError::Unusable(format!("the plugin's upstream costs are not usable: {e}"))
    })?;
    super::store::check_costs(&list).map_err(|e| {
        RefreshError::Unusable(format!("the plugin's upstream costs are not usable: {e}"))
    })?;
    let mut unknown_tariffs: Vec<u64> = offers
        .iter()
        .map(|o| o.tariff_id)
        .filter(|&t| active.config().module(t).is_none())
        .collect();
    drop(active);
    unknown_tariffs.sort_unstable();
    unknown_tariffs.dedup();
    // Applied (and so checked by a price export) first, kept only if that worked: costs that
    // cannot price are never stored.
    let modules_updated = reseller.set_upstream_costs(list.clone()).map_err(|e| {
        RefreshError::Unusable(format!(
            "upstream's costs cannot price the catalogue, so they are not used: {e}"
        ))
    })?;
    costs.replace_upstream_costs(&list)?;
    tracing::info!(
        costs = list.len(),
        modules_updated,
        "upstream prices refreshed"
    );
    Ok(PriceRefresh {
        costs: list.len(),
        modules_updated,
        unknown_tariffs,
    })
}
