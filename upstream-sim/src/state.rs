//! The partner's account upstream, as data: credentials, balance, licences, module tariffs, the
//! module services ordered so far and the simulated day. Loaded from JSON or TOML, checked once,
//! and cloned for the control API; the BILLmanager calls that change it live in
//! [`crate::billmgr`], the clock's effects in [`crate::clock`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::date::Date;

/// Service IDs handed out by the simulator start above this, so that they look like upstream's
/// and never collide with the small IDs a test writes in a state file.
const FIRST_SERVICE_ID: u64 = 100_001;

/// The simulated day when a state does not say: fixed, so that expiry dates are the same on
/// every run.
pub const DEFAULT_TODAY: Date = match Date::new(2026, 12, 1) {
    Some(date) => date,
    None => Date::MIN,
};

/// An amount of money: a non-negative decimal with at most four decimals, never a float.
///
/// Written as a string with exactly four decimals (`"100.0000"`), read from a string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

/// Why a text is not an [`Amount`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an amount: a non-negative decimal with at most four decimals is expected")]
pub struct AmountError(String);

impl Amount {
    /// Nothing.
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// The amount as a decimal, e.g. to compare with one parsed from a document.
    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// The amount as BILLmanager shows money: rounded to cents, two decimals, and the currency
    /// (`"3.50 EUR"`).
    pub fn display_with(self, currency: &str) -> String {
        let cents = self
            .0
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        format!("{cents:.2} {currency}")
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_sub(other.0)
            .filter(|d| !d.is_sign_negative())
            .map(Amount)
    }
}

impl TryFrom<Decimal> for Amount {
    type Error = AmountError;

    fn try_from(d: Decimal) -> Result<Amount, AmountError> {
        if d.is_sign_negative() || d.normalize().scale() > 4 {
            return Err(AmountError(d.to_string()));
        }
        Ok(Amount(d.normalize()))
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Reads plain decimal notation only (`12`, `12.5`, `12.5000`): no sign, no exponent.
    fn from_str(s: &str) -> Result<Amount, AmountError> {
        let text = s.trim();
        if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(AmountError(s.to_owned()));
        }
        let d = Decimal::from_str(text).map_err(|_| AmountError(s.to_owned()))?;
        Amount::try_from(d).map_err(|_| AmountError(s.to_owned()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4}", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The partner's credentials and money upstream.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Login, the part of `authinfo` before the first `:`.
    pub user: String,
    /// Password, the rest of `authinfo`. Never written out by the simulator.
    #[serde(skip_serializing)]
    pub password: String,
    /// What the partner can spend.
    pub balance: Amount,
    /// Currency of the balance and of every cost (ISO 4217 code).
    pub currency: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("balance", &self.balance)
            .field("currency", &self.currency)
            .finish()
    }
}

/// The cost of one period of a tariff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Period length in months.
    pub months: u16,
    /// Cost of one such period, in the account's currency.
    pub cost: Amount,
}

/// A module tariff upstream sells (a `pricelist` ID).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tariff {
    /// The tariff ID: `pricelist` in orders, `<id>` in the price list.
    pub id: u64,
    /// `<intname>`: a service name.
    pub intname: String,
    /// `<name>`: the display name.
    pub name: String,
    /// `<additionintname>`: the service name of the module's kind.
    pub additionintname: String,
    /// The periods sold and their costs.
    pub prices: Vec<Price>,
    /// Whether it can be ordered now; a tariff that cannot is left out of
    /// `pricelist.export&onlyavailable=on` and refused by orders.
    #[serde(default = "yes")]
    pub orderable: bool,
    /// Whether a free trial is offered: exported first in every `<price>` as
    /// `<period cost="0.0000" type="month" length="-100">trial</period>`; an order for it
    /// (`period=-100`) is refused like any period not sold.
    #[serde(default)]
    pub trial: bool,
    /// The same tariff priced in other currencies: one more `<price currency="…">` each, after
    /// the account currency's. Shown only; orders and renewals are charged from
    /// [`Tariff::prices`], in the account's currency.
    #[serde(default)]
    pub other_prices: Vec<CurrencyPrices>,
    /// Order parameters this tariff requires besides the usual ones (BitNinja's
    /// `bitninja_email`): an order without one is refused with `missed`/NAME.
    #[serde(default)]
    pub required_fields: Vec<String>,
    /// `<name_ru>`: the Russian name; [`Tariff::name`] when not set.
    #[serde(default)]
    pub name_ru: Option<String>,
}

