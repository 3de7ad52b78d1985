//! `billing:reseller/catalogue`: the partner's catalogue and pricing settings, read-only.

use std::sync::Arc;

use crate::bindings::catalogue::{Host, Snapshot};

/// One call's view of the catalogue.
pub struct CatalogueCap {
    snapshot: Arc<Snapshot>,
}

impl CatalogueCap {
    /// Grants `snapshot`.
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        CatalogueCap { snapshot }
    }
}

impl Host for CatalogueCap {
    fn get(&mut self) -> Snapshot {
        Snapshot::clone(&self.snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_granted_snapshot() {
        let snapshot = Snapshot {
            version: 7,
            offers: Vec::new(),
            settings: "{}".to_owned(),
        };
        let mut cap = CatalogueCap::new(Arc::new(snapshot));
        let got = cap.get();
        assert_eq!(got.version, 7);
        assert_eq!(got.settings, "{}");
    }
}
