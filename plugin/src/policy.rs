//! The partner's pricing policy: settings, and the price of each module and period.
//!
//! Settings come from the host as the JSON form of the configuration's `[pricing]` table:
//!
//! ```toml
//! [pricing]
//! markup_percent = "20"     # over the upstream cost; may be negative (a discount), above -100
//! rounding_step = "0.10"    # prices are rounded to a multiple of this
//! rounding = "up"           # up | nearest | down
//! periods = [1, 12]         # periods offered, in months (1 to 120, any that upstream prices);
//!                           # 1 is mandatory: the panel shows only that one
//!
//! [pricing.currency.RUB]    # per currency, overrides the three keys above
//! markup_percent = "30"
//! rounding_step = "10"
//!
//! [pricing.fixed.drweb-lite.EUR]   # a fixed partner price for a module (by intname) and currency
//! month = "4.90"                   # overrides the markup; used exactly as written
//! year = "49.00"
//! ```
//!
//! Every amount and percentage is a decimal string (or a whole number), never a float.
//!
//! [`Markup`] is this policy as a [`PricingPolicy`]. The settings' building blocks ([`Amount`],
//! [`Percent`], [`Step`], [`from_json`], [`money`]) are public for other policies to share.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use crate::PricingPolicy;
use crate::model::{Date, FieldError, Money, Offer, OfferPrices, PricingError, UNITS_PER_ONE};

/// The most decimals an amount may carry, as BILLmanager prints it.
pub const MAX_SCALE: u32 = 4;

/// The built-in pricing policy: a markup over the upstream cost, rounded to a step, with fixed
/// prices per module, configured by [`Settings`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Markup;

impl PricingPolicy for Markup {
    fn prices(
        offers: &[Offer],
        settings_json: &str,
        _today: Date,
    ) -> Result<Vec<OfferPrices>, PricingError> {
        let settings = Settings::from_json(settings_json)?;
        crate::price_each(offers, |offer, months| settings.price(offer, months))
    }
}

/// The partner's pricing settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Markup over the upstream cost, in percent.
    #[serde(default)]
    pub markup_percent: Percent,
    /// Prices are rounded to a multiple of this step.
    #[serde(default)]
    pub rounding_step: Step,
    /// Direction of rounding.
    #[serde(default)]
    pub rounding: Rounding,
    /// The periods offered, in months.
    #[serde(default = "default_periods")]
    pub periods: Vec<u16>,
    /// Overrides per currency (ISO code).
    #[serde(default)]
    pub currency: BTreeMap<String, CurrencyPolicy>,
    /// Fixed prices by module `intname`, then by currency.
    #[serde(default)]
    pub fixed: BTreeMap<String, BTreeMap<String, FixedPrice>>,
}

fn default_periods() -> Vec<u16> {
    vec![1]
}

impl Default for Settings {
    /// No markup, no rounding beyond four decimals, the 1-month period only.
    fn default() -> Self {
        Settings {
            markup_percent: Percent::default(),
            rounding_step: Step::default(),
            rounding: Rounding::default(),
            periods: default_periods(),
            currency: BTreeMap::new(),
            fixed: BTreeMap::new(),
        }
    }
}

/// The keys that may differ per currency.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurrencyPolicy {
    /// Markup in percent for this currency.
    pub markup_percent: Option<Percent>,
    /// Rounding step for this currency.
    pub rounding_step: Option<Step>,
    /// Rounding direction for this currency.
    pub rounding: Option<Rounding>,
}

/// A fixed partner price for one module in one currency.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FixedPrice {
    /// Price of one month.
    pub month: Amount,
    /// Price of twelve months; without it the year is marked up from the upstream cost.
    pub year: Option<Amount>,
}

/// Which way a price is rounded to the step.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rounding {
    /// Up to the next step: never below the marked-up price.
    #[default]
    Up,
    /// To the nearest step, halves up.
    Nearest,
    /// Down to the step below.
    Down,
}

/// A non-negative amount with at most four decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Amount(pub Decimal);

/// A markup in percent, above -100 (a discount below cost stays a positive price).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percent(pub Decimal);

/// A positive rounding step with at most four decimals; `0.0001` by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step(pub Decimal);

impl Default for Step {
    fn default() -> Self {
        Step(Decimal::new(1, MAX_SCALE))
    }
}