/// A tariff's periods and costs in a currency other than the account's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrencyPrices {
    /// The currency (ISO 4217 code), other than the account's.
    pub currency: String,
    /// The periods and their costs in that currency.
    pub prices: Vec<Price>,
}

impl Tariff {
    /// The cost of `months`, if this tariff sells that period.
    pub fn cost(&self, months: u16) -> Option<Amount> {
        self.prices
            .iter()
            .find(|p| p.months == months)
            .map(|p| p.cost)
    }
}

/// What a service is doing: BILLmanager's `status` code and `item_status` (`orig`).
///
/// In state files and the control API: `"ordered"`, `"active"`, `"suspended"`, `"expired"`,
/// `"processing"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceStatus {
    /// Ordered, not paid or opened yet: status `1`, `orig="1"`. Only a state file sets it.
    Ordered,
    /// Running: status `2`, `orig="2"`.
    #[default]
    Active,
    /// Stopped by `addition.suspend`: status `3`, `orig="3_employeesuspend"`.
    Suspended,
    /// Stopped by the clock at its expiry, not renewed: status `3`, `orig="3_autosuspend"`.
    Expired,
    /// Being opened: status `5`, `orig="5_open"`. Only a state file sets it.
    Processing,
}

impl ServiceStatus {
    /// The numeric status (`<status>`): 1 ordered, 2 active, 3 suspended, 5 processing.
    pub fn code(self) -> u8 {
        match self {
            ServiceStatus::Ordered => 1,
            ServiceStatus::Active => 2,
            ServiceStatus::Suspended | ServiceStatus::Expired => 3,
            ServiceStatus::Processing => 5,
        }
    }

    /// The machine code of `<item_status orig="…">`.
    pub fn orig(self) -> &'static str {
        match self {
            ServiceStatus::Ordered => "1",
            ServiceStatus::Active => "2",
            ServiceStatus::Suspended => "3_employeesuspend",
            ServiceStatus::Expired => "3_autosuspend",
            ServiceStatus::Processing => "5_open",
        }
    }

    /// The English label, the text of `<item_status>`.
    pub fn label(self) -> &'static str {
        match self {
            ServiceStatus::Ordered => "Ordered",
            ServiceStatus::Active => "Active",
            ServiceStatus::Suspended => "Suspended by Administrator",
            ServiceStatus::Expired => "Suspended",
            ServiceStatus::Processing => "Processing",
        }
    }
}

/// A module ordered for a licence.
///
/// In a state file, `status` defaults to `active`, `expires` to `period` months after the
/// state's `today`, and the rest to nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ServiceFile")]
pub struct Service {
    /// The service ID: `/doc/id` of the order, `elid` of later calls.
    pub id: u64,
    /// The licence it is bound to.
    pub licence: String,
    /// The tariff it was ordered on.
    pub tariff: u64,
    /// Months ordered.
    pub period: u16,
    /// Months it renews for automatically; `None` when it does not.
    pub autoprolong: Option<u16>,
    /// Periods it was renewed for, in order: by `service.prolong`, or automatically by the
    /// clock at expiry when it has [`Service::autoprolong`].
    pub renewals: Vec<u16>,
    /// What it is doing.
    pub status: ServiceStatus,
    /// The day it expires: when the clock reaches it, it is renewed or suspended.
    pub expires: Date,
    /// `remoteid` of the order: the reseller's own reference; `None` when not sent or empty.
    pub remoteid: Option<String>,
    /// The tariff's [`Tariff::required_fields`] as ordered: name → value.
    pub fields: BTreeMap<String, String>,
}

impl Service {
    /// Whether it has expired on `today`: the clock has reached its expiry day.
    pub fn expired_on(&self, today: Date) -> bool {
        today >= self.expires
    }
}

