//! The host's configuration: one TOML file, or the embedded defaults when there is none.
//!
//! Errors name the file and the key. Amounts are decimal strings (or whole numbers), never
//! floats. The `[pricing]` table belongs to the plugin: the host passes it on as JSON and the
//! plugin checks it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits::Limits;
use crate::money::{Amount, Currency, Months};

/// The embedded default configuration.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Where the embedded defaults are said to come from in messages.
pub const DEFAULTS_NAME: &str = "<embedded defaults>";

/// The upstream functions a plugin may call when `upstream.functions` names none: the order
/// flow's.
pub const DEFAULT_FUNCTIONS: &[&str] = &[
    "addition.order.param",
    "addition.edit",
    "service.prolong",
    "addition.suspend",
    "addition.resume",
    "addition.delete",
    "addition",
    "dashboard.info",
    "pricelist.export",
];

/// The functions that only read, whatever their parameters: the price list, the list of the
/// partner's modules, the account's dashboard (its balance).
pub const DEFAULT_READ_FUNCTIONS: &[&str] = &["pricelist.export", "addition", "dashboard.info"];

/// The forms that only read when sent without `sok`: a module's edit form, and the renewal
/// form (the quote).
pub const DEFAULT_FORM_FUNCTIONS: &[&str] = &["addition.edit", "service.prolong"];

/// A configuration that could not be read, named by file and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The configuration file, or [`DEFAULTS_NAME`].
    pub file: String,
    /// The dotted key at fault, e.g. `catalogue.modules[2].cost.month`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` in the configuration `source`.
    pub fn new(source: &Source, key: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError {
            file: source.name(),
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// Where a configuration came from: file paths in it are relative to its folder.
#[derive(Clone, Debug, Default)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// The embedded defaults.
    #[default]
    Embedded,
}

impl Source {
    /// A name for messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => DEFAULTS_NAME.to_owned(),
        }
    }

    /// Resolves a path written in the configuration.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match self {
            Source::File(file) => file.parent().unwrap_or(Path::new(".")).join(path),
            Source::Embedded => path.to_owned(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: Server,
    /// The plugin that prices and orders.
    #[serde(default)]
    pub plugin: PluginConfig,
    /// What plugins may ask of upstream.
    #[serde(default)]
    pub upstream: UpstreamConfig,
    /// The billing system's API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Orders: where they are kept and how they are placed.
    #[serde(default)]
    pub orders: OrdersConfig,
    /// Events for the billing system.
    #[serde(default)]
    pub events: EventsConfig,
    /// The operator console.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The modules the partner resells.
    pub catalogue: CatalogueConfig,
    /// The plugin's pricing settings, passed to it as they are.
    #[serde(default)]
    pub pricing: toml::Table,
    /// Where the configuration came from.
    #[serde(skip)]
    pub source: Source,
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The longest query string (and form body) accepted, in bytes.
    pub max_query_bytes: usize,
    /// Price lists kept once rendered, per configuration and plugin; 0 renders every request.
    pub answer_cache: usize,
    /// More paths that serve the panel (price export and Buy) besides `/`, `/billmgr` and
    /// `/manager/billmgr`, e.g. `/billing/ispmanager`; each one's order pages are beside it.
    pub paths: Vec<String>,
    /// The HTTP status of the panel's error documents.
    pub panel_errors: PanelErrors,
    /// The `lang` values passed on to the plugin (compared ignoring case); any other is passed
    /// as none, so that invented values cannot each become an answer of their own.
    pub languages: Vec<String>,
    /// The longest a peer may take to send a request's head, in milliseconds, counted from
    /// when it connects or its previous answer was sent: also how long an idle connection is
    /// kept open.
    pub header_timeout_ms: u64,
    /// The longest a peer may take to send a request's body, in milliseconds.
    pub body_timeout_ms: u64,
    /// The largest body of an API request, in bytes.
    pub max_api_body_bytes: usize,
    /// The most connections served at once; past it, new connections wait until one closes.
    pub max_connections: usize,
    /// On SIGTERM or Ctrl-C, the longest to wait for open connections to finish, in
    /// milliseconds; then they are closed.
    pub shutdown_timeout_ms: u64,
    /// A second address serving `/metrics`, `/healthz` and `/readyz` without a token; without
    /// it, `/metrics` is served on `listen` behind the API token.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_query_bytes: 4096,
            answer_cache: 256,
            paths: Vec::new(),
            panel_errors: PanelErrors::Billmanager,
            languages: vec!["en".to_owned(), "ru".to_owned()],
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_api_body_bytes: 16_384,
            max_connections: 512,
            shutdown_timeout_ms: 10_000,
            metrics_listen: None,
        }
    }
}

/// The HTTP status the panel's error documents are sent with.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PanelErrors {
    /// `200`, as BILLmanager sends them: a client reads the `<error>` of any answer, and one
    /// that reads the body of a `200` only still sees the message.
    #[default]
    Billmanager,
    /// `4xx` for the caller's mistakes, `5xx` for the partner's.
    Http,
}

/// The paths that always serve the panel.
pub const PANEL_PATHS: &[&str] = &["/", "/billmgr", "/manager/billmgr"];

