//! The desk's background work while a server runs: placing paid orders as they come, with
//! retries; fetching upstream's prices on a schedule; the module's life (renewals due, lapses,
//! status sync, automatic reconciliation of doubts, the balance, unpaid orders that expire);
//! and delivering events to the billing system's webhook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::desk::OrderDesk;
use super::placement::Attempt;
use super::{Order, OrderId};
use crate::config::{OrderMode, OrdersConfig};

/// Places paid orders as they come, until the process ends: woken by the desk's `mark_paid`
/// and `retry`, and every `orders.poll_ms` for orders paid elsewhere (another process on the
/// same database, an order whose retry is due). Orders whose request never left are tried
/// again after `retry_initial_ms`, doubling up to `retry_max_ms`, and marked failed after
/// `max_attempts`. Does nothing in manual mode.
///
/// The desk must be the placer ([`OrderDesk::become_placer`]); otherwise this returns at once.
/// On a database several hosts place from, every host's worker runs: each order is claimed by
/// one of them, and each also settles the claims of a host that stopped (their lease ran out),
/// every quarter of the lease.
pub async fn run(desk: Arc<OrderDesk>) {
    if !desk.is_placer() {
        tracing::error!("the placement worker needs the placer lock; no order is placed");
        return;
    }
    // Order → (not before, attempts whose request never left, in a row).
    let mut waiting: HashMap<OrderId, (Instant, u32)> = HashMap::new();
    let mut swept = Instant::now();
    loop {
        let settings = desk.reseller().active().config().orders.clone();
        if let Some(lease) = desk.backend().claims_expire()
            && swept.elapsed() >= (lease / 4).max(Duration::from_millis(250))
        {
            // Several hosts place from this database: settle the claims of one that stopped.
            settle_expired(&desk).await;
            swept = Instant::now();
        }
        if desk.mode() == OrderMode::Automatic {
            let paid = paid_orders(&desk).await;
            if !paid.is_empty() {
                waiting.retain(|id, _| paid.iter().any(|o| &o.id == id));
            }
            for order in paid {
                attempt(&desk, &settings, &mut waiting, order).await;
            }
        }
        desk.wait_for_work(Duration::from_millis(settings.poll_ms))
            .await;
    }
}

/// Settles the claims of hosts that stopped, on a blocking thread; an error is logged.
async fn settle_expired(desk: &Arc<OrderDesk>) {
    let desk = desk.clone();
    match tokio::task::spawn_blocking(move || desk.settle_expired_claims()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("settling the claims of stopped hosts: {e}"),
        Err(e) => tracing::error!("the claim settling task failed: {e}"),
    }
}

/// One attempt for a paid order, unless its retry is not due yet.
async fn attempt(
    desk: &Arc<OrderDesk>,
    settings: &OrdersConfig,
    waiting: &mut HashMap<OrderId, (Instant, u32)>,
    order: Order,
) {
    let (not_before, tries) = waiting
        .get(&order.id)
        .copied()
        .unwrap_or((Instant::now(), 0));
    if not_before > Instant::now() {
        return;
    }
    let tries = tries.saturating_add(1);
    let last_chance = tries >= settings.max_attempts;
    let task = {
        let desk = desk.clone();
        let id = order.id.clone();
        tokio::task::spawn_blocking(move || desk.attempt(&id, "worker", last_chance))
    };
    match task.await {
        Ok(Ok(Attempt::Settled { retry: true, .. })) => {
            let delay = backoff(settings, tries);
            tracing::info!(order = %order.id, attempt = tries, ?delay, "not sent; will retry");
            waiting.insert(order.id, (later(delay), tries));
        }
        Ok(Ok(Attempt::Settled { order, .. })) => {
            tracing::info!(order = %order.id, state = %order.state, "placement settled");
            waiting.remove(&order.id);
        }
        Ok(Ok(Attempt::NotClaimed(_))) => {
            waiting.remove(&order.id);
        }
        Ok(Ok(Attempt::Waiting(_))) => {
            // Not an attempt: look again in a while, without counting it.
            let delay = Duration::from_millis(
                settings
                    .poll_ms
                    .saturating_mul(10)
                    .clamp(1_000, HOLD_RECHECK_MS),
            );
            waiting.insert(order.id, (later(delay), tries.saturating_sub(1)));
        }
        Ok(Err(e)) => {
            tracing::error!(order = %order.id, "placement: {e}");
            waiting.insert(order.id, (later(backoff(settings, tries)), tries));
        }
        Err(e) => tracing::error!(order = %order.id, "the placement task failed: {e}"),
    }
}

