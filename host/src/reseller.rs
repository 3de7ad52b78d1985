//! [`Reseller`]: the host as a library. A billing system that embeds the host builds one from a
//! configuration and calls it; the HTTP server and the CLI are thin layers over it.
//!
//! What serves is an [`Active`] value: a configuration with its loaded plugin and what that
//! plugin is granted. A reload builds a new one beside it, checks it, and swaps it in
//! atomically; calls in flight finish on the one they started with, and a reload that fails
//! leaves the old one serving.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use lru::LruCache;

use crate::bindings::catalogue::Snapshot;
use crate::bindings::{pricing, types};
use crate::capabilities::policy::{Observer, PolicyLink};
use crate::capabilities::upstream::http::HttpUpstream;
use crate::capabilities::upstream::{NotConfigured, UpstreamClient, UpstreamPolicy};
use crate::capabilities::{Grants, Role, calendar};
use crate::catalogue::{self, Applied, UpstreamPrices};
use crate::config::{Config, ConfigError, PolicyConfig, Source};
use crate::convert::{panel_query, pricing_message, snapshot};
use crate::metrics;
use crate::native::NativeProtocol;
use crate::runtime::{Fault, LoadedPlugin, LoadedPolicy, Runtime};
use crate::shadow::Shadow;

/// The protocol built into the host, used when the configuration names no plugin.
pub const BUILTIN_PROTOCOL: &[u8] = include_bytes!(env!("RESELLER_PLUGIN_WASM"));
/// The pricing policy built into the host (markup), used when the configuration names none.
pub const BUILTIN_POLICY: &[u8] = include_bytes!(env!("RESELLER_MARKUP_WASM"));

/// Why a price export has no document.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The plugin refused the query or could not price (a business error).
    #[error("{}", pricing_message(.0))]
    Pricing(types::PricingError),
    /// The plugin could not be run to the end.
    #[error(transparent)]
    Fault(#[from] Fault),
}

/// A configuration in force: its plugin (with the pricing policy joined to it, when it is a
/// protocol) and what the plugin is granted.
pub struct Active {
    config: Config,
    plugin: LoadedPlugin,
    grants: Grants,
    answers: AnswerCache,
    shadow: Option<Arc<Shadow>>,
    native: Option<NativeProtocol>,
    rendered: std::sync::atomic::AtomicU64,
}

/// What identifies a price export's answer, given the catalogue and plugin in force: only what
/// can change the document. The item type is always `addition` (the only one kept), and the
/// language only when the plugin's answer depends on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AnswerKey {
    only_available: bool,
    pricelist: Option<u64>,
    json: bool,
    lang: Option<String>,
    today: time::Date,
}

/// Price lists already rendered by the plugin in force.
///
/// Sound because a plugin's price export is a function of the catalogue, the settings, the
/// day and the query alone: it has no clock finer than the day, no randomness, no upstream and
/// no state that outlives a call.
///
/// Bounded twice. Only the panel's own queries are kept: modules (`itemtype=addition`), the
/// whole list or a tariff of the catalogue, and a language of `server.languages` (any other is
/// passed to the plugin as none), so a peer cannot invent keys. And at most `capacity`
/// answers are kept, the least recently used making way for a new one.
struct AnswerCache {
    tariffs: HashSet<u64>,
    /// Whether the plugin's answer changes with `lang`: found when it loads, by rendering the
    /// whole list in each configured language. When it does not, `lang` is no part of the key.
    lang_matters: bool,
    /// `None` when the cache is off (`server.answer_cache = 0`).
    answers: Option<Mutex<LruCache<AnswerKey, pricing::Document>>>,
}