/// `[plugin]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// A component file; without it the plugin built into the host serves.
    pub path: Option<PathBuf>,
    /// The SHA-256 the file must have (hex); a mismatch refuses to load it.
    pub sha256: Option<String>,
    /// Instantiate from a pool of pre-reserved slots (faster; reserves address space for
    /// `limits.concurrent_calls` instances).
    pub pooling: bool,
    /// Cache compiled code on disk, so that a restart does not recompile.
    pub cache: bool,
    /// Where; by default `$XDG_CACHE_HOME/ispmanager-reseller` or `~/.cache/ispmanager-reseller`.
    pub cache_dir: Option<PathBuf>,
    /// Bounds on every call into the plugin.
    pub limits: Limits,
    /// The pricing policy joined to a protocol component (the built-in one's, when
    /// `plugin.path` is absent). A whole plugin prices itself and takes none.
    pub policy: PolicyConfig,
    /// A candidate pricing policy run beside the live one (shadow runs), when configured.
    pub candidate: Option<CandidateConfig>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            path: None,
            sha256: None,
            pooling: true,
            cache: true,
            cache_dir: None,
            limits: Limits::default(),
            policy: PolicyConfig::default(),
            candidate: None,
        }
    }
}

/// `[plugin.policy]`: a pricing policy component.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A component of the `pricing-policy` world; without it the built-in markup policy.
    pub path: Option<PathBuf>,
    /// The SHA-256 the file must have (hex); a mismatch refuses to load it.
    pub sha256: Option<String>,
    /// Bounds on every call into the policy.
    pub limits: Limits,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            path: None,
            sha256: None,
            limits: Limits::for_policy(),
        }
    }
}

/// `[plugin.candidate]`: a pricing policy that prices a sample of what the live policy prices,
/// off the serving path, for a report of where the two differ; never an answer to anyone
/// ([`crate::shadow`]). `reseller shadow promote` makes it the live policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    /// A component of the `pricing-policy` world.
    pub path: PathBuf,
    /// The SHA-256 the file must have (hex); a mismatch refuses to load it.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Bounds on every call into the candidate (it runs one call at a time).
    #[serde(default = "Limits::for_policy")]
    pub limits: Limits,
    /// The share of the live policy's answers the candidate prices too, in percent (0 to 100),
    /// spread evenly; the first is always priced.
    #[serde(default = "all_of_them")]
    pub sample_percent: u8,
    /// The candidate's own `[pricing]` settings, when its schema or values differ from the live
    /// policy's; without it the candidate gets the live `[pricing]`.
    #[serde(default)]
    pub pricing: Option<toml::Table>,
}

fn all_of_them() -> u8 {
    100
}

impl PluginConfig {
    /// The compiled-code cache directory, if caching is on and a directory is known.
    pub fn cache_dir(&self, source: &Source) -> Option<PathBuf> {
        if !self.cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(source.resolve(dir));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("ispmanager-reseller"))
    }
}

/// `[upstream]`: the partner's account in ispmanager's client area, and what plugins may ask
/// of it. Without a `url`, nothing is ever sent upstream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The BILLmanager API endpoint, e.g. `https://api-eu.ispmanager.com/billmgr`.
    pub url: Option<String>,
    /// The partner's user name.
    pub user: Option<String>,
    /// The partner's password. Prefer `password_env`.
    pub password: Option<Secret>,
    /// The name of an environment variable holding the password.
    pub password_env: Option<String>,
    /// The longest one call may take, in milliseconds (a plugin's remaining budget may cut it).
    pub timeout_ms: u64,
    /// The longest connecting may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// The largest answer read, in bytes; a longer one reaches the plugin marked truncated.
    pub max_answer_bytes: usize,
    /// The BILLmanager functions a plugin may call.
    pub functions: Vec<String>,
    /// The functions that never change anything upstream: a call of one is never a reason
    /// to doubt an order.
    pub read_functions: Vec<String>,
    /// The forms that change nothing when sent without `sok`.
    pub form_functions: Vec<String>,
    /// Fetch upstream's prices every this many minutes while serving; 0 only on demand.
    pub prices_refresh_minutes: u64,
    /// Read the partner's balance every this many minutes while serving (automatic mode);
    /// 0 only on demand.
    pub balance_minutes: u64,
    /// Warn (log and `balance.low` event) when the balance falls below this amount.
    pub balance_alert: Option<Amount>,
    /// A balance read longer ago than this (seconds) is read again before placing.
    pub balance_max_age_s: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            user: None,
            password: None,
            password_env: None,
            timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            max_answer_bytes: 1 << 20,
            functions: DEFAULT_FUNCTIONS.iter().map(|f| (*f).to_owned()).collect(),
            read_functions: DEFAULT_READ_FUNCTIONS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            form_functions: DEFAULT_FORM_FUNCTIONS
                .iter()
                .map(|f| (*f).to_owned())
                .collect(),
            prices_refresh_minutes: 0,
            balance_minutes: 60,
            balance_alert: None,
            balance_max_age_s: 300,
        }
    }
}

/// Why the upstream password cannot be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// `password_env` names a variable that is not set.
    #[error("the environment variable {0} is not set")]
    NotSet(String),
    /// Both ways are configured.
    #[error("set password or password_env, not both")]
    Both,
    /// Neither is.
    #[error("set password or password_env")]
    Neither,
}

impl UpstreamConfig {
    /// The password, from the file or from the environment variable it names.
    pub fn password(&self) -> Result<String, PasswordError> {
        match (&self.password, &self.password_env) {
            (Some(Secret(p)), None) => Ok(p.clone()),
            (None, Some(var)) => std::env::var(var).map_err(|_| PasswordError::NotSet(var.clone())),
            (Some(_), Some(_)) => Err(PasswordError::Both),
            (None, None) => Err(PasswordError::Neither),
        }
    }
}

/// A secret: never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `[api]`: the billing system's API under `/api/v1/`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// The bearer token; without one the API is off.
    pub token: Option<Secret>,
}