/// A [`Service`] as written in a file: the fields added later are optional.
#[derive(Deserialize)]
struct ServiceFile {
    id: u64,
    licence: String,
    tariff: u64,
    period: u16,
    #[serde(default)]
    autoprolong: Option<u16>,
    #[serde(default)]
    renewals: Vec<u16>,
    #[serde(default)]
    status: ServiceStatus,
    #[serde(default)]
    expires: Option<Date>,
    #[serde(default)]
    remoteid: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

impl ServiceFile {
    fn into_service(self, today: Date) -> Service {
        let expires = self.expires.unwrap_or_else(|| {
            today
                .add_months(u32::from(self.period))
                .unwrap_or(Date::MAX)
        });
        Service {
            id: self.id,
            licence: self.licence,
            tariff: self.tariff,
            period: self.period,
            autoprolong: self.autoprolong,
            renewals: self.renewals,
            status: self.status,
            expires,
            remoteid: self.remoteid.filter(|r| !r.is_empty()),
            fields: self.fields,
        }
    }
}

impl From<ServiceFile> for Service {
    /// Read alone, a service without `expires` expires `period` months after
    /// [`DEFAULT_TODAY`]; inside a state, after the state's `today`.
    fn from(file: ServiceFile) -> Service {
        file.into_service(DEFAULT_TODAY)
    }
}

/// Everything the simulated upstream knows about the partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateFile")]
pub struct State {
    /// Credentials and balance.
    pub account: Account,
    /// The panel licences the partner may order for: licence ID → IP.
    pub licences: BTreeMap<String, IpAddr>,
    /// The module tariffs sold, in price list order.
    pub tariffs: Vec<Tariff>,
    /// The module services ordered so far.
    pub services: Vec<Service>,
    /// The lowest ID the next service may get; IDs are never reused after a removal.
    pub next_service_id: u64,
    /// The simulated day: orders and renewals date from it, and services expire against it.
    /// Moved only on purpose ([`crate::Simulator::advance_days`], `POST /sim/clock`).
    pub today: Date,
    /// How many days before its expiry a service may be renewed at the earliest; any time
    /// when `None`.
    pub renew_window_days: Option<u32>,
}

/// A [`State`] as written in a file: everything but the account is optional.
#[derive(Deserialize)]
struct StateFile {
    account: Account,
    #[serde(default)]
    licences: BTreeMap<String, IpAddr>,
    #[serde(default)]
    tariffs: Vec<Tariff>,
    #[serde(default)]
    services: Vec<ServiceFile>,
    #[serde(default)]
    next_service_id: u64,
    #[serde(default = "default_today")]
    today: Date,
    #[serde(default)]
    renew_window_days: Option<u32>,
}

impl From<StateFile> for State {
    fn from(file: StateFile) -> State {
        let today = file.today;
        State {
            account: file.account,
            licences: file.licences,
            tariffs: file.tariffs,
            services: file
                .services
                .into_iter()
                .map(|s| s.into_service(today))
                .collect(),
            next_service_id: file.next_service_id,
            today,
            renew_window_days: file.renew_window_days,
        }
    }
}

/// Why a state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("not a state in JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Not TOML of the expected shape.
    #[error("not a state in TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// Well-formed, but inconsistent.
    #[error("inconsistent state: {0}")]
    Invalid(String),
}