/// How often an order that waits (for its fields, for the balance) is looked at again.
const HOLD_RECHECK_MS: u64 = 30_000;

/// The module's life while the server runs, each at its own pace (read from the configuration
/// at each round): renewal-due and lapse events and the lapse policy, the status sync and the
/// automatic reconciliation of doubts (automatic mode), the balance, unpaid orders that
/// expire, and the outbox's housekeeping. Only the placer runs it; with several hosts on one
/// database, each round of each task is claimed in the database by one of them.
pub async fn run_lifecycle(desk: Arc<OrderDesk>) {
    if !desk.is_placer() {
        return;
    }
    let mut last: HashMap<&'static str, Instant> = HashMap::new();
    loop {
        let config = desk.reseller().active().config().clone();
        let due = |last: &mut HashMap<&'static str, Instant>, task: &'static str, seconds: u64| {
            if seconds == 0 {
                return false;
            }
            let every = Duration::from_secs(seconds);
            let go = last.get(task).is_none_or(|t| t.elapsed() >= every);
            if go {
                last.insert(task, Instant::now());
            }
            go
        };
        let automatic = config.order_mode() == OrderMode::Automatic;
        let pace = Duration::from_millis(config.orders.poll_ms.clamp(200, 60_000));
        // Each task with how often it runs.
        let mut tasks: Vec<(&'static str, Duration)> = vec![("lifecycle", pace)];
        let sync_every = config.orders.sync_minutes.saturating_mul(60);
        if automatic && due(&mut last, "sync", sync_every) {
            tasks.push(("sync", Duration::from_secs(sync_every)));
        }
        let doubts_every = config.orders.reconcile_after_s;
        if automatic && due(&mut last, "doubts", doubts_every) {
            tasks.push(("doubts", Duration::from_secs(doubts_every)));
        }
        let balance_every = config.upstream.balance_minutes.saturating_mul(60);
        if automatic && due(&mut last, "balance", balance_every) {
            tasks.push(("balance", Duration::from_secs(balance_every)));
        }
        for (task, every) in tasks {
            let desk = desk.clone();
            let ran = tokio::task::spawn_blocking(move || {
                // Hosts sharing the database take turns: one of them runs each round.
                if !desk.backend().claim_scheduled(task, every)? {
                    return Ok(());
                }
                match task {
                    "sync" => desk.sync_with_upstream(false).map(drop),
                    "doubts" => desk.sync_with_upstream(true).map(drop),
                    "balance" => desk.read_balance().map(drop),
                    _ => desk.lifecycle_pass().map(drop),
                }
            })
            .await;
            match ran {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(task, "scheduled work: {e}"),
                Err(e) => tracing::error!(task, "the scheduled task failed: {e}"),
            }
        }
        tokio::time::sleep(pace).await;
    }
}

/// Delivers the outbox's events to the configured webhook, at least once each, with backoff,
/// until the process ends. Several hosts on one database share the work: each event is claimed
/// for a lease before it is sent. Delivery is blocking I/O on a thread of its own, outside the
/// runtime's blocking pool, so that a shutdown never waits for it: an event whose delivery is
/// cut short is delivered again once its lease runs out.
pub fn run_webhooks(desk: Arc<OrderDesk>) {
    let spawned = std::thread::Builder::new()
        .name("webhooks".to_owned())
        .spawn(move || deliver_forever(&desk));
    if let Err(e) = spawned {
        tracing::error!("cannot start the event delivery thread: {e}");
    }
}

fn deliver_forever(desk: &OrderDesk) {
    // The webhook, rebuilt when its configuration changes (a reload).
    let mut current: Option<(
        crate::config::EventsConfig,
        Option<crate::orders::events::Webhook>,
    )> = None;
    loop {
        let config = desk.reseller().active().config().events.clone();
        let same = current.as_ref().is_some_and(|(c, _)| {
            c.webhook_url == config.webhook_url
                && c.secret == config.secret
                && c.secret_env == config.secret_env
                && c.timeout_ms == config.timeout_ms
        });
        if !same {
            let hook = config.webhook().unwrap_or_else(|e| {
                tracing::error!("events.webhook_url cannot be used: {e}");
                None
            });
            current = Some((config.clone(), hook));
        }
        let pause = Duration::from_millis(config.poll_ms.clamp(50, 60_000));
        let Some((_, Some(hook))) = &current else {
            std::thread::sleep(pause);
            continue;
        };
        match desk.deliver_events(hook) {
            Ok(0) => std::thread::sleep(pause),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("delivering events: {e}");
                std::thread::sleep(pause);
            }
        }
    }
}

