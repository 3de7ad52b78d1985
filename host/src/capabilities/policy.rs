//! `billing:reseller/policy` as a protocol component imports it: the partner's pricing policy,
//! joined to the protocol by the host.
//!
//! The host answers the protocol's call with the prices of the policy component configured for
//! it ([`PolicyLink`]), which runs in a store of its own with its own limits. A policy is a pure
//! function of the offers, the settings and the day, so its answers are kept: the policy runs
//! once per catalogue version and day, whatever the number of price lists rendered. A policy
//! that fails (a trap, a limit) fails the protocol's call with that fault, blamed on the policy.
//! Every answer the protocol gets is also offered to the candidate policy's shadow runs, when
//! one is configured (an [`Observer`]: the shadow runs of `crate::shadow`).

use std::sync::{Arc, Mutex, PoisonError};

use super::Budget;
use crate::bindings::policy::{Host, OfferPrices};
use crate::bindings::types::{Date, Offer, PricingError};
use crate::runtime::{Fault, LoadedPolicy};

/// A policy failed while a protocol asked it for prices: the partner's policy is to blame.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the pricing policy failed: {0}")]
pub struct PolicyFault(pub Fault);

/// What a policy answered: prices, or its refusal.
pub type Priced = Result<Vec<OfferPrices>, PricingError>;

/// How many distinct inputs' answers are kept: the catalogue of the configuration in force, and
/// a few more (another day, a query that priced a subset).
const KEPT: usize = 4;

/// What watches a live policy's answers: a candidate's shadow runs.
pub trait Observer: Send + Sync {
    /// The policy answered `live` to `offers` with `settings` on `today`. Must not block.
    fn offer(&self, offers: &[Offer], settings: &str, today: Date, live: &[OfferPrices]);
}

/// A policy component joined to a protocol, and the answers it gave.
pub struct PolicyLink {
    policy: Arc<LoadedPolicy>,
    kept: Mutex<Vec<(Input, Arc<Priced>)>>,
    shadow: Option<Arc<dyn Observer>>,
}

/// What a policy prices.
struct Input {
    offers: Vec<Offer>,
    settings: String,
    today: Date,
}

impl PolicyLink {
    /// Joins `policy`.
    pub fn new(policy: Arc<LoadedPolicy>) -> Self {
        PolicyLink {
            policy,
            kept: Mutex::new(Vec::new()),
            shadow: None,
        }
    }

    /// The same, offering every answer of the policy to `shadow` (a candidate's shadow runs).
    pub fn with_shadow(self, shadow: Option<Arc<dyn Observer>>) -> Self {
        PolicyLink { shadow, ..self }
    }

    /// The joined policy.
    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    /// The policy's prices of `offers`: kept ones when it priced the same before, otherwise it
    /// runs now (a fault is not kept: the next call tries again).
    pub fn price(
        &self,
        offers: Vec<Offer>,
        settings: String,
        today: Date,
    ) -> Result<Priced, Fault> {
        self.price_shared(&offers, &settings, today)
            .map(|priced| (*priced).clone())
    }

    /// The same, without copying the input unless the policy runs, and sharing the answer.
    pub fn price_shared(
        &self,
        offers: &[Offer],
        settings: &str,
        today: Date,
    ) -> Result<Arc<Priced>, Fault> {
        let kept = self
            .lock()
            .iter()
            .find(|(i, _)| i.today == today && i.settings == settings && i.offers == offers)
            .map(|(_, priced)| priced.clone());
        let priced = match kept {
            Some(priced) => priced,
            None => {
                let priced = Arc::new(self.policy.price(offers, settings, today).0?);
                let input = Input {
                    offers: offers.to_vec(),
                    settings: settings.to_owned(),
                    today,
                };
                let mut kept = self.lock();
                if kept.len() >= KEPT {
                    drop(kept.remove(0));
                }
                kept.push((input, priced.clone()));
                priced
            }
        };
        if let (Some(shadow), Ok(prices)) = (&self.shadow, &*priced) {
            shadow.offer(offers, settings, today, prices);
        }
        Ok(priced)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Input, Arc<Priced>)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One protocol call's access to its policy.
pub struct PolicyCap {
    link: Option<Arc<PolicyLink>>,
    budget: Arc<Budget>,
}

impl PolicyCap {
    /// Access to `link` (none for a whole plugin), counted against `budget`.
    pub fn new(link: Option<Arc<PolicyLink>>, budget: Arc<Budget>) -> Self {
        PolicyCap { link, budget }
    }
}

impl Host for PolicyCap {
    fn price(
        &mut self,
        offers: Vec<Offer>,
        settings: String,
        today: Date,
    ) -> wasmtime::Result<Priced> {
        self.budget.host_call(settings.len())?;
        let Some(link) = &self.link else {
            // A whole plugin never imports the policy: this one is not what it said it was.
            return Ok(Err(PricingError::Other(
                "no pricing policy is joined to this plugin".to_owned(),
            )));
        };
        link.price(offers, settings, today)
            .map_err(|fault| wasmtime::Error::new(PolicyFault(fault)))
    }
}
