//! A pricing policy for ispmanager-reseller in Rust: a markup over the upstream cost, then a
//! price ending. It is the policy of [`examples/policy-python`] and [`examples/policy-js`], rule
//! for rule: the same settings give the same prices and the same refusals, byte for byte.
//!
//! Settings (the configuration's `[pricing]` table, received as JSON):
//!
//! ```toml
//! [pricing]
//! markup_percent = "20"   # optional, default "0": a decimal string (or an integer), above -100
//! ending = "0.90"         # optional: every price is raised to the next amount ending in .90
//! ```
//!
//! Every upstream cost of every offer is priced, in the offers' order and the costs' order:
//! `price = ceil(cost × (100 + markup_percent) / 100)` to the ten-thousandth, then raised to the
//! next amount whose fractional part is the ending. Money is exact integers of ten-thousandths;
//! the arithmetic is done in `i128`, and a markup too large even for that is still exact where it
//! matters (a zero cost stays zero, anything else does not fit a money amount).
//!
//! The settings are read with `serde_json` keeping each value's text as written (a float and an
//! integer must be told apart: `20.0` is refused, `20` is not), strictly as the other two
//! examples read them: RFC 8259, no lone surrogate escape, at most 128 levels of nesting, a
//! byte-order mark in front ignored, every key checked in the order written.
//!
//! [`examples/policy-python`]: ../policy-python
//! [`examples/policy-js`]: ../policy-js

use reseller_plugin::PricingPolicy;
use reseller_plugin::model::{
    Date, FieldError, Money, Offer, OfferPrices, PeriodPrice, PricingError,
};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Ten-thousandths in one unit of a currency.
const UNITS: i128 = 10_000;
/// A markup is counted in ten-thousandths of a percent.
const HUNDRED_PERCENT: i128 = 100 * UNITS;
/// The deepest nesting of JSON arrays and objects read, the outermost being 1.
const MAX_DEPTH: usize = 128;

/// The policy: a markup, then a price ending, configured by [`Settings`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MarkupEnding;

impl PricingPolicy for MarkupEnding {
    fn prices(
        offers: &[Offer],
        settings_json: &str,
        _today: Date,
    ) -> Result<Vec<OfferPrices>, PricingError> {
        // `today` does not change these prices.
        let settings = Settings::read(settings_json)?;
        offers.iter().map(|o| settings.price_offer(o)).collect()
    }
}

reseller_plugin::export_policy!(MarkupEnding);

/// The settings, read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `100 % + markup` in ten-thousandths of a percent (always positive); `None` when it is
    /// beyond `i128`.
    factor: Option<i128>,
    /// The fractional part every price ends in, in ten-thousandths.
    ending: Option<i128>,
}

impl Settings {
    /// Reads the settings from their JSON text; a refusal names `pricing.<key>`.
    pub fn read(text: &str) -> Result<Settings, PricingError> {
        // A byte-order mark in front is dropped, as the other examples do.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let Ok(document) = read_json(text) else {
            return Err(refuse(
                "pricing",
                text,
                "the pricing settings are not valid JSON",
            ));
        };
        let Json::Object(members) = document else {
            return Err(refuse(
                "pricing",
                text,
                "the pricing settings must be a table (a JSON object)",
            ));
        };
        let mut settings = Settings {
            factor: Some(HUNDRED_PERCENT),
            ending: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for member in &members {
            let field = format!("pricing.{}", member.key);
            let value = member.value.as_str();
            if seen.contains(&member.key.as_str()) {
                return Err(refuse(&field, value, "the setting is given twice"));
            }
            seen.push(&member.key);
            match member.key.as_str() {
                "markup_percent" => settings.factor = read_markup(&field, member)?,
                "ending" => settings.ending = Some(read_ending(&field, member)?),
                _ => {
                    return Err(refuse(
                        &field,
                        value,
                        "unknown setting: the settings are markup_percent and ending",
                    ));
                }
            }
        }
        Ok(settings)
    }