/// Fetches upstream's prices every `upstream.prices_refresh_minutes` (read at each round),
/// until the process ends; does nothing while it is 0. With several hosts on one database, it
/// also takes up, every [`FOLLOW_PRICES`], the prices another host fetched and stored, so that
/// every host behind the load balancer prices alike.
pub async fn run_price_refresh(desk: Arc<OrderDesk>) {
    let mut fetched = Instant::now();
    loop {
        let follow = desk.shares_placement();
        tokio::time::sleep(if follow {
            FOLLOW_PRICES
        } else {
            Duration::from_secs(60)
        })
        .await;
        if follow {
            let task = {
                let desk = desk.clone();
                tokio::task::spawn_blocking(move || desk.adopt_stored_prices())
            };
            match task.await {
                Ok(Ok(true)) => tracing::info!("took up the upstream prices another host fetched"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!("the stored upstream prices: {e}"),
                Err(e) => tracing::error!("the stored price task failed: {e}"),
            }
        }
        let minutes = desk
            .reseller()
            .active()
            .config()
            .upstream
            .prices_refresh_minutes;
        if minutes == 0 || fetched.elapsed() < Duration::from_secs(minutes.saturating_mul(60)) {
            continue;
        }
        fetched = Instant::now();
        let task = {
            let desk = desk.clone();
            tokio::task::spawn_blocking(move || desk.refresh_prices())
        };
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("scheduled upstream price refresh: {e}"),
            Err(e) => tracing::error!("the price refresh task failed: {e}"),
        }
    }
}

/// How often a host sharing its database looks for prices another host stored.
const FOLLOW_PRICES: Duration = Duration::from_secs(10);

/// The paid orders, listed on a blocking thread; none (with the error logged) when that fails.
async fn paid_orders(desk: &Arc<OrderDesk>) -> Vec<Order> {
    let desk = desk.clone();
    match tokio::task::spawn_blocking(move || desk.paid_orders()).await {
        Ok(Ok(orders)) => orders,
        Ok(Err(e)) => {
            tracing::error!("cannot list paid orders: {e}");
            Vec::new()
        }
        Err(e) => {
            tracing::error!("the order listing task failed: {e}");
            Vec::new()
        }
    }
}

/// `delay` from now, or as late as the clock goes.
fn later(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or(now + Duration::from_secs(86_400))
}

/// The wait before attempt `tries + 1`.
fn backoff(settings: &OrdersConfig, tries: u32) -> Duration {
    let factor = 1u64 << tries.saturating_sub(1).min(20);
    Duration::from_millis(
        settings
            .retry_initial_ms
            .saturating_mul(factor)
            .min(settings.retry_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = OrdersConfig {
            retry_initial_ms: 1000,
            retry_max_ms: 5000,
            ..OrdersConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|t| u64::try_from(backoff(&settings, t).as_millis()).unwrap_or(0))
            .collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(&settings, u32::MAX), Duration::from_millis(5000));
    }
}