/// How paid orders reach upstream.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderMode {
    /// The host places each paid order upstream through the plugin's `place` hook.
    Automatic,
    /// Nothing is sent upstream: an operator orders by hand and marks the order placed.
    Manual,
}

/// `[orders]`: the order database and how orders are placed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// `automatic` or `manual`; by default automatic when `upstream.url` is set, manual when not.
    pub mode: Option<OrderMode>,
    /// The SQLite database file, relative to the configuration file (to the working directory
    /// for the embedded defaults); or a `postgres://user@host/db` URL, for several hosts on
    /// one PostgreSQL database.
    pub database: PathBuf,
    /// PostgreSQL: the name of an environment variable holding the database password (kept
    /// out of the URL and the configuration file).
    pub database_password_env: Option<String>,
    /// PostgreSQL: connections at most in this host's pool.
    pub database_connections: u32,
    /// PostgreSQL: how long a host's claim on an order it places (or an operation it runs)
    /// lasts without renewal, in milliseconds; a host renews its claims every third of it.
    /// When a host stops, the others settle its claims once they ran out.
    pub claim_lease_ms: u64,
    /// Where the Buy redirect sends the user: a URL with `{order_id}` (and optionally
    /// `{amount}`, `{currency}`) in it. Without it the host shows its own order page.
    pub checkout_url: Option<String>,
    /// The period a Buy redirect orders; its price is the price list's for it.
    pub period_months: Months,
    /// Order with `autoprolong` equal to the period (`true`: upstream renews the module from
    /// the partner's balance every period, whether or not the end user pays the partner
    /// again) or `null` (`false`, the default: the module is renewed when the billing system
    /// says the end user paid for it).
    pub autoprolong: bool,
    /// The wait before the first retry of an order whose request never left, in milliseconds;
    /// it doubles with every attempt.
    pub retry_initial_ms: u64,
    /// The longest wait between retries, in milliseconds.
    pub retry_max_ms: u64,
    /// Attempts after which an order whose request never left is marked failed.
    pub max_attempts: u32,
    /// How often the placement worker looks for paid orders that are due, in milliseconds.
    pub poll_ms: u64,
    /// Hold a paid order whose upstream cost the partner's balance cannot cover, instead of
    /// sending it to fail.
    pub check_balance: bool,
    /// Announce a renewal as due (`renewal.due`) this many days before the expiry.
    pub renewal_notice_days: u32,
    /// What happens to a module not renewed by its expiry (after `lapse_grace_days`).
    pub lapse: Lapse,
    /// Days after the expiry before the lapse policy acts.
    pub lapse_grace_days: u32,
    /// Sync the expiry and status of placed modules with upstream every this many minutes
    /// (automatic mode); 0 turns it off.
    pub sync_minutes: u64,
    /// Reconcile an order or operation in doubt this many seconds after it arose, and at most
    /// this often (read-only; resolved only when found under its `remoteid`); 0 turns it off.
    pub reconcile_after_s: u64,
    /// Cancel an unpaid order this many hours after its Buy; 0 keeps them.
    pub unpaid_expiry_hours: u64,
    /// Delete orders cancelled without ever being paid this many days later; 0 keeps them.
    pub purge_after_days: u64,
    /// Buy redirects accepted per client address per minute; 0 is unlimited.
    pub buys_per_address_per_minute: u32,
    /// Buy redirects accepted per licence per minute; 0 is unlimited.
    pub buys_per_licence_per_minute: u32,
}

/// What happens to a module its end user did not renew by its expiry.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Lapse {
    /// Nothing is sent: it expires upstream by itself. Reported (`order.lapsed`).
    #[default]
    Expire,
    /// It is suspended upstream.
    Suspend,
    /// It is removed upstream.
    Remove,
}

/// `[console]`: the operator console under `/console/`. It is on when an API token or an
/// operator password is configured; either signs in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The operator password. Prefer `password_env`.
    pub password: Option<Secret>,
    /// The name of an environment variable holding it.
    pub password_env: Option<String>,
    /// Mark the session cookie `Secure`; by default, when the request came over TLS (a proxy's
    /// `X-Forwarded-Proto: https`).
    pub secure_cookie: Option<bool>,
    /// How long a session lasts, in minutes.
    pub session_minutes: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            password: None,
            password_env: None,
            secure_cookie: None,
            session_minutes: 480,
        }
    }
}

impl ConsoleConfig {
    /// The operator password, if one is configured (and its variable set).
    pub fn password(&self) -> Option<String> {
        match (&self.password, &self.password_env) {
            (Some(Secret(p)), _) => Some(p.clone()),
            (None, Some(var)) => std::env::var(var).ok(),
            (None, None) => None,
        }
        .filter(|p| !p.is_empty())
    }
}

/// `[events]`: events for the billing system, delivered to a webhook and served at
/// `/api/v1/events`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Where to `POST` each event; without it events are only served to those who poll.
    pub webhook_url: Option<String>,
    /// The HMAC key of `X-Reseller-Signature`. Prefer `secret_env`.
    pub secret: Option<Secret>,
    /// The name of an environment variable holding the key.
    pub secret_env: Option<String>,
    /// The longest one delivery may take, in milliseconds.
    pub timeout_ms: u64,
    /// How often the outbox is looked at, in milliseconds.
    pub poll_ms: u64,
    /// Days events are kept; 0 keeps them.
    pub keep_days: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            webhook_url: None,
            secret: None,
            secret_env: None,
            timeout_ms: 10_000,
            poll_ms: 1_000,
            keep_days: 30,
        }
    }
}