    /// The prices of every upstream cost of `offer`, in their order.
    pub fn price_offer(&self, offer: &Offer) -> Result<OfferPrices, PricingError> {
        let prices = offer
            .upstream_costs
            .iter()
            .map(|period| {
                let cost = &period.cost;
                let units = self
                    .marked_up(cost.units)
                    .and_then(|units| i64::try_from(units).ok())
                    .ok_or_else(|| {
                        PricingError::Overflow(format!(
                            "the {}-month price of `{}` does not fit in a money amount (cost {} {})",
                            period.months,
                            offer.intname,
                            amount(cost.units),
                            cost.currency
                        ))
                    })?;
                Ok(PeriodPrice {
                    months: period.months,
                    price: Money {
                        units,
                        currency: cost.currency.clone(),
                    },
                })
            })
            .collect::<Result<_, PricingError>>()?;
        Ok(OfferPrices {
            tariff_id: offer.tariff_id,
            prices,
        })
    }

    /// `ceil(cost × (100 % + markup) / 100 %)`, then raised to the next amount whose fractional
    /// part is the ending (the amount itself when it already has it). `None` when it is beyond
    /// `i128`, far outside a money amount.
    fn marked_up(&self, cost: i64) -> Option<i128> {
        let cost = i128::from(cost);
        let scaled = match self.factor {
            Some(factor) => cost.checked_mul(factor)?,
            None if cost == 0 => 0,
            None => return None,
        };
        // The divisor is positive: Euclid's quotient is the floor.
        let mut price =
            scaled.div_euclid(HUNDRED_PERCENT) + i128::from(scaled.rem_euclid(HUNDRED_PERCENT) > 0);
        if let Some(ending) = self.ending {
            price += (ending - price).rem_euclid(UNITS);
        }
        Some(price)
    }
}

/// Ten-thousandths as a decimal with four places, e.g. `-12.3400`.
fn amount(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000)
}

fn refuse(field: &str, value: &str, message: &str) -> PricingError {
    PricingError::InvalidSettings(FieldError {
        field: field.to_owned(),
        value: value.to_owned(),
        message: message.to_owned(),
    })
}

/// `100 % + markup`, or `None` for a markup beyond `i128` (which can only be positive here).
fn read_markup(field: &str, member: &Member) -> Result<Option<i128>, PricingError> {
    let value = member.value.as_str();
    let markup = match member.kind {
        Kind::Integer => Decimal::parse_integer(value).scaled(UNITS),
        Kind::String => read_decimal(field, value)?,
        Kind::Float => {
            return Err(refuse(
                field,
                value,
                &format!("{value} is a float; write the markup as a decimal string, e.g. \"12.5\""),
            ));
        }
        _ => {
            return Err(refuse(
                field,
                value,
                "the markup is a percentage written as a decimal string, e.g. \"12.5\"",
            ));
        }
    };
    let factor = match markup {
        // Above -100 %, so positive; beyond i128 only when the markup is huge.
        Decimal::Fits(markup) if markup > -HUNDRED_PERCENT => markup.checked_add(HUNDRED_PERCENT),
        Decimal::TooLarge { negative: false } => None,
        _ => {
            return Err(refuse(
                field,
                value,
                &format!(
                    "{value} would make every price zero or negative; a markup must be above -100"
                ),
            ));
        }
    };
    Ok(factor)
}

fn read_ending(field: &str, member: &Member) -> Result<i128, PricingError> {
    let value = member.value.as_str();
    if member.kind != Kind::String {
        return Err(refuse(
            field,
            value,
            "the ending is a decimal string from 0 to 1 (excluded), e.g. \"0.90\"",
        ));
    }
    match read_decimal(field, value)? {
        Decimal::Fits(ending) if (0..UNITS).contains(&ending) => Ok(ending),
        _ => Err(refuse(
            field,
            value,
            &format!(
                "`{value}` is not from 0 to 1 (excluded): the ending is the fractional part of every price"
            ),
        )),
    }
}

