//! The host's configuration: one TOML file, or the embedded defaults when there is none.
//!
//! Errors name the file and the key. Amounts are decimal strings (or whole numbers), never
//! floats. The `[pricing]` table belongs to the plugin: the host passes it on as JSON and the
//! plugin checks it.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::capabilities::upstream::DEFAULT_FUNCTIONS;
use crate::runtime::Limits;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The embedded default configuration.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Where the embedded defaults are said to come from in messages.
pub const DEFAULTS_NAME: &str = "<embedded defaults>";

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
    pub fn new(source: &Source, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: source.name(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where a configuration came from: file paths in it are relative to its folder.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// The embedded defaults.
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
    /// The modules the partner resells.
    pub catalogue: CatalogueConfig,
    /// The plugin's pricing settings, passed to it as they are.
    #[serde(default)]
    pub pricing: toml::Table,
    /// Where the configuration came from.
    #[serde(skip, default = "embedded")]
    pub source: Source,
}

fn embedded() -> Source {
    Source::Embedded
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The longest query string (and form body) accepted, in bytes.
    #[serde(default = "default_max_query_bytes")]
    pub max_query_bytes: usize,
    /// Price lists kept once rendered, per configuration and plugin; 0 renders every request.
    #[serde(default = "default_answer_cache")]
    pub answer_cache: usize,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: default_listen(),
            max_query_bytes: default_max_query_bytes(),
            answer_cache: default_answer_cache(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_max_query_bytes() -> usize {
    4096
}

fn default_answer_cache() -> usize {
    256
}

/// `[plugin]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// A component file; without it the plugin built into the host serves.
    pub path: Option<PathBuf>,
    /// The SHA-256 the file must have (hex); a mismatch refuses to load it.
    pub sha256: Option<String>,
    /// Instantiate from a pool of pre-reserved slots (faster; reserves address space for
    /// `limits.concurrent_calls` instances).
    #[serde(default = "yes")]
    pub pooling: bool,
    /// Cache compiled code on disk, so that a restart does not recompile.
    #[serde(default = "yes")]
    pub cache: bool,
    /// Where; by default `$XDG_CACHE_HOME/ispmanager-reseller` or `~/.cache/ispmanager-reseller`.
    pub cache_dir: Option<PathBuf>,
    /// Bounds on every call into the plugin.
    #[serde(default)]
    pub limits: Limits,
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
        }
    }
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
#[serde(deny_unknown_fields)]
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
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: u64,
    /// The longest connecting may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The largest answer read, in bytes; a longer one reaches the plugin marked truncated.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: usize,
    /// The BILLmanager functions a plugin may call.
    #[serde(default = "default_functions")]
    pub functions: Vec<String>,
    /// Fetch upstream's prices every this many minutes while serving; 0 only on demand.
    #[serde(default)]
    pub prices_refresh_minutes: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: None,
            user: None,
            password: None,
            password_env: None,
            timeout_ms: default_upstream_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            max_answer_bytes: default_max_answer_bytes(),
            functions: default_functions(),
            prices_refresh_minutes: 0,
        }
    }
}

impl UpstreamConfig {
    /// The password, from the file or from the environment variable it names.
    pub fn password(&self) -> Result<String, String> {
        match (&self.password, &self.password_env) {
            (Some(Secret(p)), None) => Ok(p.clone()),
            (None, Some(var)) => {
                std::env::var(var).map_err(|_| format!("the environment variable {var} is not set"))
            }
            (Some(_), Some(_)) => Err("set password or password_env, not both".to_owned()),
            (None, None) => Err("set password or password_env".to_owned()),
        }
    }
}