/// Reads a decimal from a string or a whole number; refuses floats, which cannot hold money.
fn decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    struct DecimalVisitor;
    impl Visitor<'_> for DecimalVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal number written as a string, e.g. \"12.50\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
            let d = v
                .trim()
                .parse::<Decimal>()
                .map_err(|_| E::custom(format!("`{v}` is not a decimal number")))?;
            if d.scale() > MAX_SCALE {
                return Err(E::custom(format!(
                    "`{v}` has more than {MAX_SCALE} decimals"
                )));
            }
            Ok(d.normalize())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
            Err(E::custom(format!(
                "{v} is a float; write amounts as strings, e.g. \"{v}\""
            )))
        }
    }
    deserializer.deserialize_any(DecimalVisitor)
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = decimal(d)?;
        if v.is_sign_negative() && !v.is_zero() {
            return Err(de::Error::custom(format!(
                "{v} is negative; a price cannot be"
            )));
        }
        Ok(Amount(v))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = decimal(d)?;
        if v <= -Decimal::ONE_HUNDRED {
            return Err(de::Error::custom(format!(
                "{v} would make every price zero or negative; a markup must be above -100"
            )));
        }
        Ok(Percent(v))
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = decimal(d)?;
        if v <= Decimal::ZERO {
            return Err(de::Error::custom(format!("{v} is not a positive step")));
        }
        Ok(Step(v))
    }
}

impl Percent {
    /// `cost_units` (ten-thousandths, as upstream charges) with this markup applied, exactly:
    /// not rounded. An overflow names the module `intname`.
    pub fn apply(self, cost_units: i64, intname: &str) -> Result<Decimal, PricingError> {
        let cost = Decimal::new(cost_units, MAX_SCALE);
        Decimal::ONE_HUNDRED
            .checked_add(self.0)
            .and_then(|factor| cost.checked_mul(factor))
            .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
            .ok_or_else(|| overflow(intname, cost))
    }
}

/// Reads pricing settings of any schema `T` from their JSON form (the host's `[pricing]` table).
/// Refuses anything but a table; an error names the setting's dotted path under `pricing.`,
/// e.g. `pricing.currency.EUR.step`.
pub fn from_json<T: DeserializeOwned>(json: &str) -> Result<T, PricingError> {
    // serde would also read a struct from an array; settings are a table.
    if !json.trim_start().starts_with('{') {
        return Err(PricingError::InvalidSettings(FieldError {
            field: "pricing".to_owned(),
            value: String::new(),
            message: "the pricing settings must be a table".to_owned(),
        }));
    }
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "pricing".to_owned()
        } else {
            format!("pricing.{path}")
        };
        PricingError::InvalidSettings(FieldError {
            field,
            value: String::new(),
            message: e.into_inner().to_string(),
        })
    })
}

/// A price in `currency` as money of ten-thousandths, truncated past the fourth decimal. A price
/// that does not fit is an overflow naming the module `intname`.
pub fn money(price: Decimal, currency: &str, intname: &str) -> Result<Money, PricingError> {
    let units = price
        .checked_mul(Decimal::from(UNITS_PER_ONE))
        .and_then(|u| i64::try_from(u.trunc()).ok())
        .ok_or_else(|| overflow(intname, price))?;
    Ok(Money {
        units,
        currency: currency.to_owned(),
    })
}

impl Settings {
    /// Parses and checks settings from their JSON form. Errors name the setting's path under
    /// `pricing.`.
    pub fn from_json(json: &str) -> Result<Settings, PricingError> {
        let settings: Settings = from_json(json)?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), PricingError> {
        let invalid = |message: &str| {
            PricingError::InvalidSettings(FieldError {
                field: "pricing.periods".to_owned(),
                value: format!("{:?}", self.periods),
                message: message.to_owned(),
            })
        };
        if !self.periods.contains(&1) {
            return Err(invalid(
                "the 1-month period is mandatory: the panel shows only that one",
            ));
        }
        if self.periods.iter().any(|p| !(1..=120).contains(p)) {
            return Err(invalid("a period is 1 to 120 months"));
        }
        Ok(())
    }

    /// The partner's price of `offer` for a period of `months`, or `None` when it is not
    /// offered for that period (not in the settings, or no upstream cost for it).
    pub fn price(&self, offer: &Offer, months: u16) -> Result<Option<Money>, PricingError> {
        if !self.periods.contains(&months) {
            return Ok(None);
        }
        let Some(upstream) = offer.upstream_costs.iter().find(|c| c.months == months) else {
            return Ok(None);
        };
        let currency = &upstream.cost.currency;
        let fixed = self
            .fixed
            .get(&offer.intname)
            .and_then(|by_currency| by_currency.get(currency))
            .and_then(|f| match months {
                1 => Some(f.month),
                12 => f.year,
                _ => None,
            });
        match fixed {
            Some(Amount(price)) => money(price, currency, &offer.intname).map(Some),
            None => {
                let units = self.marked_up(upstream.cost.units, currency, &offer.intname)?;
                Ok(Some(Money {
                    units,
                    currency: currency.clone(),
                }))
            }
        }
    }