/// A whole number of ten-thousandths, or a sign when it does not fit `i128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decimal {
    Fits(i128),
    TooLarge { negative: bool },
}

impl Decimal {
    /// `-?[0-9]+` (already checked) as a whole number.
    fn parse_integer(digits: &str) -> Decimal {
        match digits.parse::<i128>() {
            Ok(n) => Decimal::Fits(n),
            Err(_) => Decimal::TooLarge {
                negative: digits.starts_with('-'),
            },
        }
    }

    /// Multiplied by `by` (positive).
    fn scaled(self, by: i128) -> Decimal {
        match self {
            Decimal::Fits(n) => n
                .checked_mul(by)
                .map_or(Decimal::TooLarge { negative: n < 0 }, Decimal::Fits),
            large => large,
        }
    }
}

/// A decimal string `-?[0-9]+(\.[0-9]{1,4})?` in ten-thousandths.
fn read_decimal(field: &str, value: &str) -> Result<Decimal, PricingError> {
    let (negative, unsigned) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let has_point = unsigned.contains('.');
    if !digits(whole) || (has_point && !digits(fraction)) || fraction.len() > 4 {
        let message = if digits(whole) && digits(fraction) && fraction.len() > 4 {
            format!("`{value}` has more than 4 decimals")
        } else {
            format!("`{value}` is not a decimal number")
        };
        return Err(refuse(field, value, &message));
    }
    let padded = format!("{fraction:0<4}");
    let fraction: i128 = padded.parse().unwrap_or(0);
    let sign = if negative { "-" } else { "" };
    Ok(
        match Decimal::parse_integer(&format!("{sign}{whole}")).scaled(UNITS) {
            Decimal::Fits(units) => {
                let fraction = if negative { -fraction } else { fraction };
                units
                    .checked_add(fraction)
                    .map_or(Decimal::TooLarge { negative }, Decimal::Fits)
            }
            large => large,
        },
    )
}

// JSON

/// What a JSON value is, as the settings reader tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Integer,
    Float,
    Literal,
}

/// A member of the settings object: its key, its kind and its value as the refusals quote it
/// (the decoded text of a string, the JSON text as written of anything else).
#[derive(Debug)]
struct Member {
    key: String,
    kind: Kind,
    value: String,
}

/// The document's value: the members of an object in order (a key given twice appears twice),
/// or anything else.
#[derive(Debug)]
enum Json {
    Object(Vec<Member>),
    Other,
}

/// Not strict JSON.
#[derive(Debug)]
struct NotJson;

impl From<serde_json::Error> for NotJson {
    fn from(_: serde_json::Error) -> Self {
        NotJson
    }
}

fn read_json(text: &str) -> Result<Json, NotJson> {
    let document: &RawValue = serde_json::from_str(text)?;
    match check(document, 0)? {
        Kind::Object => {
            let Members(members) = serde_json::from_str(document.get())?;
            members
                .into_iter()
                .map(|(key, raw)| {
                    let kind = kind(raw);
                    let value = match kind {
                        Kind::String => serde_json::from_str::<String>(raw.get())?,
                        _ => raw.get().to_owned(),
                    };
                    Ok(Member { key, kind, value })
                })
                .collect::<Result<_, NotJson>>()
                .map(Json::Object)
        }
        _ => Ok(Json::Other),
    }
}

/// The kind of a syntactically valid JSON value, by its first character.
fn kind(raw: &RawValue) -> Kind {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'"') => Kind::String,
        Some(b't' | b'f' | b'n') => Kind::Literal,
        _ if text.contains(['.', 'e', 'E']) => Kind::Float,
        _ => Kind::Integer,
    }
}

