//! `billing:reseller/catalogue`: the partner's catalogue and pricing settings, read-only.

use std::sync::Arc;

use super::Budget;
use crate::bindings::catalogue::{Host, Snapshot};

/// One call's view of the catalogue.
pub struct CatalogueCap {
    snapshot: Arc<Snapshot>,
    budget: Arc<Budget>,
}

impl CatalogueCap {
    /// Grants `snapshot`, counting each read against `budget`.
    pub fn new(snapshot: Arc<Snapshot>, budget: Arc<Budget>) -> Self {
        CatalogueCap { snapshot, budget }
    }
}

impl Host for CatalogueCap {
    fn get(&mut self) -> wasmtime::Result<Snapshot> {
        self.budget.host_call(0)?;
        Ok(Snapshot::clone(&self.snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Limit, Limits};

    #[test]
    fn hands_out_the_granted_snapshot_within_the_budget() {
        let snapshot = Snapshot {
            version: 7,
            offers: Vec::new(),
            settings: "{}".to_owned(),
        };
        let budget = Budget::new(Limits {
            hostcalls: 1,
            ..Limits::default()
        });
        let mut cap = CatalogueCap::new(Arc::new(snapshot), budget);
        let got = cap.get().expect("first read");
        assert_eq!(got.version, 7);
        assert_eq!(got.settings, "{}");
        let err = cap.get().expect_err("over the budget");
        assert_eq!(
            err.downcast_ref::<crate::limits::LimitHit>()
                .map(|h| h.limit),
            Some(Limit::Hostcalls)
        );
    }
}
