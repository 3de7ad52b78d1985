//! `billing:reseller/calendar`: today's date in UTC, the only notion of time a plugin gets.
//! A day, not a clock: a price list may follow the date but stays the same all day, so the host
//! can keep it (its answer cache is keyed by the day).

use super::Budget;
use crate::bindings::{calendar::Host, types::Date};
use crate::convert::wit_date;

/// One call's calendar: the day the call started.
pub struct CalendarCap {
    today: time::Date,
    budget: std::sync::Arc<Budget>,
}

impl CalendarCap {
    /// A calendar that says `today`, counting each read against `budget`.
    pub fn new(today: time::Date, budget: std::sync::Arc<Budget>) -> Self {
        CalendarCap { today, budget }
    }
}

impl Host for CalendarCap {
    fn today(&mut self) -> wasmtime::Result<Date> {
        self.budget.host_call(0)?;
        Ok(wit_date(self.today))
    }
}

/// Today in UTC.
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn says_the_day_it_was_given() {
        let day = time::macros::date!(2027 - 02 - 28);
        let mut cap = CalendarCap::new(day, Budget::new(Limits::default()));
        let d = cap.today().expect("within the budget");
        assert_eq!((d.year, d.month, d.day), (2027, 2, 28));
    }
}