impl State {
    /// Reads a state file: TOML if its name ends in `.toml`, JSON otherwise.
    pub fn load(path: &Path) -> Result<State, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
            path: path.to_owned(),
            source,
        })?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
        {
            State::from_toml(&text)
        } else {
            State::from_json(&text)
        }
    }

    /// Parses and checks a state in JSON.
    pub fn from_json(text: &str) -> Result<State, StateError> {
        let state: State = serde_json::from_str(text)?;
        state.validate()?;
        Ok(state)
    }

    /// Parses and checks a state in TOML.
    pub fn from_toml(text: &str) -> Result<State, StateError> {
        let state: State = toml::from_str(text)?;
        state.validate()?;
        Ok(state)
    }

    /// Checks what serde cannot: unique IDs, and services that name known tariffs and licences.
    pub fn validate(&self) -> Result<(), StateError> {
        let invalid = |why: String| Err(StateError::Invalid(why));
        let account = &self.account;
        if account.user.is_empty() || account.user.contains(':') {
            return invalid("the user must be non-empty and without `:`".to_owned());
        }
        if account.currency.trim().is_empty() {
            return invalid("the currency must be named".to_owned());
        }
        for (i, tariff) in self.tariffs.iter().enumerate() {
            if self.tariffs[..i].iter().any(|t| t.id == tariff.id) {
                return invalid(format!("tariff {} is listed twice", tariff.id));
            }
            check_periods(tariff.id, &account.currency, &tariff.prices)?;
            for (j, other) in tariff.other_prices.iter().enumerate() {
                let currency = other.currency.trim();
                let repeated = currency.eq_ignore_ascii_case(account.currency.trim())
                    || tariff.other_prices[..j]
                        .iter()
                        .any(|o| o.currency.trim().eq_ignore_ascii_case(currency));
                if currency.is_empty() || repeated {
                    return invalid(format!(
                        "tariff {}: other prices in `{}`, a currency unnamed or already priced",
                        tariff.id, other.currency
                    ));
                }
                check_periods(tariff.id, currency, &other.prices)?;
            }
            for (j, field) in tariff.required_fields.iter().enumerate() {
                if field.trim().is_empty() || tariff.required_fields[..j].contains(field) {
                    return invalid(format!(
                        "tariff {}: required field `{field}` is empty or listed twice",
                        tariff.id
                    ));
                }
            }
        }
        for (i, service) in self.services.iter().enumerate() {
            if self.services[..i].iter().any(|s| s.id == service.id) {
                return invalid(format!("service {} is listed twice", service.id));
            }
            if self.tariff(service.tariff).is_none() {
                return invalid(format!(
                    "service {} names unknown tariff {}",
                    service.id, service.tariff
                ));
            }
            if !self.licences.contains_key(&service.licence) {
                return invalid(format!(
                    "service {} names unknown licence {}",
                    service.id, service.licence
                ));
            }
        }
        Ok(())
    }

    /// The tariff with this ID.
    pub fn tariff(&self, id: u64) -> Option<&Tariff> {
        self.tariffs.iter().find(|t| t.id == id)
    }

    /// The service with this ID.
    pub fn service(&self, id: u64) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// Hands out a service ID no service had before.
    pub(crate) fn allocate_service_id(&mut self) -> u64 {
        let above_existing = self.services.iter().map(|s| s.id.saturating_add(1)).max();
        let id = above_existing
            .unwrap_or(0)
            .max(self.next_service_id)
            .max(FIRST_SERVICE_ID);
        self.next_service_id = id.saturating_add(1);
        id
    }
}

/// Refuses a price list with a period of zero months or one listed twice.
fn check_periods(tariff: u64, currency: &str, prices: &[Price]) -> Result<(), StateError> {
    for (j, price) in prices.iter().enumerate() {
        if price.months == 0 || prices[..j].iter().any(|p| p.months == price.months) {
            return Err(StateError::Invalid(format!(
                "tariff {tariff}: period of {} months in {currency} is zero or listed twice",
                price.months
            )));
        }
    }
    Ok(())
}

impl Default for State {
    /// The shipped default: user `partner`, password `secret`, 100.0000 EUR, three licences,
    /// the module tariffs for accounts outside Russia from the vendor's table, and the day
    /// [`DEFAULT_TODAY`]. Dr.Web pro is also sold for 3 months and priced in RUB; BitNinja
    /// has a trial, a 6-month period and requires `bitninja_email`.
    fn default() -> State {
        let prices = |list: &[(u16, i64)]| -> Vec<Price> {
            list.iter()
                .map(|&(months, ten_thousandths)| Price {
                    months,
                    cost: Amount(Decimal::new(ten_thousandths, 4)),
                })
                .collect()
        };
        let tariff = |id, intname: &str, name: &str, kind: &str, list: &[(u16, i64)]| Tariff {
            id,
            intname: intname.to_owned(),
            name: name.to_owned(),
            additionintname: kind.to_owned(),
            prices: prices(list),
            orderable: true,
            trial: false,
            other_prices: Vec::new(),
            required_fields: Vec::new(),
            name_ru: None,
        };
        let drweb = |id, edition: &str, list: &[(u16, i64)]| Tariff {
            name_ru: Some(format!("Dr.Web для ispmanager 6 {edition}")),
            ..tariff(
                id,
                &format!("drweb_{edition}"),
                &format!("Dr.Web for ispmanager 6 {edition}"),
                "DrWeb",
                list,
            )
        };
        let licence = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        State {
            account: Account {
                user: "partner".to_owned(),
                password: "secret".to_owned(),
                balance: Amount(Decimal::new(100_0000, 4)),
                currency: "EUR".to_owned(),
            },
            licences: BTreeMap::from([
                ("184431".to_owned(), licence(192, 0, 2, 10)),
                ("184432".to_owned(), licence(192, 0, 2, 11)),
                ("184433".to_owned(), licence(198, 51, 100, 7)),
            ]),
            tariffs: vec![
                drweb(55361, "lite", &[(1, 3_5000), (12, 35_0000)]),
                Tariff {
                    other_prices: vec![CurrencyPrices {
                        currency: "RUB".to_owned(),
                        prices: prices(&[(1, 690_0000), (3, 1950_0000), (12, 6900_0000)]),
                    }],
                    ..drweb(55362, "pro", &[(1, 6_9000), (3, 19_5000), (12, 69_0000)])
                },
                drweb(55363, "host", &[(1, 13_9000), (12, 139_0000)]),
                tariff(
                    23221,
                    "ddosguard",
                    "DDoS-GUARD",
                    "DDoSGUARD",
                    &[(1, 10_0000)],
                ),
                Tariff {
                    trial: true,
                    required_fields: vec!["bitninja_email".to_owned()],
                    ..tariff(
                        55371,
                        "bitninja",
                        "BitNinja",
                        "BitNinja",
                        &[(1, 9_9000), (6, 54_0000), (12, 99_0000)],
                    )
                },
            ],
            services: Vec::new(),
            next_service_id: FIRST_SERVICE_ID,
            today: DEFAULT_TODAY,
            renew_window_days: None,
        }
    }
}

