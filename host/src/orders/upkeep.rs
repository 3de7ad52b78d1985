//! The desk's scheduled upkeep, one pass at a time (the worker in [`super::worker`] paces
//! them): renewal-due and lapse events and the lapse policy, unpaid orders that expire, the
//! outbox's housekeeping, the status sync with upstream, and event delivery.

use serde::Serialize;

use super::events::{EventKind, Webhook, retry_delay};
use super::reconcile::{Options, Report};
use super::store::now_ms;
use super::{Change, ListFilter, Order, OrderState};
use super::{DeskError, OrderDesk};
use crate::config::Lapse;
use crate::orders::store::MAX_LIST_LIMIT;

const DAY_MS: i64 = 86_400_000;

/// What one upkeep pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Upkeep {
    /// `renewal.due` events recorded.
    pub renewals_due: usize,
    /// Modules found past their expiry, with what the lapse policy did.
    pub lapsed: Vec<String>,
    /// Unpaid orders cancelled for their age.
    pub unpaid_expired: usize,
    /// Abandoned orders and old events deleted.
    pub purged: u64,
}

impl OrderDesk {
    /// Placed and suspended orders expiring within `days`, soonest first.
    pub fn renewals_due(&self, days: u32) -> Result<Vec<Order>, DeskError> {
        let by = time::OffsetDateTime::now_utc().date() + time::Duration::days(i64::from(days));
        let mut due = self.expiring(by)?;
        due.sort_by_key(|o| o.expires_on);
        Ok(due)
    }

