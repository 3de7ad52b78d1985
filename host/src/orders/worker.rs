//! The desk's background work while a server runs: placing paid orders as they come, with
//! retries, and fetching upstream's prices on a schedule.

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
pub async fn run(desk: Arc<OrderDesk>) {
    if !desk.is_placer() {
        tracing::error!("the placement worker needs the placer lock; no order is placed");
        return;
    }
    // Order → (not before, attempts whose request never left, in a row).
    let mut waiting: HashMap<OrderId, (Instant, u32)> = HashMap::new();
    loop {
        let settings = desk.reseller().active().config().orders.clone();
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
        Ok(Err(e)) => {
            tracing::error!(order = %order.id, "placement: {e}");
            waiting.insert(order.id, (later(backoff(settings, tries)), tries));
        }
        Err(e) => tracing::error!(order = %order.id, "the placement task failed: {e}"),
    }
}

/// Fetches upstream's prices every `upstream.prices_refresh_minutes` (read at each round),
/// until the process ends; does nothing while it is 0.
pub async fn run_price_refresh(desk: Arc<OrderDesk>) {
    loop {
        let minutes = desk
            .reseller()
            .active()
            .config()
            .upstream
            .prices_refresh_minutes;
        if minutes == 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs(minutes.saturating_mul(60))).await;
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