impl EventsConfig {
    /// The configured webhook, if any.
    pub fn webhook(&self) -> Result<Option<crate::orders::events::Webhook>, String> {
        let Some(url) = &self.webhook_url else {
            return Ok(None);
        };
        let secret = match (&self.secret, &self.secret_env) {
            (Some(Secret(s)), None) => s.clone(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("the environment variable {var} is not set"))?,
            _ => return Err("set events.secret or events.secret_env, not both".to_owned()),
        };
        crate::orders::events::Webhook::new(
            url,
            secret.as_bytes(),
            std::time::Duration::from_millis(self.timeout_ms),
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            mode: None,
            database: PathBuf::from("reseller-orders.sqlite3"),
            database_password_env: None,
            database_connections: 8,
            claim_lease_ms: 30_000,
            checkout_url: None,
            period_months: Months::MONTH,
            autoprolong: false,
            retry_initial_ms: 2_000,
            retry_max_ms: 300_000,
            max_attempts: 8,
            poll_ms: 1_000,
            check_balance: true,
            renewal_notice_days: 7,
            lapse: Lapse::Expire,
            lapse_grace_days: 0,
            sync_minutes: 360,
            reconcile_after_s: 300,
            unpaid_expiry_hours: 72,
            purge_after_days: 30,
            buys_per_address_per_minute: 30,
            buys_per_licence_per_minute: 10,
        }
    }
}

/// The partner's upstream account region, which selects the tariff IDs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Accounts registered in Russia (`api.ispmanager.ru`).
    Ru,
    /// Accounts registered elsewhere (`api-eu.ispmanager.com`).
    Eu,
}

/// `[catalogue]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueConfig {
    /// Which tariff IDs apply.
    pub region: Region,
    /// Currency of upstream costs, unless a module says otherwise.
    pub currency: Currency,
    /// Exchange rates for upstream prices in other currencies: `RUB = "0.0105"` says one
    /// rouble is 0.0105 of the catalogue's currency. Without a rate, a module upstream prices
    /// only in another currency keeps its configured costs and the refresh says why.
    #[serde(default)]
    pub rates: BTreeMap<Currency, Rate>,
    /// The modules, in the order the price list shows them.
    #[serde(default)]
    pub modules: Vec<Module>,
}

/// An exchange rate: a positive decimal with at most ten decimals, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub rust_decimal::Decimal);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d)
            .map_err(|_| D::Error::custom("write a rate as a decimal string, e.g. \"0.0105\""))?;
        let rate: rust_decimal::Decimal = text
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("`{text}` is not a decimal number")))?;
        if rate <= rust_decimal::Decimal::ZERO || rate.normalize().scale() > 10 {
            return Err(D::Error::custom(format!(
                "{text}: a rate is positive, with at most ten decimals"
            )));
        }
        Ok(Rate(rate))
    }
}

/// `[[catalogue.modules]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Service name.
    pub intname: String,
    /// Service name of the module's kind.
    pub additionintname: String,
    /// Display name.
    pub name: String,
    /// Tariff IDs per region.
    pub tariff: Tariff,
    /// Upstream cost per period.
    pub cost: Costs,
    /// Currency of `cost`, when not the catalogue's.
    pub currency: Option<Currency>,
    /// Whether it can be ordered now.
    #[serde(default = "yes")]
    pub orderable: bool,
    /// The module's own order fields, sent upstream with the order (BitNinja's
    /// `bitninja_email`).
    #[serde(default)]
    pub fields: Vec<OrderField>,
}

/// `[[catalogue.modules.fields]]`: an order field a module needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderField {
    /// Its name upstream, e.g. `bitninja_email`: letters, digits and `_`.
    pub name: String,
    /// What the buyer is asked, e.g. "Email for BitNinja notifications".
    pub label: String,
    /// A regular expression the whole value must match.
    pub pattern: Option<String>,
    /// Whether an order cannot be placed without it.
    #[serde(default = "yes")]
    pub required: bool,
}

impl OrderField {
    /// Checks a value: not longer than an order field may be, without control characters,
    /// and matching the pattern. The pattern was compiled when the configuration was read.
    pub fn accepts(&self, value: &str) -> bool {
        let pattern = self.pattern.as_deref().map(anchored);
        value.len() <= crate::orders::MAX_FIELD_LEN
            && !value.chars().any(char::is_control)
            && pattern.is_none_or(|p| regex::Regex::new(&p).is_ok_and(|re| re.is_match(value)))
    }
}

/// A field pattern that must match the whole value.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn yes() -> bool {
    true
}

/// Tariff IDs per region; the configured region's is required, the other one lets a Buy with
/// the other region's ID find the module.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// For accounts in Russia.
    pub ru: Option<u64>,
    /// For other accounts.
    pub eu: Option<u64>,
}

impl Tariff {
    /// The ID in `region`.
    pub fn in_region(self, region: Region) -> Option<u64> {
        match region {
            Region::Ru => self.ru,
            Region::Eu => self.eu,
        }
    }

    /// Whether `id` is this module's ID in either region.
    pub fn is(self, id: u64) -> bool {
        self.ru == Some(id) || self.eu == Some(id)
    }
}

/// Upstream cost per period: `month` (mandatory), `year`, or a number of months as the key
/// (`cost = { month = "9.90", 6 = "54.00", year = "99.00" }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Costs(BTreeMap<Months, Amount>);

impl Costs {
    /// The costs of `month` (and more periods).
    pub fn new(month: Amount, more: impl IntoIterator<Item = (Months, Amount)>) -> Costs {
        let mut periods: BTreeMap<Months, Amount> = more.into_iter().collect();
        periods.insert(Months::MONTH, month);
        Costs(periods)
    }