/// Checks what `serde_json` leaves unchecked in a value it only skips over: the nesting depth
/// (`depth` levels enclose `raw`), and that every string, keys included, is Unicode (no lone
/// surrogate escape). Numbers are read as text, so `1e400` is a float, not an error.
fn check(raw: &RawValue, depth: usize) -> Result<Kind, NotJson> {
    let kind = kind(raw);
    match kind {
        Kind::Object | Kind::Array if depth + 1 > MAX_DEPTH => return Err(NotJson),
        Kind::Object => {
            let Members(members) = serde_json::from_str(raw.get())?;
            for (_, value) in members {
                check(value, depth + 1)?;
            }
        }
        Kind::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(raw.get())?;
            for item in items {
                check(item, depth + 1)?;
            }
        }
        Kind::String => serde_json::from_str::<String>(raw.get()).map(drop)?,
        Kind::Integer | Kind::Float | Kind::Literal => {}
    }
    Ok(kind)
}

/// An object's members in order, a key given twice kept twice; keys decoded (and so checked).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date {
        year: 2027,
        month: 1,
        day: 31,
    };

    fn units(settings: &str, cost: i64) -> Result<i64, PricingError> {
        let offer = Offer::with_costs(1, "drweb", &[(1, cost, "EUR")]);
        let priced = MarkupEnding::prices(&[offer], settings, TODAY)?;
        Ok(priced[0].prices[0].price.units)
    }

    /// The refusal's field, value and message.
    fn refusal(settings: &str) -> (String, String, String) {
        match MarkupEnding::prices(&[], settings, TODAY) {
            Err(PricingError::InvalidSettings(f)) => (f.field, f.value, f.message),
            other => panic!("expected a refusal of {settings:?}, got {other:?}"),
        }
    }

    #[test]
    fn the_markup_rounds_up_to_the_ten_thousandth() {
        assert_eq!(units("{}", 123_456), Ok(123_456), "no markup");
        assert_eq!(
            units(r#"{"markup_percent": "20"}"#, 1_000_000),
            Ok(1_200_000)
        );
        assert_eq!(units(r#"{"markup_percent": 20}"#, 1_000_000), Ok(1_200_000));
        // 7.6153 × 1.125 = 8.5672125: up to 8.5673.
        assert_eq!(units(r#"{"markup_percent": "12.5"}"#, 76_153), Ok(85_673));
        // Towards +∞ below zero too: -1.2345 × 1.2 = -1.4814.
        assert_eq!(units(r#"{"markup_percent": "20"}"#, -12_345), Ok(-14_814));
        assert_eq!(units(r#"{"markup_percent": "-99.9999"}"#, 1_000_000), Ok(1));
    }

    #[test]
    fn the_ending_raises_to_the_next_amount_that_has_it() {
        let ending = |cost| units(r#"{"ending": "0.90"}"#, cost);
        assert_eq!(ending(123_456), Ok(129_000), "12.3456 → 12.9000");
        assert_eq!(ending(129_500), Ok(139_000), "12.9500 → 13.9000");
        assert_eq!(ending(129_000), Ok(129_000), "12.9000 stays");
        assert_eq!(ending(-123_456), Ok(-121_000), "-12.3456 → -12.1000");
        assert_eq!(units(r#"{"ending": "0"}"#, 1), Ok(10_000));
        assert_eq!(
            units(r#"{"markup_percent": "20", "ending": "0.9900"}"#, 30_000),
            Ok(39_900),
            "3.00 → 3.60 → 3.99"
        );
    }

    #[test]
    fn every_cost_is_priced_in_order() {
        let offers = [
            Offer::with_costs(7, "a", &[(12, 1_000_000, "RUB"), (1, 100_000, "RUB")]),
            Offer::with_costs(8, "b", &[]),
        ];
        let priced =
            MarkupEnding::prices(&offers, r#"{"markup_percent":"10"}"#, TODAY).expect("prices");
        let got: Vec<(u64, Vec<_>)> = priced
            .iter()
            .map(|o| {
                let prices: Vec<(u16, i64, &str)> = o
                    .prices
                    .iter()
                    .map(|p| (p.months, p.price.units, p.price.currency.as_str()))
                    .collect();
                (o.tariff_id, prices)
            })
            .collect();
        assert_eq!(
            got,
            [
                (7, vec![(12, 1_100_000, "RUB"), (1, 110_000, "RUB")]),
                (8, vec![])
            ]
        );
    }

    #[test]
    fn prices_past_s64_are_an_overflow_naming_the_module() {
        let big = |settings: &str, cost: i64| {
            let offer = Offer::with_costs(1, "drweb", &[(12, cost, "EUR")]);
            MarkupEnding::prices(&[offer], settings, TODAY)
        };
        match big(r#"{"markup_percent": "100"}"#, i64::MAX) {
            Err(PricingError::Overflow(m)) => assert_eq!(
                m,
                "the 12-month price of `drweb` does not fit in a money amount \
                 (cost 922337203685477.5807 EUR)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(big("{}", i64::MAX).is_ok(), "no markup: it still fits");
        assert!(
            matches!(
                big(r#"{"ending": "0.9999"}"#, i64::MAX),
                Err(PricingError::Overflow(_))
            ),
            "the ending raises it past s64"
        );
        // A markup beyond i128: exact all the same.
        let huge = format!(r#"{{"markup_percent": {}}}"#, "9".repeat(60));
        assert!(matches!(big(&huge, 1), Err(PricingError::Overflow(_))));
        assert!(matches!(big(&huge, -1), Err(PricingError::Overflow(_))));
        assert_eq!(units(&huge, 0), Ok(0));
        let huge = format!(
            r#"{{"markup_percent": "{}.5", "ending": "0.5"}}"#,
            "9".repeat(60)
        );
        assert_eq!(units(&huge, 0), Ok(5_000));
        match big(r#"{"markup_percent": "100"}"#, i64::MIN) {
            Err(PricingError::Overflow(m)) => {
                assert!(m.contains("(cost -922337203685477.5808 EUR)"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refusals_name_the_setting_and_quote_it() {
        let cases: &[(&str, (&str, &str, &str))] = &[
            (
                r#"{"markup_percent": 20.5}"#,
                (
                    "pricing.markup_percent",
                    "20.5",
                    "20.5 is a float; write the markup as a decimal string, e.g. \"12.5\"",
                ),
            ),
            (
                r#"{"markup_percent": 2E1}"#,
                (
                    "pricing.markup_percent",
                    "2E1",
                    "2E1 is a float; write the markup as a decimal string, e.g. \"12.5\"",
                ),
            ),
            (
                r#"{"markup_percent": 1e400}"#,
                (
                    "pricing.markup_percent",
                    "1e400",
                    "1e400 is a float; write the markup as a decimal string, e.g. \"12.5\"",
                ),
            ),
            (
                r#"{"markup_percent": [ 1 ,2 ]}"#,
                (
                    "pricing.markup_percent",
                    "[ 1 ,2 ]",
                    "the markup is a percentage written as a decimal string, e.g. \"12.5\"",
                ),
            ),
            (
                r#"{"markup_percent": "-100"}"#,
                (
                    "pricing.markup_percent",
                    "-100",
                    "-100 would make every price zero or negative; a markup must be above -100",
                ),
            ),
            (
                r#"{"markup_percent": -100000000000000000000000000000000000000000}"#,
                (
                    "pricing.markup_percent",
                    "-100000000000000000000000000000000000000000",
                    "-100000000000000000000000000000000000000000 would make every price zero or \
                     negative; a markup must be above -100",
                ),
            ),
            (
                r#"{"markup_percent": "12.34567"}"#,
                (
                    "pricing.markup_percent",
                    "12.34567",
                    "`12.34567` has more than 4 decimals",
                ),
            ),
            (
                r#"{"markup_percent": "+12"}"#,
                (
                    "pricing.markup_percent",
                    "+12",
                    "`+12` is not a decimal number",
                ),
            ),
            (
                r#"{"markup_percent": "12."}"#,
                (
                    "pricing.markup_percent",
                    "12.",
                    "`12.` is not a decimal number",
                ),
            ),
            (
                r#"{"markup_percent": " 12"}"#,
                (
                    "pricing.markup_percent",
                    " 12",
                    "`\u{20}12` is not a decimal number",
                ),
            ),
            (
                r#"{"markup_percent": "１２"}"#,
                (
                    "pricing.markup_percent",
                    "１２",
                    "`１２` is not a decimal number",
                ),
            ),
            (
                r#"{"ending": 0.9}"#,
                (
                    "pricing.ending",
                    "0.9",
                    "the ending is a decimal string from 0 to 1 (excluded), e.g. \"0.90\"",
                ),
            ),
            (
                r#"{"ending": "1"}"#,
                (
                    "pricing.ending",
                    "1",
                    "`1` is not from 0 to 1 (excluded): the ending is the fractional part of \
                     every price",
                ),
            ),
            (
                r#"{"ending": "-0.1"}"#,
                (
                    "pricing.ending",
                    "-0.1",
                    "`-0.1` is not from 0 to 1 (excluded): the ending is the fractional part of \
                     every price",
                ),
            ),
            (
                r#"{"ending": "0.9", "ending": "0.9"}"#,
                ("pricing.ending", "0.9", "the setting is given twice"),
            ),
            (
                r#"{"markup_percent": "20", "rounding": {"a": null}}"#,
                (
                    "pricing.rounding",
                    "{\"a\": null}",
                    "unknown setting: the settings are markup_percent and ending",
                ),
            ),
            (
                r#"{"mark\u0075p_percent": "x"}"#,
                ("pricing.markup_percent", "x", "`x` is not a decimal number"),
            ),
            (
                "[]",
                (
                    "pricing",
                    "[]",
                    "the pricing settings must be a table (a JSON object)",
                ),
            ),
            (
                "{\"a\": 1,}",
                (
                    "pricing",
                    "{\"a\": 1,}",
                    "the pricing settings are not valid JSON",
                ),
            ),
        ];
        for (settings, (field, value, message)) in cases {
            let expected = (
                (*field).to_owned(),
                (*value).to_owned(),
                (*message).to_owned(),
            );
            assert_eq!(refusal(settings), expected, "{settings}");
        }
        // The first refusal in the order written is the answer.
        assert_eq!(
            refusal(r#"{"ending": "2", "markup_percent": 1.5}"#).0,
            "pricing.ending"
        );
    }

    #[test]
    fn the_settings_are_strict_json() {
        let not_json = |text: &str| {
            let (field, _, message) = refusal(text);
            field == "pricing" && message == "the pricing settings are not valid JSON"
        };
        for text in [
            "",
            " ",
            "{",
            "{'a': 1}",
            "{\"a\": NaN}",
            "{\"a\": 01}",
            "{\"a\": 1.}",
            "{\"a\": -}",
            "{\"a\": \"\\ud800\"}",
            "{\"a\": [\"\\udc00\"]}",
            "{\"\\ud800x\": 1}",
            "{\"a\": \"\\ud800\\u0041\"}",
            "{\"a\": \"tab\there\"}",
            "{\"a\": \"\\x\"}",
            "{} {}",
            "\u{feff}\u{feff}{}",
        ] {
            assert!(not_json(text), "{text:?} is not strict JSON");
        }
        assert_eq!(
            refusal("\u{feff}[1]"),
            (
                "pricing".to_owned(),
                "[1]".to_owned(),
                "the pricing settings must be a table (a JSON object)".to_owned()
            ),
            "a byte-order mark in front is dropped"
        );
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(
            refusal(&nested(128)).2,
            "the pricing settings must be a table (a JSON object)"
        );
        assert!(not_json(&nested(129)), "129 levels");
        let in_object = |levels: usize| format!("{{\"x\": {}}}", nested(levels - 1));
        assert_eq!(refusal(&in_object(128)).0, "pricing.x");
        assert!(not_json(&in_object(129)));
        assert_eq!(
            refusal("{\"a\": \"\\ud83d\\ude00\"}").1,
            "😀",
            "a surrogate pair is one character"
        );
        assert_eq!(
            units(" \n{ \"markup_percent\" : \"20\" }\r\n", 10_000),
            Ok(12_000)
        );
    }
}