impl AnswerCache {
    fn new(capacity: usize, snapshot: &Snapshot) -> Self {
        AnswerCache {
            tariffs: snapshot.offers.iter().map(|o| o.tariff_id).collect(),
            lang_matters: true,
            answers: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    fn key(&self, q: &pricing::Query) -> Option<AnswerKey> {
        let known = q.pricelist.is_none_or(|id| self.tariffs.contains(&id));
        (self.answers.is_some() && known && q.itemtype == "addition").then(|| AnswerKey {
            only_available: q.only_available,
            pricelist: q.pricelist,
            json: matches!(q.format, pricing::Format::Json),
            lang: if self.lang_matters {
                q.lang.clone()
            } else {
                None
            },
            today: calendar::today(),
        })
    }

    /// The answer kept for `key`; counted as a hit, and as a miss too when `miss` says so.
    fn get(&self, key: &AnswerKey, miss: bool) -> Option<pricing::Document> {
        let doc = lock(self.answers.as_ref()?).get(key).cloned();
        if doc.is_some() || miss {
            let outcome = if doc.is_some() { "hit" } else { "miss" };
            metrics::global()
                .answer_cache
                .with_label_values(&[outcome])
                .inc();
        }
        doc
    }

    fn put(&self, key: AnswerKey, doc: &pricing::Document) {
        if let Some(answers) = &self.answers {
            let mut answers = lock(answers);
            answers.put(key, doc.clone());
            metrics::global()
                .answer_cache_entries
                .set(i64::try_from(answers.len()).unwrap_or(i64::MAX));
        }
    }

    /// How many answers are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.answers.as_ref().map_or(0, |a| lock(a).len())
    }
}

impl Active {
    /// Loads the configured plugin and checks the configuration against it with one price
    /// export, so that a bad setting is refused before it serves.
    pub fn load(runtime: &Runtime, config: Config) -> Result<Active, ConfigError> {
        let plugin = load_plugin(runtime, &config)?;
        let shadow = crate::shadow::start(runtime, &config, &plugin)?;
        let policy = match plugin.role() {
            Role::Protocol => Some(Arc::new(
                PolicyLink::new(Arc::new(load_policy(runtime, &config)?))
                    .with_shadow(shadow.clone().map(|s| s as Arc<dyn Observer>)),
            )),
            _ if config.plugin.policy.path.is_some() => {
                return Err(ConfigError::new(
                    &config.source,
                    "plugin.policy.path",
                    format!(
                        "{} is a whole plugin: it prices by itself and takes no policy",
                        plugin.name()
                    ),
                ));
            }
            _ => None,
        };
        let client = upstream_client(&config)?;
        let snapshot = snapshot(&config, catalogue_version(&config));
        let grants = Grants {
            plugin: plugin.name().clone(),
            catalogue: Arc::new(snapshot),
            upstream: Arc::new(UpstreamPolicy::new(
                config.upstream.functions.clone(),
                client,
            )),
            policy,
        };
        let answers = AnswerCache::new(config.server.answer_cache, &grants.catalogue);
        let builtin = config.plugin.path.is_none() && plugin.role() == Role::Protocol;
        let mut active = Active {
            config,
            plugin,
            grants,
            answers,
            shadow,
            native: None,
            rendered: std::sync::atomic::AtomicU64::new(0),
        };
        let trial = active.trial_export()?;
        if builtin {
            active.native = active.checked_native(&trial);
        }
        active.answers.lang_matters = active.lang_matters();
        Ok(active)
    }

    /// Whether the plugin's whole price list changes with the configured languages.
    fn lang_matters(&self) -> bool {
        let render = |lang: Option<&String>| {
            let query = pricing::Query {
                lang: lang.cloned(),
                ..panel_query(None, false)
            };
            self.plugin
                .export_prices(&self.grants, &query)
                .0
                .ok()
                .and_then(Result::ok)
        };
        let plain = render(None);
        self.config
            .server
            .languages
            .iter()
            .any(|lang| render(Some(lang)) != plain)
    }

