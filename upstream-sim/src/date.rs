//! Calendar dates for the simulated clock and the services' expiry: `YYYY-MM-DD`, as
//! BILLmanager writes them, with the day and month arithmetic a billing period needs.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A day of the proleptic Gregorian calendar, from `0001-01-01` to `9999-12-31`.
///
/// Written and read as `YYYY-MM-DD` (exactly ten characters), in state files, the control API
/// and answers alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    // Field order makes the derived ordering the calendar's.
    year: u16,
    month: u8,
    day: u8,
}

/// Why a text or a computation is not a [`Date`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not `YYYY-MM-DD`, or no such day.
    #[error("`{0}` is not a date: `YYYY-MM-DD` is expected")]
    Invalid(String),
    /// Past `9999-12-31` or before `0001-01-01`.
    #[error("the date would leave the years 1 to 9999")]
    OutOfRange,
}

/// Days from 0000-03-01 to 1970-01-01 in the algorithm below.
const UNIX_EPOCH_SHIFT: i64 = 719_468;
/// Days in a 400-year era.
const ERA_DAYS: i64 = 146_097;

impl Date {
    /// The first day the simulator knows.
    pub const MIN: Date = Date {
        year: 1,
        month: 1,
        day: 1,
    };

    /// The last day the simulator knows.
    pub const MAX: Date = Date {
        year: 9999,
        month: 12,
        day: 31,
    };

    /// The date `year-month-day`, if there is such a day between the years 1 and 9999.
    pub const fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let valid = year >= 1
            && year <= 9999
            && month >= 1
            && month <= 12
            && day >= 1
            && day <= days_in_month(year, month);
        if valid {
            Some(Date { year, month, day })
        } else {
            None
        }
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub fn day(self) -> u8 {
        self.day
    }

    /// `days` later (earlier when negative).
    pub fn add_days(self, days: i64) -> Result<Date, DateError> {
        let target = self
            .days_since_epoch()
            .checked_add(days)
            .ok_or(DateError::OutOfRange)?;
        if target < Date::MIN.days_since_epoch() || target > Date::MAX.days_since_epoch() {
            return Err(DateError::OutOfRange);
        }
        Ok(Date::from_days_since_epoch(target))
    }

    /// `months` later, on the same day of the month, or on the month's last day when it is
    /// shorter (`2027-01-31` + 1 month = `2027-02-28`).
    pub fn add_months(self, months: u32) -> Result<Date, DateError> {
        let index = u32::from(self.year) * 12 + u32::from(self.month) - 1;
        let target = index.checked_add(months).ok_or(DateError::OutOfRange)?;
        let year = u16::try_from(target / 12).map_err(|_| DateError::OutOfRange)?;
        let month = u8::try_from(target % 12 + 1).map_err(|_| DateError::OutOfRange)?;
        if year > 9999 {
            return Err(DateError::OutOfRange);
        }
        let day = self.day.min(days_in_month(year, month));
        Date::new(year, month, day).ok_or(DateError::OutOfRange)
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        later.days_since_epoch() - self.days_since_epoch()
    }

    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    fn days_since_epoch(self) -> i64 {
        let month = i64::from(self.month);
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * ERA_DAYS + day_of_era - UNIX_EPOCH_SHIFT
    }

    /// The inverse of [`Date::days_since_epoch`], for days between [`Date::MIN`] and
    /// [`Date::MAX`] (checked by the caller).
    fn from_days_since_epoch(days: i64) -> Date {
        let shifted = days + UNIX_EPOCH_SHIFT;
        let era = shifted.div_euclid(ERA_DAYS);
        let day_of_era = shifted - era * ERA_DAYS;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        // In range by the caller's check; the fallbacks are never taken.
        Date {
            year: u16::try_from(year).unwrap_or(9999),
            month: u8::try_from(month).unwrap_or(12),
            day: u8::try_from(day).unwrap_or(1),
        }
    }
}

const fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = DateError;

    /// Reads exactly `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<Date, DateError> {
        let invalid = || DateError::Invalid(s.to_owned());
        let bytes = s.as_bytes();
        let shape = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape {
            return Err(invalid());
        }
        let year = s
            .get(0..4)
            .and_then(|t| t.parse().ok())
            .ok_or_else(invalid)?;
        let month = s
            .get(5..7)
            .and_then(|t| t.parse().ok())
            .ok_or_else(invalid)?;
        let day = s
            .get(8..10)
            .and_then(|t| t.parse().ok())
            .ok_or_else(invalid)?;
        Date::new(year, month, day).ok_or_else(invalid)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    /// Reads a `"YYYY-MM-DD"` string, or a TOML date written bare (`today = 2027-01-31`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        d.deserialize_any(DateVisitor)
    }
}

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = Date;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date as `YYYY-MM-DD`")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Date, E> {
        text.parse().map_err(E::custom)
    }

    /// The toml crate hands a bare date over as a map of one private key to its text.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Date, A::Error> {
        let Some((_, text)) = map.next_entry::<de::IgnoredAny, String>()? else {
            return Err(de::Error::custom("a date as `YYYY-MM-DD` is expected"));
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a date as `YYYY-MM-DD` is expected"));
        }
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Date {
        s.parse().expect("a date")
    }

    #[test]
    fn dates_read_and_print_as_iso_days() {
        assert_eq!(date("2026-12-01").to_string(), "2026-12-01");
        assert_eq!(date("0001-01-01"), Date::MIN);
        assert_eq!(date("9999-12-31"), Date::MAX);
        assert_eq!(date("2028-02-29").day(), 29);
        for bad in [
            "2026-12-1",
            "2026-13-01",
            "2027-02-29",
            "2026-00-10",
            "0000-01-01",
            "2026/12/01",
            "+026-12-01",
            "2026-12-01T00:00",
            "",
            "２０２６-12-01",
        ] {
            assert!(bad.parse::<Date>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Date>("\"2026-12-01\"").is_ok());
        assert!(serde_json::from_str::<Date>("20261201").is_err());
        assert!(serde_json::from_str::<Date>(r#"{"a": "2026-12-01", "b": "x"}"#).is_err());
        assert!(serde_json::from_str::<Date>("{}").is_err());
    }

    #[test]
    fn days_cross_months_years_and_leap_days() {
        assert_eq!(date("2026-12-01").add_days(31), Ok(date("2027-01-01")));
        assert_eq!(date("2028-02-28").add_days(1), Ok(date("2028-02-29")));
        assert_eq!(date("2100-02-28").add_days(1), Ok(date("2100-03-01")));
        assert_eq!(date("2000-02-28").add_days(1), Ok(date("2000-02-29")));
        assert_eq!(date("2027-01-01").add_days(-31), Ok(date("2026-12-01")));
        assert_eq!(date("1970-01-01").add_days(0), Ok(date("1970-01-01")));
        assert_eq!(date("2026-12-01").days_until(date("2027-12-01")), 365);
        assert_eq!(date("2027-12-01").days_until(date("2026-12-01")), -365);
        assert_eq!(Date::MAX.add_days(1), Err(DateError::OutOfRange));
        assert_eq!(Date::MIN.add_days(-1), Err(DateError::OutOfRange));
        assert_eq!(Date::MIN.add_days(i64::MAX), Err(DateError::OutOfRange));
        assert_eq!(Date::MAX.add_days(i64::MIN), Err(DateError::OutOfRange));
        assert_eq!(
            Date::MIN.add_days(Date::MIN.days_until(Date::MAX)),
            Ok(Date::MAX)
        );
    }

    #[test]
    fn months_keep_the_day_or_clamp_to_the_last() {
        assert_eq!(date("2026-12-01").add_months(1), Ok(date("2027-01-01")));
        assert_eq!(date("2026-12-01").add_months(12), Ok(date("2027-12-01")));
        assert_eq!(date("2027-01-31").add_months(1), Ok(date("2027-02-28")));
        assert_eq!(date("2028-01-31").add_months(1), Ok(date("2028-02-29")));
        assert_eq!(date("2027-08-31").add_months(3), Ok(date("2027-11-30")));
        assert_eq!(date("2026-05-15").add_months(0), Ok(date("2026-05-15")));
        assert_eq!(date("9999-12-01").add_months(1), Err(DateError::OutOfRange));
        assert_eq!(Date::MIN.add_months(u32::MAX), Err(DateError::OutOfRange));
    }

    #[test]
    fn every_day_round_trips() {
        let mut day = date("1999-12-25");
        for _ in 0..2000 {
            let next = day.add_days(1).expect("in range");
            assert!(next > day);
            assert_eq!(next.add_days(-1), Ok(day));
            assert_eq!(next.to_string().parse(), Ok(next));
            day = next;
        }
    }
}
