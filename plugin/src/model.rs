//! Plain Rust mirrors of the contract's types, so that the logic compiles and is tested natively.

use std::fmt;

/// Ten-thousandths in one unit of a currency: BILLmanager prints costs with four decimals.
pub const UNITS_PER_ONE: i64 = 10_000;

/// An amount of money in ten-thousandths of a currency's unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Money {
    /// The amount in ten-thousandths.
    pub units: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// Prints an amount of ten-thousandths with exactly four decimals, e.g. `950.0000`.
pub struct Cost(pub i64);

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = UNITS_PER_ONE.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / per, abs % per)
    }
}

/// What the upstream charges for one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodCost {
    /// Period length in months.
    pub months: u16,
    /// Cost of one such period.
    pub cost: Money,
}

/// One module of the partner's catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Upstream tariff ID.
    pub tariff_id: u64,
    /// Service name.
    pub intname: String,
    /// Service name of the module's kind.
    pub additionintname: String,
    /// Display name.
    pub name: String,
    /// Upstream cost per period.
    pub upstream_costs: Vec<PeriodCost>,
    /// Whether it can be ordered now.
    pub orderable: bool,
}

impl Offer {
    /// An orderable offer named `intname` with upstream `costs` of (months, ten-thousandths,
    /// currency): a short way to build catalogues in tests and benchmarks.
    pub fn with_costs(tariff_id: u64, intname: &str, costs: &[(u16, i64, &str)]) -> Offer {
        Offer {
            tariff_id,
            intname: intname.to_owned(),
            additionintname: intname.to_owned(),
            name: intname.to_owned(),
            upstream_costs: costs
                .iter()
                .map(|&(months, units, currency)| PeriodCost {
                    months,
                    cost: Money {
                        units,
                        currency: currency.to_owned(),
                    },
                })
                .collect(),
            orderable: true,
        }
    }
}

/// The partner's price of one module for one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodPrice {
    /// Period length in months.
    pub months: u16,
    /// The price of one such period.
    pub price: Money,
}

/// The partner's prices of one module, as a pricing policy gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferPrices {
    /// Upstream tariff ID.
    pub tariff_id: u64,
    /// One price per period.
    pub prices: Vec<PeriodPrice>,
}

/// A calendar day, as BILLmanager writes dates: `2027-01-31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// The year.
    pub year: u16,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
}

impl Date {
    /// Reads `YYYY-MM-DD` (the first ten characters; a time after them is ignored, as in
    /// `2027-01-31 00:00:00`); `None` for anything else, including BILLmanager's empty dates
    /// (`0000-00-00`).
    pub fn parse(text: &str) -> Option<Date> {
        let text = text.trim();
        let day_part = text.get(..10)?;
        let mut parts = day_part.split('-');
        let year: u16 = parts.next()?.parse().ok()?;
        let month: u8 = parts.next()?.parse().ok()?;
        let day: u8 = parts.next()?.parse().ok()?;
        let valid = year > 0 && (1..=12).contains(&month) && (1..=31).contains(&day);
        valid.then_some(Date { year, month, day })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Document format of an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// BILLmanager XML.
    Xml,
    /// BILLmanager JSON.
    Json,
}

/// A price export query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// `itemtype`.
    pub itemtype: String,
    /// `onlyavailable=on`.
    pub only_available: bool,
    /// `pricelist=ID`.
    pub pricelist: Option<u64>,
    /// `out`.
    pub format: Format,
}

/// A rendered document and its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// HTTP content type.
    pub content_type: &'static str,
    /// The bytes.
    pub body: Vec<u8>,
}

/// A refused field or setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field name or dotted setting path.
    pub field: String,
    /// The refused value.
    pub value: String,
    /// What is wrong.
    pub message: String,
}

/// Why a price export could not be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// A query parameter the plugin does not serve.
    #[error("invalid value of `{}`: {}", .0.field, .0.message)]
    InvalidValue(FieldError),
    /// The partner's settings are wrong.
    #[error("invalid setting `{}`: {}", .0.field, .0.message)]
    InvalidSettings(FieldError),
    /// A price does not fit the money type.
    #[error("price overflow: {0}")]
    Overflow(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_and_print_as_billmanager_writes_them() {
        let d = Date::parse("2027-01-31").expect("date");
        assert_eq!((d.year, d.month, d.day), (2027, 1, 31));
        assert_eq!(d.to_string(), "2027-01-31");
        assert_eq!(
            Date::parse(" 2027-02-03 00:00:00 "),
            Some(Date {
                year: 2027,
                month: 2,
                day: 3
            })
        );
        for bad in [
            "",
            "0000-00-00",
            "2027-13-01",
            "2027-1-1",
            "yesterday",
            "2027-01-32",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cost_prints_four_decimals() {
        assert_eq!(Cost(9_500_000).to_string(), "950.0000");
        assert_eq!(Cost(9_139_286).to_string(), "913.9286");
        assert_eq!(Cost(1).to_string(), "0.0001");
        assert_eq!(Cost(0).to_string(), "0.0000");
        assert_eq!(Cost(-5_000).to_string(), "-0.5000");
        assert_eq!(Cost(i64::MAX).to_string(), "922337203685477.5807");
        assert_eq!(Cost(i64::MIN).to_string(), "-922337203685477.5808");
    }
}