fn default_upstream_timeout_ms() -> u64 {
    30_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_max_answer_bytes() -> usize {
    1 << 20
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

fn default_functions() -> Vec<String> {
    DEFAULT_FUNCTIONS.iter().map(|f| (*f).to_owned()).collect()
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
#[serde(deny_unknown_fields)]
pub struct OrdersConfig {
    /// `automatic` or `manual`; by default automatic when `upstream.url` is set, manual when not.
    pub mode: Option<OrderMode>,
    /// The SQLite database file, relative to the configuration file (to the working directory
    /// for the embedded defaults).
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Where the Buy redirect sends the user: a URL with `{order_id}` (and optionally
    /// `{amount}`, `{currency}`) in it. Without it the host shows its own order page.
    pub checkout_url: Option<String>,
    /// The period a Buy redirect orders, in months; its price is the price list's for it.
    #[serde(default = "default_period_months")]
    pub period_months: u16,
    /// Order with `autoprolong` equal to the period (`true`) or `null` (`false`).
    #[serde(default = "yes")]
    pub autoprolong: bool,
    /// The wait before the first retry of an order whose request never left, in milliseconds;
    /// it doubles with every attempt.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// The longest wait between retries, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Attempts after which an order whose request never left is marked failed.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How often the placement worker looks for paid orders that are due, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            mode: None,
            database: default_database(),
            checkout_url: None,
            period_months: default_period_months(),
            autoprolong: true,
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_attempts: default_max_attempts(),
            poll_ms: default_poll_ms(),
        }
    }
}

fn default_database() -> PathBuf {
    PathBuf::from("reseller-orders.sqlite3")
}

fn default_period_months() -> u16 {
    1
}

fn default_retry_initial_ms() -> u64 {
    2_000
}

fn default_retry_max_ms() -> u64 {
    300_000
}

fn default_max_attempts() -> u32 {
    8
}

fn default_poll_ms() -> u64 {
    1_000
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
    /// The modules, in the order the price list shows them.
    #[serde(default)]
    pub modules: Vec<Module>,
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
}

fn yes() -> bool {
    true
}

/// Tariff IDs per region.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// For accounts in Russia.
    pub ru: u64,
    /// For other accounts.
    pub eu: u64,
}

/// Upstream cost per period.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// One month; mandatory.
    pub month: Amount,
    /// Twelve months.
    pub year: Option<Amount>,
}