    /// One month's cost.
    pub fn month(&self) -> Amount {
        self.0.get(&Months::MONTH).copied().unwrap_or_default()
    }

    /// The cost of `months`, when given.
    pub fn get(&self, months: Months) -> Option<Amount> {
        self.0.get(&months).copied()
    }

    /// Every period and its cost, shortest first.
    pub fn iter(&self) -> impl Iterator<Item = (Months, Amount)> + '_ {
        self.0.iter().map(|(m, a)| (*m, *a))
    }
}

impl<'de> Deserialize<'de> for Costs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = BTreeMap::<String, Amount>::deserialize(d)?;
        let mut periods = BTreeMap::new();
        for (key, amount) in raw {
            let months = match key.as_str() {
                "month" => Months::MONTH,
                "year" => Months::YEAR,
                n => n.parse::<Months>().map_err(|_| {
                    D::Error::custom(format!(
                        "`{key}` is not a period: write month, year or a number of months"
                    ))
                })?,
            };
            if periods.insert(months, amount).is_some() {
                return Err(D::Error::custom(format!(
                    "the cost of {months} months is given twice"
                )));
            }
        }
        if !periods.contains_key(&Months::MONTH) {
            return Err(D::Error::custom(
                "the cost of one month (month = \"…\") is mandatory: the panel shows it",
            ));
        }
        Ok(Costs(periods))
    }
}

