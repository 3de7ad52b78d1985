//! The partner's balance upstream: what pays for every order and renewal. Read with the
//! plugin's `balance` hook (read-only), kept in the database with the time it was read, checked
//! against `upstream.balance_alert`, and checked before placing an order it cannot cover.

use serde::Serialize;

use super::events::EventKind;
use super::{DeskError, OrderDesk, UpstreamOutcome};
use super::{Order, placement};
use crate::convert::order_error_message;
use crate::money::{Amount, Money};

/// The balance as last read.
#[derive(Clone, Debug, Serialize)]
pub struct Balance {
    /// What upstream said.
    pub balance: Money,
    /// When it was read, UNIX milliseconds.
    pub read_ms: i64,
    /// The configured alert threshold, if any.
    pub alert_below: Option<Amount>,
    /// Whether the balance is below it.
    pub low: bool,
}

impl OrderDesk {
    /// Reads the partner's balance upstream now, keeps it, and warns (in the log and with a
    /// `balance.low` event, at most once a day) when it is below `upstream.balance_alert`.
    pub fn read_balance(&self) -> Result<Balance, DeskError> {
        let active = self.reseller().active();
        if active.config().upstream.url.is_none() {
            return Err(DeskError::Unavailable(
                "no upstream is configured: there is no balance to read".to_owned(),
            ));
        }
        let (answer, _) = placement::journaled(&active, self.backend(), None, None, |p, g| match p
            .balance(g)
        {
            Some((result, usage)) => (result.map(Some), usage),
            None => (Ok(None), Default::default()),
        });
        let money = match answer {
            Ok(Some(Ok(m))) => {
                Money::from_units(m.units, &m.currency).map_err(|e| DeskError::Upstream {
                    outcome: UpstreamOutcome::Refused,
                    message: format!("the balance upstream gave is unusable: {e}"),
                })?
            }
            Ok(Some(Err(e))) => {
                return Err(DeskError::Upstream {
                    outcome: UpstreamOutcome::Refused,
                    message: order_error_message(&e),
                });
            }
            Ok(None) => {
                return Err(DeskError::Unavailable(
                    "the plugin was built against billing:reseller@0.1.0, which cannot read the \
                     balance"
                        .to_owned(),
                ));
            }
            Err(fault) => return Err(DeskError::from_fault(fault)),
        };
        self.backend().record_balance(&money)?;
        crate::metrics::global()
            .partner_balance(&money, time::OffsetDateTime::now_utc().unix_timestamp());
        let balance = self
            .stored_balance()?
            .ok_or_else(|| DeskError::Internal("the balance just kept is gone".to_owned()))?;
        if balance.low {
            tracing::warn!(
                balance = %balance.balance,
                "the upstream balance is below upstream.balance_alert: top it up, or orders \
                 and renewals will wait"
            );
            let day = time::OffsetDateTime::now_utc().date();
            let data = serde_json::json!({
                "balance": balance.balance,
                "alert_below": balance.alert_below,
            });
            self.backend().emit(
                EventKind::BalanceLow,
                None,
                data,
                Some(&format!("balance.low:{day}")),
            )?;
        }
        Ok(balance)
    }

    /// The balance last read, if ever.
    pub fn stored_balance(&self) -> Result<Option<Balance>, DeskError> {
        let alert = self.reseller().active().config().upstream.balance_alert;
        Ok(self.backend().balance()?.map(|(balance, read_ms)| Balance {
            low: alert.is_some_and(|a| balance.amount < a),
            alert_below: alert,
            balance,
            read_ms,
        }))
    }

    /// Why `order` should wait rather than be sent, judged by `balance`: the upstream cost of
    /// its tariff and period is known in the balance's currency and exceeds it.
    pub(crate) fn short_of(&self, order: &Order, balance: &Money) -> Option<String> {
        let active = self.reseller().active();
        let config = active.config();
        let module = config.module(order.tariff_id)?;
        let cost = module.cost.get(order.period)?;
        let currency = config.currency_of(module);
        (currency == &balance.currency && cost > balance.amount).then(|| {
            format!(
                "the upstream balance ({balance}) cannot cover this order ({cost} {currency}): \
                 it waits until the balance is topped up"
            )
        })
    }
}