    /// The upstream cost marked up and rounded to the step, in ten-thousandths. Exact integer
    /// arithmetic: the price is `cost × (100 + markup) / 100` rounded to a multiple of the
    /// step, computed as one fraction so that nothing is rounded twice.
    fn marked_up(
        &self,
        cost_units: i64,
        currency: &str,
        intname: &str,
    ) -> Result<i64, PricingError> {
        let local = self.currency.get(currency);
        let Percent(markup) = local
            .and_then(|c| c.markup_percent)
            .unwrap_or(self.markup_percent);
        let Step(step) = local
            .and_then(|c| c.rounding_step)
            .unwrap_or(self.rounding_step);
        let rounding = local.and_then(|c| c.rounding).unwrap_or(self.rounding);
        let too_large = || overflow(intname, Decimal::new(cost_units, MAX_SCALE));
        // Both have at most four decimals (checked when read), so scaled by 10^4 they are exact.
        let scaled = |d: Decimal| {
            d.checked_mul(Decimal::from(UNITS_PER_ONE))
                .and_then(|v| i128::try_from(v.trunc()).ok())
        };
        let factor = Decimal::ONE_HUNDRED
            .checked_add(markup)
            .and_then(scaled)
            .ok_or_else(too_large)?; // percent × 10^4
        let step = scaled(step).ok_or_else(too_large)?; // units
        // price_units = cost_units × factor / (100 × 10^4), rounded to a multiple of `step`.
        let numerator = i128::from(cost_units)
            .checked_mul(factor)
            .ok_or_else(too_large)?;
        let denominator = step
            .checked_mul(100 * i128::from(UNITS_PER_ONE))
            .ok_or_else(too_large)?;
        let (whole, rest) = (numerator / denominator, numerator % denominator);
        let steps = match rounding {
            Rounding::Down => whole,
            Rounding::Up => whole + i128::from(rest > 0),
            Rounding::Nearest => whole + i128::from(rest.saturating_mul(2) >= denominator),
        };
        steps
            .checked_mul(step)
            .and_then(|units| i64::try_from(units).ok())
            .ok_or_else(too_large)
    }
}