impl Config {
    /// Reads a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let source = Source::File(path.to_owned());
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&source, "(file)", format!("cannot read: {e}")))?;
        Config::parse(&text, source)
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<Config, ConfigError> {
        Config::parse(DEFAULTS, Source::Embedded)
    }

    /// Reads `path` when given, otherwise the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::from_file(p),
            None => Config::embedded(),
        }
    }

    /// Parses and checks a configuration's text.
    pub fn parse(text: &str, source: Source) -> Result<Config, ConfigError> {
        let located = |e: &toml::de::Error| match e.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                format!("{} (line {line})", e.message())
            }
            None => e.message().to_owned(),
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::new(&source, "(syntax)", located(&e)))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            // An unknown key at the top, or one spelled `""`, has no path of its own.
            let key = match e.path().to_string() {
                path if path.is_empty() || path == "." => "(top level)".to_owned(),
                path => path,
            };
            ConfigError::new(&source, key, located(e.inner()))
        })?;
        config.source = source;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, message: &dyn fmt::Display| {
            Err(ConfigError::new(&self.source, key, message))
        };
        let pins = [
            ("plugin", &self.plugin.limits, &self.plugin.sha256),
            (
                "plugin.policy",
                &self.plugin.policy.limits,
                &self.plugin.policy.sha256,
            ),
        ];
        for (table, limits, pin) in pins {
            if let Err(bad) = limits.validate() {
                return err(&format!("{table}.limits.{}", bad.key), &bad.message);
            }
            if let Some(pin) = pin
                && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return err(
                    &format!("{table}.sha256"),
                    &"expected 64 hexadecimal digits",
                );
            }
        }
        if let Some(candidate) = &self.plugin.candidate {
            if let Err(bad) = candidate.limits.validate() {
                return err(
                    &format!("plugin.candidate.limits.{}", bad.key),
                    &bad.message,
                );
            }
            if let Some(pin) = &candidate.sha256
                && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return err("plugin.candidate.sha256", &"expected 64 hexadecimal digits");
            }
            if candidate.sample_percent > 100 {
                return err("plugin.candidate.sample_percent", &"expected 0 to 100");
            }
        }
        let upstream = &self.upstream;
        if let Some(url) = &upstream.url {
            if let Err(why) = web_url(url) {
                return err("upstream.url", &why);
            }
            if upstream.user.as_deref().is_none_or(str::is_empty) {
                return err("upstream.user", &"required with upstream.url");
            }
            if let Err(e) = upstream.password() {
                return err("upstream.password", &e);
            }
        }
        if upstream.timeout_ms == 0
            || upstream.connect_timeout_ms == 0
            || upstream.max_answer_bytes == 0
        {
            return err("upstream", &"time-outs and sizes must be above 0");
        }
        for (i, path) in self.server.paths.iter().enumerate() {
            if let Err(why) = panel_path(path) {
                return err(&format!("server.paths[{i}]"), &why);
            }
        }
        if let Some(token) = &self.api.token
            && token.0.trim().len() < 16
        {
            return err("api.token", &"use at least 16 characters");
        }
        self.validate_server()?;
        self.validate_orders()?;
        if let Some(url) = &self.events.webhook_url {
            if let Err(why) = web_url(url) {
                return err("events.webhook_url", &why);
            }
            if let Err(why) = self.events.webhook() {
                return err("events.secret", &why);
            }
        }
        if self.console.password.is_some() && self.console.password_env.is_some() {
            return err(
                "console.password",
                &"set password or password_env, not both",
            );
        }
        if self.console.password().is_some_and(|p| p.trim().len() < 12) {
            return err("console.password", &"use at least 12 characters");
        }
        if !(1..=10_080).contains(&self.console.session_minutes) {
            return err("console.session_minutes", &"expected 1 to 10080 (a week)");
        }
        if self.events.timeout_ms == 0 {
            return err("events.timeout_ms", &"must be above 0");
        }
        let mut intnames = HashSet::new();
        let mut tariffs = HashSet::new();
        for (i, m) in self.catalogue.modules.iter().enumerate() {
            let key = |k: &str| format!("catalogue.modules[{i}].{k}");
            if m.intname.trim().is_empty() {
                return err(&key("intname"), &"must not be empty");
            }
            if !intnames.insert(m.intname.as_str()) {
                return err(&key("intname"), &format!("`{}` is listed twice", m.intname));
            }
            let Some(tariff) = m.tariff.in_region(self.catalogue.region) else {
                let region = match self.catalogue.region {
                    Region::Ru => "ru",
                    Region::Eu => "eu",
                };
                return err(
                    &key("tariff"),
                    &format!("the tariff ID of the catalogue's region (`{region}`) is missing"),
                );
            };
            if !tariffs.insert(tariff) {
                return err(&key("tariff"), &format!("tariff {tariff} is listed twice"));
            }
            let mut names = HashSet::new();
            for (j, field) in m.fields.iter().enumerate() {
                let key = |k: &str| format!("catalogue.modules[{i}].fields[{j}].{k}");
                let plain = (1..=64).contains(&field.name.len())
                    && field
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !plain {
                    return err(&key("name"), &"letters, digits and _, at most 64");
                }
                if !names.insert(field.name.as_str()) {
                    return err(&key("name"), &format!("`{}` is listed twice", field.name));
                }
                if let Some(pattern) = &field.pattern
                    && let Err(e) = regex::Regex::new(&anchored(pattern))
                {
                    return err(&key("pattern"), &format!("not a regular expression: {e}"));
                }
            }
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let server = &self.server;
        let err = |key: &str, message: &dyn fmt::Display| {
            Err(ConfigError::new(
                &self.source,
                format!("server.{key}"),
                message,
            ))
        };
        for (key, ms) in [
            ("header_timeout_ms", server.header_timeout_ms),
            ("body_timeout_ms", server.body_timeout_ms),
            ("shutdown_timeout_ms", server.shutdown_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&ms) {
                return err(key, &"expected 1 to 3600000 (an hour)");
            }
        }
        if server.max_connections == 0 {
            return err("max_connections", &"expected at least 1");
        }
        if server.max_query_bytes == 0 {
            return err("max_query_bytes", &"expected at least 1");
        }
        if server.max_api_body_bytes == 0 {
            return err("max_api_body_bytes", &"expected at least 1");
        }
        for (i, lang) in server.languages.iter().enumerate() {
            if lang.is_empty()
                || lang.len() > 8
                || !lang.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
            {
                return err(
                    &format!("languages[{i}]"),
                    &"expected a language code such as en",
                );
            }
        }
        Ok(())
    }

    fn validate_orders(&self) -> Result<(), ConfigError> {
        let orders = &self.orders;
        let err = |key: &str, message: &dyn fmt::Display| {
            Err(ConfigError::new(
                &self.source,
                format!("orders.{key}"),
                message,
            ))
        };
        if orders.mode == Some(OrderMode::Automatic) && self.upstream.url.is_none() {
            return err(
                "mode",
                &"automatic placement needs upstream.url (or use mode = \"manual\")",
            );
        }
        if let Some(url) = &orders.checkout_url {
            if let Err(why) = web_url(url) {
                return err("checkout_url", &why);
            }
            if !url.contains("{order_id}") {
                return err("checkout_url", &"must contain {order_id}");
            }
        }
        const DAY_MS: u64 = 86_400_000;
        if !(1..=DAY_MS).contains(&orders.retry_initial_ms) {
            return err("retry_initial_ms", &"expected 1 to 86400000 (a day)");
        }
        if !(orders.retry_initial_ms..=DAY_MS).contains(&orders.retry_max_ms) {
            return err(
                "retry_max_ms",
                &"expected at least retry_initial_ms and at most 86400000 (a day)",
            );
        }
        if orders.max_attempts == 0 {
            return err("max_attempts", &"expected at least 1");
        }
        if !(1..=DAY_MS).contains(&orders.poll_ms) {
            return err("poll_ms", &"expected 1 to 86400000 (a day)");
        }
        if self.upstream.prices_refresh_minutes > 525_600 {
            return Err(ConfigError::new(
                &self.source,
                "upstream.prices_refresh_minutes",
                "expected at most 525600 (a year); 0 turns it off",
            ));
        }
        if orders.database.as_os_str().is_empty() {
            return err("database", &"must not be empty");
        }
        if !(1..=256).contains(&orders.database_connections) {
            return err("database_connections", &"expected 1 to 256");
        }
        if !(1_000..=3_600_000).contains(&orders.claim_lease_ms) {
            return err("claim_lease_ms", &"expected 1000 to 3600000 (an hour)");
        }
        if orders.database_password_env.is_some() && self.order_database_url().is_none() {
            return err(
                "database_password_env",
                &"is for a postgres:// database; a SQLite file has no password",
            );
        }
        Ok(())
    }

    /// Whether the operator console is on: an API token or an operator password is configured.
    pub fn console_enabled(&self) -> bool {
        self.api.token.is_some() || self.console.password().is_some()
    }

    /// How paid orders are placed: the configured mode, or automatic exactly when an upstream
    /// is configured.
    pub fn order_mode(&self) -> OrderMode {
        self.orders.mode.unwrap_or(if self.upstream.url.is_some() {
            OrderMode::Automatic
        } else {
            OrderMode::Manual
        })
    }

    /// The PostgreSQL database's URL, when `orders.database` is a `postgres://` URL.
    pub fn order_database_url(&self) -> Option<&str> {
        self.orders.database.to_str().filter(|d| is_postgres_url(d))
    }

    /// The order database as it may be shown: the SQLite file's path, or the URL without its
    /// password.
    pub fn order_database_shown(&self) -> String {
        match self.order_database_url() {
            Some(url) => redacted_url(url),
            None => self.order_database().display().to_string(),
        }
    }

    /// The order database's path, resolved against the configuration file's directory.
    pub fn order_database(&self) -> PathBuf {
        self.source.resolve(&self.orders.database)
    }

    /// A module's tariff ID in the configured region (checked present when the configuration
    /// was read).
    pub fn tariff_id(&self, module: &Module) -> u64 {
        module
            .tariff
            .in_region(self.catalogue.region)
            .unwrap_or_default()
    }

    /// The module whose tariff ID in the configured region is `tariff_id`.
    pub fn module(&self, tariff_id: u64) -> Option<&Module> {
        self.catalogue
            .modules
            .iter()
            .find(|m| self.tariff_id(m) == tariff_id)
    }

    /// The module `tariff_id` names in either region: a panel may send the other region's ID
    /// of the same module.
    pub fn module_in_any_region(&self, tariff_id: u64) -> Option<&Module> {
        self.module(tariff_id).or_else(|| {
            self.catalogue
                .modules
                .iter()
                .find(|m| m.tariff.is(tariff_id))
        })
    }

    /// The currency of a module's costs.
    pub fn currency_of<'a>(&'a self, module: &'a Module) -> &'a Currency {
        module.currency.as_ref().unwrap_or(&self.catalogue.currency)
    }

    /// The `[pricing]` table as the JSON the plugin receives.
    pub fn pricing_json(&self) -> String {
        // A TOML table always has a JSON form (dates become strings the plugin may refuse).
        serde_json::to_string(&self.pricing).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Checks a path that serves the panel: absolute, without a query, of plain segments; it may
/// not be one of the API's or the order pages'.
fn panel_path(path: &str) -> Result<(), &'static str> {
    let segments: Vec<&str> = path
        .strip_prefix('/')
        .ok_or("must start with /")?
        .split('/')
        .collect();
    let plain = |s: &&str| {
        !s.is_empty()
            && *s != "."
            && *s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    };
    if path.len() > 200 || !segments.iter().all(plain) {
        return Err(
            "expected a path of plain segments (letters, digits, - _ . ~), e.g. /billing/ispmanager",
        );
    }
    if matches!(segments.first(), Some(&"api" | &"console")) || segments.contains(&"order") {
        return Err("/api and order pages are the host's own");
    }
    Ok(())
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
fn web_url(url: &str) -> Result<url::Url, &'static str> {
    let parsed = url::Url::parse(url).map_err(|_| "expected an http:// or https:// URL")?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err("expected an http:// or https:// URL");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters");
    }
    Ok(parsed)
}

