//! The host's money vocabulary, defined once: [`Currency`], [`Amount`], [`Money`], [`Months`],
//! and what upstream charges for a tariff and period ([`UpstreamCost`]).
//!
//! Money is fixed point in ten-thousandths of a currency's unit, as BILLmanager prints costs
//! (`950.0000`), never a float. Each type checks its value in one constructor, so a value that
//! exists is valid: the configuration, the order store and the API read them through the same
//! rules.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Ten-thousandths in one unit of a currency.
pub const UNITS_PER_ONE: i64 = 10_000;

/// The most decimals an amount may carry, as BILLmanager prints it.
pub const SCALE: u32 = 4;

/// Why a value is not money, a currency or a period.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number.
    #[error("`{0}` is not an amount")]
    NotAnAmount(String),
    /// Below zero.
    #[error("{0} is negative; a price cannot be")]
    Negative(String),
    /// More than four decimals.
    #[error("{0} has more than four decimals")]
    TooPrecise(String),
    /// Beyond what an amount can hold.
    #[error("{0} is too large")]
    TooLarge(String),
    /// A float, which cannot hold money exactly.
    #[error("{0} is a float; write amounts as strings, e.g. \"{0}\"")]
    Float(String),
    /// Not three capital letters.
    #[error("`{0}` is not an ISO 4217 code such as EUR")]
    Currency(String),
    /// Outside 1 to [`Months::MAX`].
    #[error("the period must be 1 to {max} months, not {0}", max = Months::MAX)]
    Months(i64),
}

/// An ISO 4217 currency code: three capital ASCII letters, e.g. `EUR`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// Checks `code`.
    pub fn new(code: &str) -> Result<Currency, MoneyError> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code.to_owned()))
        } else {
            Err(MoneyError::Currency(code.chars().take(16).collect()))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::new(s)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::new(&code).map_err(de::Error::custom)
    }
}

/// A non-negative amount in ten-thousandths of a currency's unit: `9.90` is `Amount(99_000)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `units` ten-thousandths.
    pub fn from_units(units: i64) -> Result<Amount, MoneyError> {
        if units < 0 {
            Err(MoneyError::Negative(Decimal::new(units, SCALE).to_string()))
        } else {
            Ok(Amount(units))
        }
    }

    /// An exact decimal with at most four decimals.
    pub fn from_decimal(d: Decimal) -> Result<Amount, MoneyError> {
        let text = || d.to_string();
        if d.is_sign_negative() && !d.is_zero() {
            return Err(MoneyError::Negative(text()));
        }
        if d.normalize().scale() > SCALE {
            return Err(MoneyError::TooPrecise(text()));
        }
        d.checked_mul(Decimal::from(UNITS_PER_ONE))
            .and_then(|u| i64::try_from(u).ok())
            .map(Amount)
            .ok_or_else(|| MoneyError::TooLarge(text()))
    }

    /// The amount in ten-thousandths.
    pub fn units(self) -> i64 {
        self.0
    }

    /// The amount as an exact decimal.
    pub fn decimal(self) -> Decimal {
        Decimal::new(self.0, SCALE)
    }
}

impl FromStr for Amount {
    type Err = MoneyError;

    /// Reads a plain decimal (`9.90`, `10`, ` 3.0000 `).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d: Decimal = s
            .trim()
            .parse()
            .map_err(|_| MoneyError::NotAnAmount(s.chars().take(64).collect()))?;
        Amount::from_decimal(d)
    }
}

impl fmt::Display for Amount {
    /// Exactly four decimals, e.g. `913.9286`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}", self.decimal())
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// From a decimal string (`"9.90"`) or a whole number; never from a float.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount written as a string, e.g. \"9.90\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                Amount::from_decimal(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Amount::from_decimal(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                Err(E::custom(MoneyError::Float(v.to_string())))
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}

/// An amount in a currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    /// How much.
    pub amount: Amount,
    /// Of what.
    pub currency: Currency,
}

impl Money {
    /// `amount` of `currency`.
    pub fn new(amount: Amount, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// Checks `units` ten-thousandths of the currency `code`: what a plugin or a database
    /// hands the host.
    pub fn from_units(units: i64, code: &str) -> Result<Money, MoneyError> {
        Ok(Money {
            amount: Amount::from_units(units)?,
            currency: Currency::new(code)?,
        })
    }
}

impl fmt::Display for Money {
    /// `3.6000 EUR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl Serialize for Money {
    /// `{"amount": "3.6000", "amount_e4": 36000, "currency": "EUR"}`: the decimal for people,
    /// the integer for programs.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("Money", 3)?;
        m.serialize_field("amount", &self.amount)?;
        m.serialize_field("amount_e4", &self.amount.units())?;
        m.serialize_field("currency", &self.currency)?;
        m.end()
    }
}

/// A billing period in months, 1 to [`Months::MAX`]: `1` is a month, `12` a year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Months(u16);

impl Months {
    /// The longest period an order or a cost may have: ten years.
    pub const MAX: u16 = 120;
    /// One month: the period the panel shows.
    pub const MONTH: Months = Months(1);
    /// Twelve months.
    pub const YEAR: Months = Months(12);