    /// One upkeep pass; see the [module documentation](self).
    pub fn lifecycle_pass(&self) -> Result<Upkeep, DeskError> {
        let active = self.reseller().active();
        let config = active.config();
        let orders = &config.orders;
        let today = time::OffsetDateTime::now_utc().date();
        let mut done = Upkeep::default();
        for order in
            self.expiring(today + time::Duration::days(i64::from(orders.renewal_notice_days)))?
        {
            let Some(expires) = order.expires_on else {
                continue;
            };
            if expires >= today {
                let key = format!("renewal.due:{}:{expires}", order.id);
                let data = serde_json::json!({ "order": order, "expires_at": crate::dates::text(expires) });
                if self
                    .backend()
                    .emit(EventKind::RenewalDue, Some(&order.id), data, Some(&key))?
                    .is_some()
                {
                    done.renewals_due += 1;
                }
                continue;
            }
            let grace_end = expires + time::Duration::days(i64::from(orders.lapse_grace_days));
            if today <= grace_end {
                continue;
            }
            if let Some(what) = self.lapse(&order, expires, orders.lapse)? {
                done.lapsed.push(format!("{}: {what}", order.id));
            }
        }
        if orders.unpaid_expiry_hours > 0 {
            let cutoff =
                now_ms() - i64::try_from(orders.unpaid_expiry_hours).unwrap_or(0) * 3_600_000;
            let old = self.list(&ListFilter {
                state: Some(OrderState::New),
                created_to_ms: Some(cutoff),
                limit: MAX_LIST_LIMIT,
                ..ListFilter::default()
            })?;
            for order in old {
                let change = Change::by("expiry")
                    .with_note(format!("unpaid for {} hours", orders.unpaid_expiry_hours));
                match self.backend().transition(
                    &order.id,
                    OrderState::New,
                    OrderState::Cancelled,
                    change,
                ) {
                    Ok(_) => done.unpaid_expired += 1,
                    // Paid meanwhile: it stays.
                    Err(super::StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if orders.purge_after_days > 0 {
            let cutoff = now_ms() - i64::try_from(orders.purge_after_days).unwrap_or(0) * DAY_MS;
            done.purged += self.backend().purge_abandoned(cutoff)?;
        }
        let events = &config.events;
        if events.keep_days > 0 {
            let cutoff = now_ms() - i64::try_from(events.keep_days).unwrap_or(0) * DAY_MS;
            let undelivered_too = events.webhook_url.is_none();
            done.purged += self.backend().purge_events(cutoff, undelivered_too)?;
        }
        Ok(done)
    }

    /// Placed and suspended orders expiring by `by`.
    fn expiring(&self, by: time::Date) -> Result<Vec<Order>, DeskError> {
        let mut found = Vec::new();
        for state in [OrderState::Placed, OrderState::Suspended] {
            found.extend(self.list(&ListFilter {
                state: Some(state),
                expires_by: Some(by),
                limit: MAX_LIST_LIMIT,
                ..ListFilter::default()
            })?);
        }
        Ok(found)
    }

    /// Applies the lapse policy to a module past its expiry (and grace), once per expiry date.
    fn lapse(
        &self,
        order: &Order,
        expires: time::Date,
        policy: Lapse,
    ) -> Result<Option<String>, DeskError> {
        let key = format!("lapse-{expires}");
        let data = serde_json::json!({ "order": order, "expires_at": crate::dates::text(expires), "policy": policy });
        let first = self
            .backend()
            .emit(
                EventKind::Lapsed,
                Some(&order.id),
                data,
                Some(&format!("lapsed:{}:{expires}", order.id)),
            )?
            .is_some();
        let outcome = match policy {
            Lapse::Expire if first => {
                tracing::warn!(order = %order.id, %expires, "not renewed by its expiry: left to expire upstream");
                Some("left to expire".to_owned())
            }
            Lapse::Expire => None,
            Lapse::Suspend if order.state == OrderState::Placed => {
                Some(match self.suspend(&order.id, Some(&key), "lapse") {
                    Ok(p) => format!("suspended (operation {})", p.operation.id),
                    Err(e) => format!("suspend: {e}"),
                })
            }
            Lapse::Suspend => None,
            Lapse::Remove => Some(match self.remove(&order.id, Some(&key), "lapse") {
                Ok(p) => format!("removed (operation {})", p.operation.id),
                Err(e) => format!("remove: {e}"),
            }),
        };
        if let Some(what) = &outcome {
            tracing::info!(order = %order.id, "lapse: {what}");
        }
        Ok(outcome)
    }

    /// The status sync: a reconciliation that applies only what is unambiguous (expiry dates,
    /// statuses). With `doubts`, it runs only when an order or an operation has been in doubt
    /// for `orders.reconcile_after_s`, and also places in-doubt orders found under their
    /// `remoteid`.
    pub fn sync_with_upstream(&self, doubts: bool) -> Result<Option<Report>, DeskError> {
        if doubts {
            let seconds = self.reseller().active().config().orders.reconcile_after_s;
            let cutoff = now_ms() - i64::try_from(seconds).unwrap_or(0) * 1000;
            let old_doubt = self
                .list(&ListFilter {
                    state: Some(OrderState::InDoubt),
                    limit: MAX_LIST_LIMIT,
                    ..ListFilter::default()
                })?
                .iter()
                .any(|o| o.updated_ms <= cutoff);
            let op_doubt = self
                .backend()
                .operations_in(super::operation::OperationState::InDoubt)?
                .iter()
                .any(|op| op.updated_ms <= cutoff);
            if !old_doubt && !op_doubt {
                return Ok(None);
            }
        }
        let options = Options {
            apply: false,
            import: false,
            unambiguous_only: true,
            resolve_doubts: doubts,
        };
        let report = self.reconcile(options, "reconciliation")?;
        for d in &report.in_doubt {
            if let Some(r) = &d.resolved {
                tracing::info!(order = %d.order_id, "in doubt, {}: {r}", d.evidence);
            }
        }
        Ok(Some(report))
    }

    /// Delivers the events that are due to `hook`; returns how many were delivered.
    pub fn deliver_events(&self, hook: &Webhook) -> Result<usize, DeskError> {
        // Held a little longer than one delivery may take, so that a deliverer that died
        // holds nothing for long.
        let timeout = self.reseller().active().config().events.timeout_ms;
        let lease_ms = i64::try_from(timeout.saturating_add(2_000)).unwrap_or(i64::MAX);
        let batch = self.backend().claim_deliveries(now_ms(), lease_ms, 32)?;
        let mut delivered = 0;
        for event in batch {
            match hook.deliver(&event) {
                Ok(()) => {
                    self.backend().delivered(event.id)?;
                    crate::metrics::global().webhook_delivery("delivered");
                    delivered += 1;
                }
                Err(e) => {
                    let attempts = self.backend().delivery_attempts(event.id)?;
                    let wait = retry_delay(attempts);
                    let next = now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                    tracing::warn!(event = event.id, kind = %event.kind, ?wait, "webhook: {e}");
                    crate::metrics::global().webhook_delivery("failed");
                    self.backend()
                        .delivery_failed(event.id, next, &e.to_string())?;
                }
            }
        }
        Ok(delivered)
    }
}