fn default_today() -> Date {
    DEFAULT_TODAY
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(s: &str) -> Amount {
        s.parse().expect("an amount")
    }

    fn date(s: &str) -> Date {
        s.parse().expect("a date")
    }

    fn service(id: u64, licence: &str) -> Service {
        Service {
            id,
            licence: licence.to_owned(),
            tariff: 55361,
            period: 1,
            autoprolong: None,
            renewals: Vec::new(),
            status: ServiceStatus::Active,
            expires: date("2027-01-01"),
            remoteid: None,
            fields: BTreeMap::new(),
        }
    }

    #[test]
    fn money_is_shown_rounded_to_cents_with_its_currency() {
        assert_eq!(amount("100").display_with("EUR"), "100.00 EUR");
        assert_eq!(amount("3.5").display_with("EUR"), "3.50 EUR");
        assert_eq!(amount("31.4999").display_with("EUR"), "31.50 EUR");
        assert_eq!(amount("0.0049").display_with("RUB"), "0.00 RUB");
        assert_eq!(amount("0.005").display_with("USD"), "0.01 USD");
        assert_eq!(Amount::ZERO.display_with("EUR"), "0.00 EUR");
    }

    #[test]
    fn amounts_are_exact_and_printed_with_four_decimals() {
        assert_eq!(amount("3.5").to_string(), "3.5000");
        assert_eq!(amount("100").to_string(), "100.0000");
        assert_eq!(amount("0.0001").to_string(), "0.0001");
        assert_eq!(amount("2.50000").to_string(), "2.5000");
        for bad in [
            "-1", "+1", "0.00001", "1e3", "1_000", "abc", "", ".", "1.2.3", "NaN",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad}");
        }
        assert_eq!(amount("10").checked_sub(amount("3.5")), Some(amount("6.5")));
        assert_eq!(amount("3.4999").checked_sub(amount("3.5")), None);
        assert_eq!(amount("3.5").checked_sub(amount("3.5")), Some(Amount::ZERO));
    }

    #[test]
    fn amounts_are_read_from_strings_only() {
        assert!(serde_json::from_str::<Amount>("\"1.25\"").is_ok());
        assert!(serde_json::from_str::<Amount>("1.25").is_err());
        assert_eq!(
            serde_json::to_string(&amount("1.25")).expect("json"),
            "\"1.2500\""
        );
    }

    #[test]
    fn the_default_state_is_consistent_and_sells_the_reference_tariffs() {
        let state = State::default();
        state.validate().expect("valid");
        let ids: Vec<u64> = state.tariffs.iter().map(|t| t.id).collect();
        assert_eq!(ids, [55361, 55362, 55363, 23221, 55371]);
        assert!(state.tariffs.iter().all(|t| t.cost(1).is_some()));
        assert_eq!(state.account.balance.to_string(), "100.0000");
    }

    #[test]
    fn the_password_is_never_written_out() {
        let state = State::default();
        let json = serde_json::to_string(&state).expect("json");
        assert!(!json.contains("secret"), "{json}");
        assert!(!format!("{state:?}").contains("secret"));
    }

    #[test]
    fn states_load_from_json_and_toml() {
        let json = r#"{
            "account": {"user": "u", "password": "p", "balance": "5.0000", "currency": "USD"},
            "licences": {"7": "203.0.113.5"},
            "tariffs": [{"id": 1, "intname": "i", "name": "n", "additionintname": "a",
                         "prices": [{"months": 1, "cost": "2.5"}], "orderable": false}],
            "services": [{"id": 3, "licence": "7", "tariff": 1, "period": 1}]
        }"#;
        let from_json = State::from_json(json).expect("json state");
        let toml = r#"
            [account]
            user = "u"
            password = "p"
            balance = "5.0000"
            currency = "USD"

            [licences]
            "7" = "203.0.113.5"

            [[tariffs]]
            id = 1
            intname = "i"
            name = "n"
            additionintname = "a"
            orderable = false
            prices = [{ months = 1, cost = "2.5" }]

            [[services]]
            id = 3
            licence = "7"
            tariff = 1
            period = 1
        "#;
        let from_toml = State::from_toml(toml).expect("toml state");
        assert_eq!(from_json, from_toml);
        // TOML dates may be written bare or quoted.
        for today in ["2027-01-31", "\"2027-01-31\""] {
            let dated = toml.replacen(
                "[account]",
                &format!("today = {today}\nrenew_window_days = 5\n[account]"),
                1,
            );
            let dated = State::from_toml(&dated).expect("a dated toml state");
            assert_eq!(dated.today, date("2027-01-31"));
            assert_eq!(dated.renew_window_days, Some(5));
            assert_eq!(dated.services[0].expires, date("2027-02-28"));
        }
        assert!(!from_json.tariffs[0].orderable);
        assert_eq!(from_json.service(3).map(|s| s.autoprolong), Some(None));
    }

    #[test]
    fn a_state_file_without_the_lifecycle_fields_still_loads() {
        let json = r#"{
            "account": {"user": "u", "password": "p", "balance": "5.0000", "currency": "USD"},
            "licences": {"7": "203.0.113.5"},
            "tariffs": [{"id": 1, "intname": "i", "name": "n", "additionintname": "a",
                         "prices": [{"months": 12, "cost": "2.5"}]}],
            "services": [{"id": 3, "licence": "7", "tariff": 1, "period": 12,
                          "autoprolong": 12, "renewals": [12]}]
        }"#;
        let state = State::from_json(json).expect("an old state");
        assert_eq!(state.today, DEFAULT_TODAY);
        assert_eq!(state.today.to_string(), "2026-12-01");
        assert_eq!(state.renew_window_days, None);
        let tariff = &state.tariffs[0];
        assert!(!tariff.trial && tariff.other_prices.is_empty());
        assert!(tariff.required_fields.is_empty() && tariff.name_ru.is_none());
        let service = &state.services[0];
        assert_eq!(service.status, ServiceStatus::Active);
        assert_eq!(service.expires, date("2027-12-01"));
        assert_eq!(
            (service.remoteid.as_deref(), service.fields.len()),
            (None, 0)
        );

        // Expiry defaults count from the state's own day.
        let dated = json.replace("\"licences\"", "\"today\": \"2027-01-31\", \"licences\"");
        let dated = State::from_json(&dated).expect("a dated state");
        assert_eq!(dated.services[0].expires, date("2028-01-31"));
        let shifted = dated.services[0].clone();
        assert_eq!(
            serde_json::from_str::<Service>(
                r#"{"id": 3, "licence": "7", "tariff": 1, "period": 1}"#
            )
            .map(|s| s.expires)
            .ok(),
            Some(date("2027-01-01")),
            "read alone, a service counts from the default day ({shifted:?})"
        );
    }

    #[test]
    fn the_readme_state_file_loads() {
        let readme = include_str!("../README.md");
        let toml = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a TOML example in the README");
        let state = State::from_toml(toml).expect("the README's state");
        assert_eq!(state.renew_window_days, Some(30));
        let tariff = &state.tariffs[0];
        assert!(tariff.trial);
        assert_eq!(tariff.other_prices[0].currency, "RUB");
        let service = &state.services[0];
        assert_eq!(service.expires, date("2027-06-01"));
        assert_eq!(service.fields["bitninja_email"], "ops@example.com");
        assert_eq!(service.remoteid.as_deref(), Some("ord-1"));
    }

    #[test]
    fn the_lifecycle_fields_round_trip() {
        let mut state = State {
            today: date("2027-03-15"),
            renew_window_days: Some(30),
            ..State::default()
        };
        let mut bought = service(100_001, "184431");
        bought.status = ServiceStatus::Expired;
        bought.remoteid = Some("order-42".to_owned());
        bought
            .fields
            .insert("bitninja_email".to_owned(), "a@example.com".to_owned());
        state.services.push(bought);
        let json = serde_json::to_string(&state).expect("json");
        assert!(json.contains(r#""status":"expired""#), "{json}");
        assert!(json.contains(r#""expires":"2027-01-01""#), "{json}");
        assert!(json.contains(r#""today":"2027-03-15""#), "{json}");
        let back = State::from_json(&json.replace(
            r#""user":"partner""#,
            r#""user":"partner","password":"secret""#,
        ))
        .expect("reloads");
        assert_eq!(back, state);
    }

    #[test]
    fn the_default_state_sells_trials_six_and_three_months_and_roubles() {
        let state = State::default();
        let bitninja = state.tariff(55371).expect("BitNinja");
        assert!(bitninja.trial);
        assert_eq!(
            bitninja.cost(6).map(|c| c.to_string()).as_deref(),
            Some("54.0000")
        );
        assert_eq!(bitninja.required_fields, ["bitninja_email"]);
        let pro = state.tariff(55362).expect("Dr.Web pro");
        assert_eq!(
            pro.cost(3).map(|c| c.to_string()).as_deref(),
            Some("19.5000")
        );
        assert_eq!(pro.other_prices[0].currency, "RUB");
        let lite = state.tariff(55361).expect("Dr.Web lite");
        assert_eq!(lite.prices[0].months, 1);
        assert_eq!(
            lite.cost(1).map(|c| c.to_string()).as_deref(),
            Some("3.5000")
        );
        assert_eq!(
            lite.cost(12).map(|c| c.to_string()).as_deref(),
            Some("35.0000")
        );
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let mut twice = State::default();
        twice.tariffs.push(twice.tariffs[0].clone());
        assert!(matches!(twice.validate(), Err(StateError::Invalid(_))));

        let mut orphan = State::default();
        orphan.services.push(service(1, "nope"));
        assert!(matches!(orphan.validate(), Err(StateError::Invalid(_))));

        let mut euros_twice = State::default();
        euros_twice.tariffs[0].other_prices.push(CurrencyPrices {
            currency: "eur".to_owned(),
            prices: Vec::new(),
        });
        assert!(matches!(
            euros_twice.validate(),
            Err(StateError::Invalid(_))
        ));

        let mut zero = State::default();
        zero.tariffs[1].other_prices[0].prices[0].months = 0;
        assert!(matches!(zero.validate(), Err(StateError::Invalid(_))));

        let mut blank = State::default();
        blank.tariffs[4].required_fields.push(" ".to_owned());
        assert!(matches!(blank.validate(), Err(StateError::Invalid(_))));

        let bad_day = r#"{"account": {"user": "u", "password": "p", "balance": "5",
                          "currency": "EUR"}, "today": "2026-02-30"}"#;
        assert!(matches!(
            State::from_json(bad_day),
            Err(StateError::Json(_))
        ));

        let float = r#"{"account": {"user": "u", "password": "p", "balance": 5.0,
                        "currency": "EUR"}}"#;
        assert!(matches!(State::from_json(float), Err(StateError::Json(_))));
    }

    #[test]
    fn service_ids_are_never_reused() {
        let mut state = State::default();
        let first = state.allocate_service_id();
        assert_eq!(first, FIRST_SERVICE_ID);
        assert_eq!(state.allocate_service_id(), first + 1);
        state.services.push(service(500_000, "184431"));
        assert_eq!(state.allocate_service_id(), 500_001);
    }
}