    /// `query` as the plugin gets it: a language not among `server.languages` is none.
    fn served<'q>(&self, query: &'q pricing::Query) -> Cow<'q, pricing::Query> {
        let Some(lang) = &query.lang else {
            return Cow::Borrowed(query);
        };
        let known = self
            .config
            .server
            .languages
            .iter()
            .find(|l| l.eq_ignore_ascii_case(lang));
        match known {
            Some(l) if l == lang => Cow::Borrowed(query),
            known => Cow::Owned(pricing::Query {
                lang: known.cloned(),
                ..query.clone()
            }),
        }
    }

    /// The built-in protocol's price export compiled into the host, if it answers the trial
    /// export byte for byte as the component did; otherwise the component keeps serving.
    fn checked_native(&self, trial: &pricing::Document) -> Option<NativeProtocol> {
        let link = self.grants.policy.as_ref()?;
        let native = NativeProtocol::new(&self.grants.catalogue);
        match native.export_prices(&self.grants.catalogue, link, &panel_query(None, false)) {
            Ok(Ok(doc)) if doc == *trial => Some(native),
            _ => {
                tracing::error!(
                    "the built-in protocol's native price export answers otherwise than its \
                     component: the component serves every price export"
                );
                None
            }
        }
    }

    /// Prices the whole catalogue once, so that a setting the plugin refuses never serves.
    fn trial_export(&self) -> Result<pricing::Document, ConfigError> {
        let source = &self.config.source;
        match self.export_prices(&panel_query(None, false)) {
            Ok(doc) => Ok(doc),
            Err(ExportError::Pricing(types::PricingError::InvalidSettings(f))) => {
                Err(ConfigError::new(source, f.field, f.message))
            }
            Err(ExportError::Pricing(e)) => Err(ConfigError::new(
                source,
                "pricing",
                format!(
                    "the plugin cannot price this catalogue: {}",
                    pricing_message(&e)
                ),
            )),
            Err(ExportError::Fault(f)) => Err(ConfigError::new(
                source,
                "plugin.path",
                format!("the plugin failed its first price export: {f}"),
            )),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// The pricing policy joined to the plugin, when it is a protocol.
    pub fn policy(&self) -> Option<&Arc<LoadedPolicy>> {
        self.grants.policy.as_ref().map(|link| link.policy())
    }

    /// The candidate policy's shadow runs, when `[plugin.candidate]` is configured.
    pub fn shadow(&self) -> Option<&Arc<Shadow>> {
        self.shadow.as_ref()
    }

    /// What the plugin is granted.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Answers a `pricelist.export` query through the plugin (the built-in protocol's is
    /// rendered by the host, see [`crate::native`]). Blocks while the plugin or its policy runs:
    /// from async code, call it on a blocking thread.
    pub fn export_prices(&self, query: &pricing::Query) -> Result<pricing::Document, ExportError> {
        let query = self.served(query);
        let key = self.answers.key(&query);
        if let Some(doc) = key.as_ref().and_then(|k| self.answers.get(k, true)) {
            return Ok(doc);
        }
        self.rendered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let answer = match (&self.native, &self.grants.policy) {
            (Some(native), Some(link)) => {
                native.export_prices(&self.grants.catalogue, link, &query)?
            }
            _ => self.plugin.export_prices(&self.grants, &query).0?,
        };
        let doc = answer.map_err(ExportError::Pricing)?;
        if let Some(key) = key {
            self.answers.put(key, &doc);
        }
        Ok(doc)
    }

    /// Price lists rendered (not answered from the rendered-answer cache), by the plugin or by
    /// the host's native renderer of the built-in protocol, the load's trial export included.
    pub fn rendered(&self) -> u64 {
        self.rendered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the built-in protocol's price lists are rendered by the host ([`crate::native`]).
    pub fn renders_natively(&self) -> bool {
        self.native.is_some()
    }

    /// The answer to `query` if it was rendered before: never blocks, never runs the plugin.
    pub fn cached_answer(&self, query: &pricing::Query) -> Option<pricing::Document> {
        self.answers
            .key(&self.served(query))
            .and_then(|key| self.answers.get(&key, false))
    }
}

/// A configured host whose configuration and plugin can be swapped while it serves.
pub struct Reseller {
    runtime: Runtime,
    active: ArcSwap<Active>,
    reloading: Mutex<()>,
    pricing: tokio::sync::Semaphore,
    /// The configuration as read, before upstream's prices are applied.
    base: Mutex<Config>,
    /// Upstream's prices last fetched, applied over every configuration loaded.
    upstream: Mutex<UpstreamPrices>,
}

impl Reseller {
    /// Loads and checks `config`.
    pub fn new(runtime: Runtime, config: Config) -> Result<Reseller, ConfigError> {
        Reseller::with_upstream(runtime, config, UpstreamPrices::default())
    }

    /// Loads and checks `config` with upstream's prices (fetched earlier) applied to the
    /// catalogue, as later reloads keep doing.
    pub fn with_upstream(
        runtime: Runtime,
        config: Config,
        upstream: UpstreamPrices,
    ) -> Result<Reseller, ConfigError> {
        let applied = catalogue::apply(&config, &upstream);
        for problem in applied.currency_problems() {
            tracing::warn!("{problem}");
        }
        let active = Active::load(&runtime, applied.config)?;
        // Rendering a price list is pure CPU: more at once than there are cores only adds
        // switching and memory, so requests past that wait their turn without a thread.
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Ok(Reseller {
            runtime,
            active: ArcSwap::from_pointee(active),
            reloading: Mutex::new(()),
            pricing: tokio::sync::Semaphore::new(cores),
            base: Mutex::new(config),
            upstream: Mutex::new(upstream),
        })
    }

    /// Makes the catalogue follow `upstream` (fetched from upstream now), now and after every
    /// reload, and swaps the result in. Returns what became of each tariff. If the result does
    /// not load or pass its check, nothing changes.
    pub fn set_upstream(&self, upstream: UpstreamPrices) -> Result<Applied, ConfigError> {
        let _one = lock(&self.reloading);
        let base = lock(&self.base).clone();
        Ok(self.swap_locked(base, Some(upstream))?.1)
    }

    /// Upstream's prices in force.
    pub fn upstream(&self) -> UpstreamPrices {
        lock(&self.upstream).clone()
    }

    /// What `upstream` would make of the configuration in force, without applying it.
    pub fn preview_upstream(&self, upstream: &UpstreamPrices) -> Applied {
        catalogue::apply(&lock(&self.base), upstream)
    }

    /// The configuration in force as it was read, before upstream's prices are applied.
    pub fn base_config(&self) -> Config {
        lock(&self.base).clone()
    }

    /// What serves now. Hold the returned value for the length of one request.
    pub fn active(&self) -> Arc<Active> {
        self.active.load_full()
    }

    /// Waits for a turn to render a price list (one per core), for async callers that then
    /// render on a blocking thread.
    pub async fn pricing_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.pricing.acquire().await.ok()
    }

    /// Answers a `pricelist.export` query with what serves now (see [`Active::export_prices`]).
    pub fn export_prices(&self, query: &pricing::Query) -> Result<pricing::Document, ExportError> {
        self.active().export_prices(query)
    }

    /// Reads the configuration again from where it came from, and swaps it in if it loads and
    /// passes its check; otherwise the current one keeps serving and the error is returned.
    pub fn reload(&self) -> Result<Arc<Active>, ConfigError> {
        let source = self.active().config.source.clone();
        let config = match &source {
            Source::File(path) => Config::from_file(path)?,
            Source::Embedded => Config::embedded()?,
        };
        self.swap(config)
    }

    /// Loads and checks `config`, then makes it the one that serves.
    pub fn swap(&self, config: Config) -> Result<Arc<Active>, ConfigError> {
        // One reload at a time: two racing ones would each compile, and the slower would win.
        let _one = lock(&self.reloading);
        Ok(self.swap_locked(config, None)?.0)
    }

    /// [`swap`](Self::swap) with the reload lock held, applying `upstream` (or the current
    /// prices).
    fn swap_locked(
        &self,
        config: Config,
        upstream: Option<UpstreamPrices>,
    ) -> Result<(Arc<Active>, Applied), ConfigError> {
        let old = self.active();
        if config.server.listen != old.config.server.listen {
            tracing::warn!("server.listen changed; it takes effect at the next start");
        }
        if config.orders.database != old.config.orders.database {
            tracing::warn!("orders.database changed; it takes effect at the next start");
        }
        let upstream = upstream.unwrap_or_else(|| lock(&self.upstream).clone());
        let applied = catalogue::apply(&config, &upstream);
        let new = Arc::new(Active::load(&self.runtime, applied.config.clone())?);
        *lock(&self.base) = config;
        *lock(&self.upstream) = upstream;
        self.active.store(new.clone());
        tracing::info!(plugin = %new.plugin.name(), sha256 = new.plugin.sha256(), "configuration reloaded");
        Ok((new, applied))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The client plugins reach upstream through: the configured BILLmanager, or none.
fn upstream_client(config: &Config) -> Result<Arc<dyn UpstreamClient>, ConfigError> {
    match HttpUpstream::from_config(&config.upstream) {
        Ok(Some(client)) => Ok(Arc::new(client)),
        Ok(None) => Ok(Arc::new(NotConfigured)),
        Err(e) => Err(ConfigError::new(&config.source, "upstream", e)),
    }
}

fn load_plugin(runtime: &Runtime, config: &Config) -> Result<LoadedPlugin, ConfigError> {
    let plugin = &config.plugin;
    let (name, bytes) = crate::runtime::read_component(
        config,
        "plugin",
        plugin.path.as_deref(),
        plugin.sha256.as_deref(),
        ("builtin", BUILTIN_PROTOCOL),
    )?;
    LoadedPlugin::load(runtime, &name, &bytes, plugin.limits.clone())
        .map_err(|e| ConfigError::new(&config.source, "plugin.path", format!("{name}: {e}")))
}

/// Loads the pricing policy `config` joins to a protocol: `[plugin.policy]`, or the built-in one.
pub fn load_policy(runtime: &Runtime, config: &Config) -> Result<LoadedPolicy, ConfigError> {
    let policy = &config.plugin.policy;
    let (name, bytes) = crate::runtime::read_component(
        config,
        "plugin.policy",
        policy.path.as_deref(),
        policy.sha256.as_deref(),
        ("builtin-markup", BUILTIN_POLICY),
    )?;
    LoadedPolicy::load(runtime, &name, &bytes, policy.limits.clone())
        .map_err(|e| ConfigError::new(&config.source, "plugin.policy.path", format!("{name}: {e}")))
}

/// Why a candidate was not promoted.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// No candidate is configured.
    #[error("no candidate policy is configured ([plugin.candidate])")]
    NoCandidate,
    /// What the candidate showed makes promoting it unsafe (override with `force`).
    #[error("{0}; promote with force to do it anyway")]
    Unfit(#[from] crate::shadow::Unfit),
    /// The configuration with the candidate as the live policy did not load or pass its check:
    /// the previous one keeps serving.
    #[error(transparent)]
    Refused(#[from] ConfigError),
}

impl Reseller {
    /// Makes the candidate the live policy: `[plugin.policy]` takes the candidate's path, digest and
    /// limits, `[pricing]` its settings when it has its own, and the candidate is removed. Swapped
    /// in as any reload is (loaded and checked beside the configuration in force). Unless `force`,
    /// refused when the candidate has not priced yet, or faulted or refused to price. The
    /// configuration file is not edited. Returns the configuration now in force.
    pub fn promote_candidate(&self, force: bool) -> Result<Config, PromoteError> {
        let active = self.active();
        let Some(shadow) = active.shadow() else {
            return Err(PromoteError::NoCandidate);
        };
        if !force {
            shadow.fit_for_promotion()?;
        }
        drop(active);
        let mut config = self.base_config();
        let Some(candidate) = config.plugin.candidate.take() else {
            return Err(PromoteError::NoCandidate);
        };
        config.plugin.policy = PolicyConfig {
            path: Some(candidate.path),
            sha256: candidate.sha256,
            limits: candidate.limits,
        };
        if let Some(pricing) = candidate.pricing {
            config.pricing = pricing;
        }
        let promoted = self.swap(config)?;
        Ok(promoted.config().clone())
    }
}

/// Identifies what the plugin prices, so that it may key caches on it.
fn catalogue_version(config: &Config) -> u64 {
    let mut h = DefaultHasher::new();
    config.pricing_json().hash(&mut h);
    format!("{:?}", config.catalogue).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pricelist: Option<u64>, lang: Option<&str>) -> pricing::Query {
        pricing::Query {
            lang: lang.map(str::to_owned),
            ..panel_query(pricelist, true)
        }
    }

    fn host(answer_cache: usize) -> Arc<Active> {
        let mut config = Config::embedded().expect("defaults");
        config.server.answer_cache = answer_cache;
        Reseller::new(Runtime::new(), config)
            .expect("host")
            .active()
    }

    #[test]
    fn invented_languages_neither_grow_the_cache_nor_evict_the_real_answer() {
        // Four places: 300 keys of their own would have pushed the real answer out long ago.
        let active = host(4);
        assert!(
            !active.answers.lang_matters,
            "the built-in plugin's answer does not change with lang"
        );
        let real = active
            .export_prices(&query(None, Some("en")))
            .expect("price list");
        let kept = active.answers.len();
        for i in 0..300_u16 {
            let lang: String = [b'a' + (i / 26 % 26) as u8, b'a' + (i % 26) as u8, b'q']
                .iter()
                .map(|b| char::from(*b))
                .collect();
            let doc = active
                .export_prices(&query(None, Some(&lang)))
                .expect("price list");
            assert_eq!(doc, real, "{lang}");
        }
        assert_eq!(active.answers.len(), kept);
        assert_eq!(active.cached_answer(&query(None, None)), Some(real.clone()));
        assert_eq!(active.cached_answer(&query(None, Some("RU"))), Some(real));
    }

    #[test]
    fn the_plugin_gets_only_configured_languages() {
        let active = host(4);
        let lang = |l: &str| active.served(&query(None, Some(l))).lang.clone();
        assert_eq!(lang("ru"), Some("ru".to_owned()));
        assert_eq!(lang("EN"), Some("en".to_owned()));
        assert_eq!(lang("xx"), None);
        assert!(matches!(
            active.served(&query(None, None)),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn only_the_panels_queries_are_kept_and_the_least_recently_used_goes() {
        let active = host(2);
        let tariffs: Vec<u64> = active
            .grants
            .catalogue
            .offers
            .iter()
            .map(|o| o.tariff_id)
            .collect();
        // The trial export at load and the language check took places: start afresh.
        let (a, b, c) = (tariffs[0], tariffs[1], tariffs[2]);
        for id in [a, b] {
            active.export_prices(&query(Some(id), None)).expect("a");
        }
        assert!(active.cached_answer(&query(Some(a), None)).is_some());
        active.export_prices(&query(Some(c), None)).expect("c");
        assert_eq!(active.answers.len(), 2);
        // `a` was used after `b`: `b` made way for `c`.
        assert!(active.cached_answer(&query(Some(a), None)).is_some());
        assert!(active.cached_answer(&query(Some(b), None)).is_none());
        assert!(active.cached_answer(&query(Some(c), None)).is_some());
        // Tariffs the catalogue does not have, and other item types, are answered, not kept.
        active
            .export_prices(&query(Some(999_999_999), None))
            .expect("an empty list");
        let soft = pricing::Query {
            itemtype: "soft".to_owned(),
            ..query(None, None)
        };
        assert!(active.export_prices(&soft).is_err());
        assert!(active.cached_answer(&query(Some(a), None)).is_some());
        assert!(active.cached_answer(&query(Some(c), None)).is_some());
    }
}