    /// Checks `months`.
    pub fn new(months: i64) -> Result<Months, MoneyError> {
        u16::try_from(months)
            .ok()
            .filter(|m| (1..=Months::MAX).contains(m))
            .map(Months)
            .ok_or(MoneyError::Months(months))
    }

    /// The number of months.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Months {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Months {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let months = s
            .trim()
            .parse::<i64>()
            .map_err(|_| MoneyError::Months(-1))?;
        Months::new(months)
    }
}

impl<'de> Deserialize<'de> for Months {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let months = i64::deserialize(d)?;
        Months::new(months).map_err(de::Error::custom)
    }
}

/// What upstream charges the partner for one tariff and period, as last fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamCost {
    /// The tariff ID (the `pricelist` of upstream calls).
    pub tariff_id: u64,
    /// The period.
    #[serde(rename = "period_months")]
    pub period: Months,
    /// The cost of one such period.
    pub cost: Money,
}

/// A list of upstream costs that cannot be kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CostsError {
    /// A tariff ID beyond what the databases store.
    #[error("tariff ID {0} is too large")]
    TariffTooLarge(u64),
    /// One (tariff, period, currency) listed twice.
    #[error("tariff {tariff_id} for {period} months in {currency} is listed twice")]
    Twice {
        /// The tariff.
        tariff_id: u64,
        /// The period.
        period: Months,
        /// The currency.
        currency: Currency,
    },
}

impl UpstreamCost {
    /// Checks a whole list: tariff IDs that fit a database integer, and no (tariff, period,
    /// currency) twice.
    pub fn validate_all(costs: &[UpstreamCost]) -> Result<(), CostsError> {
        let mut seen = std::collections::HashSet::with_capacity(costs.len());
        for cost in costs {
            if i64::try_from(cost.tariff_id).is_err() {
                return Err(CostsError::TariffTooLarge(cost.tariff_id));
            }
            if !seen.insert((cost.tariff_id, cost.period, &cost.cost.currency)) {
                return Err(CostsError::Twice {
                    tariff_id: cost.tariff_id,
                    period: cost.period,
                    currency: cost.cost.currency.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_and_shown_with_four_decimals() {
        let a: Amount = "913.9286".parse().expect("amount");
        assert_eq!(a.units(), 9_139_286);
        assert_eq!(a.to_string(), "913.9286");
        assert_eq!(Amount::ZERO.to_string(), "0.0000");
        assert_eq!("10".parse::<Amount>().map(Amount::units), Ok(100_000));
        assert_eq!(
            Amount::from_units(i64::MAX).map(|a| a.to_string()),
            Ok("922337203685477.5807".to_owned())
        );
        for (bad, word) in [
            ("-1", "negative"),
            ("1.00001", "four decimals"),
            ("abc", "not an amount"),
            ("99999999999999999999", "too large"),
        ] {
            let e = bad.parse::<Amount>().expect_err(bad);
            assert!(e.to_string().contains(word), "{bad}: {e}");
        }
        assert!(Amount::from_units(-1).is_err());
        assert_eq!("-0".parse::<Amount>(), Ok(Amount::ZERO));
    }

    #[test]
    fn amounts_read_strings_and_whole_numbers_never_floats() {
        #[derive(Deserialize)]
        struct T {
            a: Amount,
        }
        let t: T = toml::from_str("a = \"9.90\"").expect("string");
        assert_eq!(t.a.units(), 99_000);
        let t: T = toml::from_str("a = 3").expect("integer");
        assert_eq!(t.a.units(), 30_000);
        let e = toml::from_str::<T>("a = 9.9").err().expect("float refused");
        assert!(e.to_string().contains("float"), "{e}");
    }

    #[test]
    fn currencies_are_three_capitals() {
        assert_eq!(
            Currency::new("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        for bad in ["eur", "EURO", "", "€", "E1R"] {
            assert!(Currency::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn money_shows_and_serialises_both_ways() {
        let m = Money::from_units(36_000, "EUR").expect("money");
        assert_eq!(m.to_string(), "3.6000 EUR");
        assert_eq!(
            serde_json::to_value(&m).expect("json"),
            serde_json::json!({"amount": "3.6000", "amount_e4": 36000, "currency": "EUR"})
        );
        assert!(Money::from_units(-1, "EUR").is_err());
        assert!(Money::from_units(1, "eur").is_err());
    }

    #[test]
    fn months_are_one_to_a_hundred_and_twenty() {
        assert_eq!(Months::new(1), Ok(Months::MONTH));
        assert_eq!(Months::new(120).map(Months::get), Ok(120));
        for bad in [0, 121, -100, i64::MAX] {
            assert_eq!(Months::new(bad), Err(MoneyError::Months(bad)));
        }
    }

    #[test]
    fn cost_lists_refuse_a_period_twice() {
        let cost = |tariff_id, months| UpstreamCost {
            tariff_id,
            period: Months::new(months).expect("months"),
            cost: Money::from_units(1, "EUR").expect("money"),
        };
        assert_eq!(
            UpstreamCost::validate_all(&[cost(1, 1), cost(1, 12)]),
            Ok(())
        );
        assert!(matches!(
            UpstreamCost::validate_all(&[cost(1, 1), cost(1, 1)]),
            Err(CostsError::Twice { tariff_id: 1, .. })
        ));
        assert!(UpstreamCost::validate_all(&[cost(u64::MAX, 1)]).is_err());
    }
}
