//! The simulated clock: moving the day, and what happens to a service when the day reaches its
//! expiry. With `autoprolong` it is renewed from the balance for that period, as many times as
//! the move needs; without it, or when the balance is short, it is suspended (`3_autosuspend`).

use serde::Serialize;

use crate::date::Date;
use crate::state::{ServiceStatus, State};

/// What a move of the clock did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClockReport {
    /// The day now.
    pub today: Date,
    /// The services renewed automatically, once per renewal (an ID repeats when the move
    /// spanned several periods), in the order they happened.
    pub renewed: Vec<u64>,
    /// The services suspended at expiry, in the order they happened.
    pub suspended: Vec<u64>,
}

/// Sets the day to `today` (later or earlier) and deals with every active service whose expiry
/// it has reached. Moving back only changes the day.
pub(crate) fn set_today(state: &mut State, today: Date) -> ClockReport {
    state.today = today;
    let mut report = ClockReport {
        today,
        renewed: Vec::new(),
        suspended: Vec::new(),
    };
    for index in 0..state.services.len() {
        settle(state, index, &mut report);
    }
    report
}

/// Renews or suspends service `index` until it is no longer active and expired.
fn settle(state: &mut State, index: usize, report: &mut ClockReport) {
    let today = state.today;
    loop {
        let Some(service) = state.services.get(index) else {
            return;
        };
        if service.status != ServiceStatus::Active || !service.expired_on(today) {
            return;
        }
        // A period of zero months would renew forever: only a state built in Rust can hold one.
        let renewal = service.autoprolong.filter(|&m| m > 0).and_then(|months| {
            let cost = state.tariff(service.tariff)?.cost(months)?;
            let balance = state.account.balance.checked_sub(cost)?;
            let expires = service.expires.add_months(u32::from(months)).ok()?;
            Some((months, balance, expires))
        });
        let id = service.id;
        let Some(service) = state.services.get_mut(index) else {
            return;
        };
        match renewal {
            Some((months, balance, expires)) => {
                service.expires = expires;
                service.renewals.push(months);
                state.account.balance = balance;
                report.renewed.push(id);
                tracing::info!(service = id, months, %expires, "renewed automatically");
            }
            None => {
                service.status = ServiceStatus::Expired;
                report.suspended.push(id);
                tracing::info!(service = id, expired = %service.expires, "suspended at expiry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Service;

    fn date(s: &str) -> Date {
        s.parse().expect("a date")
    }

    fn service(id: u64, tariff: u64, autoprolong: Option<u16>, expires: &str) -> Service {
        Service {
            id,
            licence: "184431".to_owned(),
            tariff,
            period: 1,
            autoprolong,
            renewals: Vec::new(),
            status: ServiceStatus::Active,
            expires: date(expires),
            remoteid: None,
            fields: Default::default(),
        }
    }

    #[test]
    fn expiry_suspends_or_renews_from_the_balance() {
        let mut state = State {
            services: vec![
                service(1, 55361, None, "2027-01-01"),
                service(2, 23221, Some(1), "2027-01-01"),
                service(3, 55361, Some(1), "2027-03-01"),
            ],
            ..State::default()
        };
        let report = set_today(&mut state, date("2027-01-01"));
        assert_eq!(
            report,
            ClockReport {
                today: date("2027-01-01"),
                renewed: vec![2],
                suspended: vec![1],
            }
        );
        assert_eq!(state.services[0].status, ServiceStatus::Expired);
        assert_eq!(state.services[1].expires, date("2027-02-01"));
        assert_eq!(state.services[1].renewals, [1]);
        assert_eq!(state.account.balance.to_string(), "90.0000");
        assert_eq!(state.services[2].status, ServiceStatus::Active);
    }

    #[test]
    fn a_long_move_renews_every_period_until_the_money_runs_out() {
        let mut state = State::default();
        state.account.balance = "25.0000".parse().expect("amount");
        state.services = vec![service(7, 23221, Some(1), "2027-01-01")];
        let report = set_today(&mut state, date("2027-06-15"));
        assert_eq!(report.renewed, [7, 7]);
        assert_eq!(report.suspended, [7]);
        assert_eq!(state.services[0].expires, date("2027-03-01"));
        assert_eq!(state.services[0].status, ServiceStatus::Expired);
        assert_eq!(state.account.balance.to_string(), "5.0000");
    }

    #[test]
    fn suspended_services_and_backward_moves_are_left_alone() {
        let mut state = State::default();
        let mut stopped = service(1, 55361, Some(1), "2027-01-01");
        stopped.status = ServiceStatus::Suspended;
        state.services = vec![stopped, service(2, 55361, None, "2027-01-01")];
        let back = set_today(&mut state, date("2026-01-01"));
        assert!(back.renewed.is_empty() && back.suspended.is_empty());
        let report = set_today(&mut state, date("2028-01-01"));
        assert_eq!(report.suspended, [2]);
        assert_eq!(state.services[0].status, ServiceStatus::Suspended);
        assert_eq!(state.account.balance.to_string(), "100.0000");
    }
}
