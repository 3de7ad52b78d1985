//! The partner's account upstream, as data: credentials, balance, licences, module tariffs and
//! the module services ordered so far. Loaded from JSON or TOML, checked once, and cloned for
//! the control API; the BILLmanager calls that change it live in [`crate::billmgr`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Service IDs handed out by the simulator start above this, so that they look like upstream's
/// and never collide with the small IDs a test writes in a state file.
const FIRST_SERVICE_ID: u64 = 100_001;

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

/// A module ordered for a licence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub autoprolong: Option<u16>,
    /// Periods it was renewed for with `service.prolong`, in order.
    #[serde(default)]
    pub renewals: Vec<u16>,
}

/// Everything the simulated upstream knows about the partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Credentials and balance.
    pub account: Account,
    /// The panel licences the partner may order for: licence ID → IP.
    #[serde(default)]
    pub licences: BTreeMap<String, IpAddr>,
    /// The module tariffs sold, in price list order.
    #[serde(default)]
    pub tariffs: Vec<Tariff>,
    /// The module services ordered so far.
    #[serde(default)]
    pub services: Vec<Service>,
    /// The lowest ID the next service may get; IDs are never reused after a removal.
    #[serde(default)]
    pub next_service_id: u64,
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
            for (j, price) in tariff.prices.iter().enumerate() {
                if price.months == 0 || tariff.prices[..j].iter().any(|p| p.months == price.months)
                {
                    return invalid(format!(
                        "tariff {}: period of {} months is zero or listed twice",
                        tariff.id, price.months
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

impl Default for State {
    /// The shipped default: user `partner`, password `secret`, 100.0000 EUR, three licences,
    /// and the module tariffs for accounts outside Russia from the vendor's table.
    fn default() -> State {
        let tariff = |id, intname: &str, name: &str, kind: &str, prices: &[(u16, i64)]| Tariff {
            id,
            intname: intname.to_owned(),
            name: name.to_owned(),
            additionintname: kind.to_owned(),
            prices: prices
                .iter()
                .map(|&(months, ten_thousandths)| Price {
                    months,
                    cost: Amount(Decimal::new(ten_thousandths, 4)),
                })
                .collect(),
            orderable: true,
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
                tariff(
                    55361,
                    "drweb_lite",
                    "Dr.Web for ispmanager 6 lite",
                    "DrWeb",
                    &[(1, 3_5000), (12, 35_0000)],
                ),
                tariff(
                    55362,
                    "drweb_pro",
                    "Dr.Web for ispmanager 6 pro",
                    "DrWeb",
                    &[(1, 6_9000), (12, 69_0000)],
                ),
                tariff(
                    55363,
                    "drweb_host",
                    "Dr.Web for ispmanager 6 host",
                    "DrWeb",
                    &[(1, 13_9000), (12, 139_0000)],
                ),
                tariff(
                    23221,
                    "ddosguard",
                    "DDoS-GUARD",
                    "DDoSGUARD",
                    &[(1, 10_0000)],
                ),
                tariff(
                    55371,
                    "bitninja",
                    "BitNinja",
                    "BitNinja",
                    &[(1, 9_9000), (12, 99_0000)],
                ),
            ],
            services: Vec::new(),
            next_service_id: FIRST_SERVICE_ID,
        }
    }
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
        assert!(!from_json.tariffs[0].orderable);
        assert_eq!(from_json.service(3).map(|s| s.autoprolong), Some(None));
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let mut twice = State::default();
        twice.tariffs.push(twice.tariffs[0].clone());
        assert!(matches!(twice.validate(), Err(StateError::Invalid(_))));

        let mut orphan = State::default();
        orphan.services.push(Service {
            id: 1,
            licence: "nope".to_owned(),
            tariff: 55361,
            period: 1,
            autoprolong: None,
            renewals: Vec::new(),
        });
        assert!(matches!(orphan.validate(), Err(StateError::Invalid(_))));

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
        state.services.push(Service {
            id: 500_000,
            licence: "184431".to_owned(),
            tariff: 55361,
            period: 1,
            autoprolong: None,
            renewals: Vec::new(),
        });
        assert_eq!(state.allocate_service_id(), 500_001);
    }
}