/// The overflow error of a price of the module `intname` that went past what money can hold.
pub fn overflow(intname: &str, value: Decimal) -> PricingError {
    PricingError::Overflow(format!(
        "the price of `{intname}` ({value}) does not fit in a money amount"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(intname: &str, costs: &[(u16, i64, &str)]) -> Offer {
        Offer::with_costs(1, intname, costs)
    }

    fn units(s: &Settings, o: &Offer, months: u16) -> Option<i64> {
        s.price(o, months).expect("price").map(|m| m.units)
    }

    #[test]
    fn markup_over_upstream_cost() {
        let s = Settings::from_json(r#"{"markup_percent": "20"}"#).expect("settings");
        let o = offer("a", &[(1, 100_000, "EUR")]);
        assert_eq!(units(&s, &o, 1), Some(120_000));
        assert_eq!(
            s.price(&o, 1).expect("price").expect("some").currency,
            "EUR"
        );
    }

    #[test]
    fn fractional_markup_keeps_four_decimals() {
        let s = Settings::from_json(r#"{"markup_percent": "12.5"}"#).expect("settings");
        // 7.6153 * 1.125 = 8.5672125 -> up to 8.5673
        assert_eq!(
            units(&s, &offer("a", &[(1, 76_153, "EUR")]), 1),
            Some(85_673)
        );
    }

    #[test]
    fn rounding_step_each_direction() {
        let o = offer("a", &[(1, 123_456, "RUB")]); // 12.3456
        let with = |r: &str| {
            let json = format!(r#"{{"rounding_step": "0.5", "rounding": "{r}"}}"#);
            units(&Settings::from_json(&json).expect("settings"), &o, 1)
        };
        assert_eq!(with("up"), Some(125_000));
        assert_eq!(with("nearest"), Some(125_000));
        assert_eq!(with("down"), Some(120_000));
        let s = Settings::from_json(r#"{"rounding_step": 10}"#).expect("settings");
        assert_eq!(units(&s, &o, 1), Some(200_000));
    }

    #[test]
    fn per_currency_policy_overrides_default() {
        let s = Settings::from_json(
            r#"{"markup_percent": "10", "currency": {"RUB": {"markup_percent": 50, "rounding_step": "1"}}}"#,
        )
        .expect("settings");
        assert_eq!(
            units(&s, &offer("a", &[(1, 100_000, "EUR")]), 1),
            Some(110_000)
        );
        assert_eq!(
            units(&s, &offer("a", &[(1, 100_000, "RUB")]), 1),
            Some(150_000)
        );
        assert_eq!(
            units(&s, &offer("a", &[(1, 101_000, "RUB")]), 1),
            Some(160_000)
        );
    }

    #[test]
    fn fixed_price_overrides_markup() {
        let s = Settings::from_json(
            r#"{"markup_percent": "50", "rounding_step": "1", "periods": [1, 12],
                "fixed": {"a": {"EUR": {"month": "4.99"}}}}"#,
        )
        .expect("settings");
        let o = offer("a", &[(1, 100_000, "EUR"), (12, 1_000_000, "EUR")]);
        assert_eq!(
            units(&s, &o, 1),
            Some(49_900),
            "fixed, not rounded to the step"
        );
        assert_eq!(
            units(&s, &o, 12),
            Some(1_500_000),
            "no fixed year: marked up"
        );
        let other_currency = offer("a", &[(1, 100_000, "RUB")]);
        assert_eq!(units(&s, &other_currency, 1), Some(150_000));
        let other_module = offer("b", &[(1, 100_000, "EUR")]);
        assert_eq!(units(&s, &other_module, 1), Some(150_000));
    }

    #[test]
    fn periods_not_offered_or_not_priced_upstream() {
        let s = Settings::default();
        let o = offer("a", &[(1, 100_000, "EUR"), (12, 1_000_000, "EUR")]);
        assert_eq!(units(&s, &o, 12), None, "12 months only when configured");
        let s = Settings::from_json(r#"{"periods": [1, 12]}"#).expect("settings");
        assert_eq!(units(&s, &o, 12), Some(1_000_000));
        assert_eq!(units(&s, &offer("a", &[(1, 1, "EUR")]), 12), None);
    }

    #[test]
    fn large_values_overflow_as_an_error_not_a_panic() {
        let s = Settings::from_json(r#"{"markup_percent": "79228162514264337593543950000"}"#)
            .expect("settings");
        let o = offer("a", &[(1, 1, "EUR")]);
        assert!(
            matches!(s.price(&o, 1), Err(PricingError::Overflow(_))),
            "the factor itself overflows"
        );
        let s = Settings::from_json(r#"{"markup_percent": "1000000"}"#).expect("settings");
        let o = offer("a", &[(1, i64::MAX, "EUR")]);
        assert!(matches!(s.price(&o, 1), Err(PricingError::Overflow(_))));
        let s =
            Settings::from_json(r#"{"rounding_step": "99999999999999999999"}"#).expect("settings");
        assert!(matches!(s.price(&o, 1), Err(PricingError::Overflow(_))));
        let s = Settings::default();
        assert_eq!(
            units(&s, &o, 1),
            Some(i64::MAX),
            "no markup: the largest cost still fits"
        );
        let s = Settings::from_json(
            r#"{"fixed": {"a": {"EUR": {"month": "79228162514264337593543950335"}}}}"#,
        )
        .expect("settings");
        assert!(matches!(s.price(&o, 1), Err(PricingError::Overflow(_))));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let field = |json: &str| match Settings::from_json(json) {
            Err(PricingError::InvalidSettings(e)) => e.field,
            other => panic!("expected invalid settings, got {other:?}"),
        };
        assert_eq!(
            field(r#"{"markup_percent": "-100"}"#),
            "pricing.markup_percent"
        );
        assert_eq!(
            field(r#"{"markup_percent": 1.5}"#),
            "pricing.markup_percent"
        );
        assert_eq!(field(r#"{"rounding_step": "0"}"#), "pricing.rounding_step");
        assert_eq!(
            field(r#"{"rounding_step": "0.00001"}"#),
            "pricing.rounding_step"
        );
        assert_eq!(field(r#"{"rounding": "sideways"}"#), "pricing.rounding");
        assert_eq!(field(r#"{"periods": [12]}"#), "pricing.periods");
        assert_eq!(field(r#"{"periods": [1, 0]}"#), "pricing.periods");
        assert_eq!(field(r#"{"periods": [1, 121]}"#), "pricing.periods");
        assert!(Settings::from_json(r#"{"periods": [1, 3, 6, 12]}"#).is_ok());
        assert_eq!(
            field(r#"{"fixed": {"a": {"EUR": {"month": "-1"}}}}"#),
            "pricing.fixed.a.EUR.month"
        );
        assert_eq!(
            field(r#"{"currency": {"EUR": {"colour": 1}}}"#),
            "pricing.currency.EUR.colour"
        );
        assert_eq!(field(r#"{"surprise": 1}"#), "pricing.surprise");
        assert_eq!(field("[]"), "pricing");
    }
}