/// A non-negative amount, in ten-thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount(pub i64);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount written as a string, e.g. \"9.90\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                let d: Decimal = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("`{v}` is not an amount")))?;
                if d.is_sign_negative() && !d.is_zero() {
                    return Err(E::custom(format!("{v} is negative; a price cannot be")));
                }
                if d.scale() > 4 {
                    return Err(E::custom(format!("{v} has more than four decimals")));
                }
                d.checked_mul(Decimal::from(10_000))
                    .and_then(|u| i64::try_from(u).ok())
                    .map(Amount)
                    .ok_or_else(|| E::custom(format!("{v} is too large")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                Err(E::custom(format!(
                    "{v} is a float; write amounts as strings, e.g. \"{v}\""
                )))
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}

/// An ISO 4217 currency code: three capital letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Currency(pub String);

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(code))
        } else {
            Err(de::Error::custom(format!(
                "`{code}` is not an ISO 4217 code such as EUR"
            )))
        }
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
            let key = e.path().to_string();
            ConfigError::new(&source, key, located(e.inner()))
        })?;
        config.source = source;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if let Err((key, message)) = self.plugin.limits.check() {
            return Err(ConfigError::new(
                &self.source,
                format!("plugin.limits.{key}"),
                message,
            ));
        }
        if let Some(pin) = &self.plugin.sha256
            && !(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::new(
                &self.source,
                "plugin.sha256",
                "expected 64 hexadecimal digits",
            ));
        }
        let upstream = &self.upstream;
        if let Some(url) = &upstream.url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::new(
                    &self.source,
                    "upstream.url",
                    "expected an http:// or https:// URL",
                ));
            }
            if upstream.user.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::new(
                    &self.source,
                    "upstream.user",
                    "required with upstream.url",
                ));
            }
            if let Err(message) = upstream.password() {
                return Err(ConfigError::new(&self.source, "upstream.password", message));
            }
        }
        if upstream.timeout_ms == 0
            || upstream.connect_timeout_ms == 0
            || upstream.max_answer_bytes == 0
        {
            return Err(ConfigError::new(
                &self.source,
                "upstream",
                "time-outs and sizes must be above 0",
            ));
        }
        if let Some(token) = &self.api.token
            && token.0.trim().len() < 16
        {
            return Err(ConfigError::new(
                &self.source,
                "api.token",
                "use at least 16 characters",
            ));
        }
        self.check_orders()?;
        let mut intnames = HashSet::new();
        let mut tariffs = HashSet::new();
        for (i, m) in self.catalogue.modules.iter().enumerate() {
            let key = |k: &str| format!("catalogue.modules[{i}].{k}");
            if m.intname.trim().is_empty() {
                return Err(ConfigError::new(
                    &self.source,
                    key("intname"),
                    "must not be empty",
                ));
            }
            if !intnames.insert(m.intname.as_str()) {
                let msg = format!("`{}` is listed twice", m.intname);
                return Err(ConfigError::new(&self.source, key("intname"), msg));
            }
            if !tariffs.insert(self.tariff_id(m)) {
                let msg = format!("tariff {} is listed twice", self.tariff_id(m));
                return Err(ConfigError::new(&self.source, key("tariff"), msg));
            }
        }
        Ok(())
    }

    fn check_orders(&self) -> Result<(), ConfigError> {
        let orders = &self.orders;
        let err = |key: &str, message: &str| {
            Err(ConfigError::new(
                &self.source,
                format!("orders.{key}"),
                message,
            ))
        };
        if orders.mode == Some(OrderMode::Automatic) && self.upstream.url.is_none() {
            return err(
                "mode",
                "automatic placement needs upstream.url (or use mode = \"manual\")",
            );
        }
        if let Some(url) = &orders.checkout_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return err("checkout_url", "expected an http:// or https:// URL");
            }
            if !url.contains("{order_id}") {
                return err("checkout_url", "must contain {order_id}");
            }
            if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return err(
                    "checkout_url",
                    "must not contain spaces or control characters",
                );
            }
        }
        if orders.period_months == 0
            || u32::from(orders.period_months) > crate::orders::MAX_PERIOD_MONTHS
        {
            return err("period_months", "expected 1 to 120 months");
        }
        const DAY_MS: u64 = 86_400_000;
        if !(1..=DAY_MS).contains(&orders.retry_initial_ms) {
            return err("retry_initial_ms", "expected 1 to 86400000 (a day)");
        }
        if !(orders.retry_initial_ms..=DAY_MS).contains(&orders.retry_max_ms) {
            return err(
                "retry_max_ms",
                "expected at least retry_initial_ms and at most 86400000 (a day)",
            );
        }
        if orders.max_attempts == 0 {
            return err("max_attempts", "expected at least 1");
        }
        if !(1..=DAY_MS).contains(&orders.poll_ms) {
            return err("poll_ms", "expected 1 to 86400000 (a day)");
        }
        if self.upstream.prices_refresh_minutes > 525_600 {
            return Err(ConfigError::new(
                &self.source,
                "upstream.prices_refresh_minutes",
                "expected at most 525600 (a year); 0 turns it off",
            ));
        }
        if orders.database.as_os_str().is_empty() {
            return err("database", "must not be empty");
        }
        Ok(())
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

    /// The order database's path, resolved against the configuration file's directory.
    pub fn order_database(&self) -> PathBuf {
        self.source.resolve(&self.orders.database)
    }

    /// This configuration with each module's costs replaced by upstream's, where upstream
    /// prices the module's tariff for one month (and, for the year, twelve months, in the same
    /// currency); modules upstream does not price keep theirs. Also returns how many modules
    /// changed.
    pub fn with_upstream_costs(&self, costs: &[crate::orders::UpstreamCost]) -> (Config, usize) {
        let mut config = self.clone();
        let mut changed = 0;
        let region = config.catalogue.region;
        let catalogue_currency = config.catalogue.currency.clone();
        for module in &mut config.catalogue.modules {
            let tariff = match region {
                Region::Ru => module.tariff.ru,
                Region::Eu => module.tariff.eu,
            };
            let find = |months: u32| {
                costs
                    .iter()
                    .find(|c| c.tariff_id == tariff && c.period_months == months)
            };
            let Some(month) = find(1) else { continue };
            let year = find(12).filter(|y| y.currency == month.currency);
            let currency =
                (month.currency != catalogue_currency.0).then(|| Currency(month.currency.clone()));
            let cost = Costs {
                month: Amount(month.amount_e4),
                year: year.map(|y| Amount(y.amount_e4)),
            };
            if cost.month != module.cost.month
                || cost.year != module.cost.year
                || currency != module.currency
            {
                changed += 1;
            }
            module.cost = cost;
            module.currency = currency;
        }
        (config, changed)
    }

    /// A module's tariff ID in the configured region.
    pub fn tariff_id(&self, module: &Module) -> u64 {
        match self.catalogue.region {
            Region::Ru => module.tariff.ru,
            Region::Eu => module.tariff.eu,
        }
    }

    /// The `[pricing]` table as the JSON the plugin receives.
    pub fn pricing_json(&self) -> String {
        // A TOML table always has a JSON form (dates become strings the plugin may refuse).
        serde_json::to_string(&self.pricing).unwrap_or_else(|_| "{}".to_owned())
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
        assert_eq!(c.server.listen, default_listen());
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
    fn upstream_costs_replace_the_configured_ones() {
        use crate::orders::UpstreamCost;
        let c = parse(&format!(
            "{MODULE}\n[[catalogue.modules]]\nintname = \"b\"\nadditionintname = \"B\"\nname = \"B\"\ntariff = {{ ru = 3, eu = 4 }}\ncost = {{ month = \"1\" }}\n"
        ))
        .expect("config");
        let cost = |tariff_id, period_months, amount_e4, currency: &str| UpstreamCost {
            tariff_id,
            period_months,
            amount_e4,
            currency: currency.to_owned(),
        };
        let (same, changed) = c.with_upstream_costs(&[]);
        assert_eq!(changed, 0);
        assert_eq!(same.catalogue.modules[0].cost.month, Amount(105_000));
        let (new, changed) = c.with_upstream_costs(&[
            cost(1, 1, 120_000, "RUB"),
            cost(1, 12, 1_200_000, "RUB"),
            // Another region's tariff of module b: not this catalogue's.
            cost(4, 1, 5, "RUB"),
            // A year without a month changes nothing.
            cost(3, 12, 7, "RUB"),
        ]);
        assert_eq!(changed, 1);
        assert_eq!(new.catalogue.modules[0].cost.month, Amount(120_000));
        assert_eq!(new.catalogue.modules[0].cost.year, Some(Amount(1_200_000)));
        assert_eq!(new.catalogue.modules[0].currency, None);
        assert_eq!(new.catalogue.modules[1].cost.month, Amount(10_000));
        // Another currency is the module's own; a year in a third currency is dropped.
        let (new, _) = c.with_upstream_costs(&[cost(3, 1, 9, "EUR"), cost(3, 12, 99, "USD")]);
        assert_eq!(
            new.catalogue.modules[1].currency,
            Some(Currency("EUR".to_owned()))
        );
        assert_eq!(new.catalogue.modules[1].cost.year, None);
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
    }

    #[test]
    fn amounts_are_exact() {
        let c = parse(MODULE).expect("config");
        assert_eq!(c.catalogue.modules[0].cost.month, Amount(105_000));
        assert_eq!(c.tariff_id(&c.catalogue.modules[0]), 1);
        assert!(c.catalogue.modules[0].orderable);
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
}