/// Whether `database` names a PostgreSQL database (a `postgres://` or `postgresql://` URL)
/// rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    let database = database.trim_start();
    ["postgres://", "postgresql://"].iter().any(|scheme| {
        database
            .get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    })
}

/// The URL as it may be shown: its password, if any, replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail for a URL with a host, which one with a password has.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(a database URL that cannot be read)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Source::File(PathBuf::from("/etc/reseller.toml")))
    }

    const MODULE: &str = r#"
        [catalogue]
        region = "ru"
        currency = "RUB"
        [[catalogue.modules]]
        intname = "a"
        additionintname = "A"
        name = "A"
        tariff = { ru = 1, eu = 2 }
        cost = { month = "10.5" }
    "#;

    #[test]
    fn embedded_defaults_parse() {
        let c = Config::embedded().expect("defaults");
        assert_eq!(c.catalogue.modules.len(), 5);
        assert_eq!(c.server.listen, Server::default().listen);
        assert_eq!(c.catalogue.region, Region::Eu);
        assert_eq!(c.tariff_id(&c.catalogue.modules[0]), 55361);
        assert!(c.pricing_json().contains("\"markup_percent\":\"20\""));
    }

    #[test]
    fn orders_settings_are_checked() {
        let c = parse(MODULE).expect("config");
        assert_eq!(c.order_mode(), OrderMode::Manual);
        assert_eq!(
            c.order_database(),
            PathBuf::from("/etc/reseller-orders.sqlite3")
        );
        let upstream = "[upstream]\nurl = \"https://x/billmgr\"\nuser = \"u\"\npassword = \"p\"\n";
        let c = parse(&format!("{MODULE}\n{upstream}")).expect("config");
        assert_eq!(c.order_mode(), OrderMode::Automatic);
        let c = parse(&format!(
            "{MODULE}\n{upstream}[orders]\nmode = \"manual\"\n"
        ))
        .expect("config");
        assert_eq!(c.order_mode(), OrderMode::Manual);
        let cases = [
            ("mode = \"automatic\"", "orders.mode"),
            ("mode = \"sometimes\"", "orders.mode"),
            (
                "checkout_url = \"ftp://x/{order_id}\"",
                "orders.checkout_url",
            ),
            ("checkout_url = \"https://x/pay\"", "orders.checkout_url"),
            (
                "checkout_url = \"https://x/pay?o={order_id}&\\tx\"",
                "orders.checkout_url",
            ),
            ("period_months = 0", "orders.period_months"),
            ("period_months = 121", "orders.period_months"),
            ("retry_initial_ms = 0", "orders.retry_initial_ms"),
            ("retry_max_ms = 1", "orders.retry_max_ms"),
            ("retry_max_ms = 18446744073709551615", "orders.retry_max_ms"),
            ("max_attempts = 0", "orders.max_attempts"),
            ("poll_ms = 0", "orders.poll_ms"),
            ("database = \"\"", "orders.database"),
            ("colour = \"red\"", "orders"),
        ];
        for (line, key) in cases {
            let e = parse(&format!("{MODULE}\n[orders]\n{line}\n")).expect_err(line);
            assert!(e.key.starts_with(key), "{line}: {e}");
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let c = parse(&format!(
            "{MODULE}\n[upstream]\nurl = \"https://x/billmgr\"\nuser = \"u\"\npassword = \"hunter2-secret\"\n[api]\ntoken = \"token-token-token-1\""
        ))
        .expect("config");
        let printed = format!("{c:?}");
        assert!(
            !printed.contains("hunter2-secret") && !printed.contains("token-token-token-1"),
            "{printed}"
        );
        assert_eq!(c.upstream.password().as_deref(), Ok("hunter2-secret"));
        assert_eq!(c.module(1).map(|m| m.intname.as_str()), Some("a"));
        assert!(c.module(2).is_none(), "another region's tariff");
    }

    #[test]
    fn amounts_are_exact() {
        let c = parse(MODULE).expect("config");
        assert_eq!(c.catalogue.modules[0].cost.month().units(), 105_000);
        assert_eq!(c.tariff_id(&c.catalogue.modules[0]), 1);
        assert!(c.catalogue.modules[0].orderable);
    }

    #[test]
    fn an_empty_or_unknown_top_level_key_is_named() {
        for text in ["\"\" = \"x\"\n", "nonsense = 1\n", "[server]\n\"\" = 1\n"] {
            let err = Config::parse(text, Source::Embedded).expect_err(text);
            assert!(!err.key.is_empty(), "{text}: {err}");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let cases = [
            (
                MODULE.replace("10.5", "-1"),
                "catalogue.modules[0].cost.month",
                "negative",
            ),
            (
                MODULE.replace("\"10.5\"", "10.5"),
                "catalogue.modules[0].cost.month",
                "float",
            ),
            (
                MODULE.replace("\"10.5\"", "\"1.00001\""),
                "catalogue.modules[0].cost.month",
                "decimals",
            ),
            (
                MODULE.replace("cost =", "colour = 1\ncost ="),
                "catalogue.modules[0].colour",
                "unknown field",
            ),
            (
                MODULE.replace("\"RUB\"", "\"rub\""),
                "catalogue.currency",
                "ISO 4217",
            ),
            (
                MODULE.replace("\"ru\"", "\"us\""),
                "catalogue.region",
                "unknown variant",
            ),
            (
                format!("{MODULE}\n[server]\nlisten = \"nowhere\""),
                "server.listen",
                "address",
            ),
            (
                format!("{MODULE}\n[plugin]\nsha = 1"),
                "plugin.sha",
                "unknown field",
            ),
            (
                format!("{MODULE}{}", &MODULE[MODULE.find("[[").unwrap_or(0)..]),
                "catalogue.modules[1].intname",
                "twice",
            ),
            ("[catalogue".to_owned(), "(syntax)", ""),
            (
                format!("{MODULE}\n[plugin]\nsha256 = \"abc\""),
                "plugin.sha256",
                "64 hexadecimal",
            ),
            (
                format!("{MODULE}\n[plugin.limits]\nfuel = 0"),
                "plugin.limits.fuel",
                "above 0",
            ),
            (
                format!("{MODULE}\n[plugin.limits]\nfuel = -1"),
                "plugin.limits.fuel",
                "invalid value",
            ),
            (
                format!("{MODULE}\n[plugin.limits]\ngas = 1"),
                "plugin.limits.gas",
                "unknown field",
            ),
            (
                format!("{MODULE}\n[api]\ntoken = \"short\""),
                "api.token",
                "16 characters",
            ),
            (
                format!("{MODULE}\n[upstream]\nurl = \"ftp://x\""),
                "upstream.url",
                "http",
            ),
            (
                format!("{MODULE}\n[upstream]\nurl = \"https://x/billmgr\"\nuser = \"u\""),
                "upstream.password",
                "password",
            ),
            (
                format!(
                    "{MODULE}\n[upstream]\nurl = \"https://x/billmgr\"\nuser = \"u\"\npassword_env = \"RESELLER_NO_SUCH_VARIABLE\""
                ),
                "upstream.password",
                "not set",
            ),
        ];
        for (text, key, words) in cases {
            let err = parse(&text).expect_err(key);
            assert_eq!(err.file, "/etc/reseller.toml");
            assert_eq!(err.key, key, "{err}");
            assert!(err.message.contains(words), "{err}");
        }
    }

    #[test]
    fn a_postgres_database_is_a_url_shown_without_its_password() {
        let c = parse(&format!(
            "{MODULE}\n[orders]\ndatabase = \"postgres://u:pw@db/orders\"\n\
             database_password_env = \"RESELLER_DB_PASSWORD\"\nclaim_lease_ms = 5000\n"
        ))
        .expect("config");
        assert_eq!(c.order_database_url(), Some("postgres://u:pw@db/orders"));
        assert_eq!(c.order_database_shown(), "postgres://u:***@db/orders");
        assert_eq!(c.orders.claim_lease_ms, 5000);
        let sqlite = parse(MODULE).expect("config");
        assert_eq!(sqlite.order_database_url(), None);
        assert_eq!(
            sqlite.order_database_shown(),
            "/etc/reseller-orders.sqlite3"
        );
        for (extra, key) in [
            (
                "database_password_env = \"X\"",
                "orders.database_password_env",
            ),
            ("claim_lease_ms = 10", "orders.claim_lease_ms"),
            ("database_connections = 0", "orders.database_connections"),
        ] {
            let err = parse(&format!("{MODULE}\n[orders]\n{extra}\n")).expect_err(key);
            assert_eq!(err.key, key, "{err}");
        }
    }
}
