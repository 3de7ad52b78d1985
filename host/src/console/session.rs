//! Console sessions: sign-in with the API token or the operator password, a random session ID
//! in a cookie, a CSRF token per session, and a bound on sign-in attempts per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use super::BASE;
use crate::config::{Config, Secret};
use crate::reseller::Reseller;

/// The session cookie's name.
pub const COOKIE: &str = "reseller_console";

/// Sessions kept at most; the oldest go first.
const MAX_SESSIONS: usize = 1_000;

/// One signed-in operator.
#[derive(Clone, Debug)]
struct Session {
    who: String,
    csrf: String,
    expires: Instant,
}

/// The console's state: its sessions and its sign-in allowance per address.
pub struct Console {
    sessions: Mutex<HashMap<String, Session>>,
    signins: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Console {
    /// No session yet; ten sign-in attempts per address per minute.
    pub fn new() -> Console {
        let quota = governor::Quota::per_minute(NonZeroU32::MIN.saturating_add(9));
        Console {
            sessions: Mutex::new(HashMap::new()),
            signins: governor::RateLimiter::keyed(quota),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one sign-in attempt from `client`'s allowance.
    pub(super) fn may_try(&self, client: Option<IpAddr>) -> bool {
        client.is_none_or(|ip| self.signins.check_key(&ip).is_ok())
    }

    /// Whether `secret` signs in, and as whom: the operator password, or the API token.
    pub(super) fn who(config: &Config, secret: &str) -> Option<&'static str> {
        let matches = |s: &str| !s.is_empty() && bool::from(s.as_bytes().ct_eq(secret.as_bytes()));
        if config.console.password().is_some_and(|p| matches(&p)) {
            return Some("operator");
        }
        match &config.api.token {
            Some(Secret(token)) if matches(token) => Some("API token holder"),
            _ => None,
        }
    }

    /// Starts a session for `who`; returns its ID.
    pub(super) fn start(&self, who: &str, lifetime: Duration) -> Result<String, getrandom::Error> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut sessions = self.sessions();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                who: who.to_owned(),
                csrf,
                expires: now + lifetime,
            },
        );
        Ok(id)
    }

    /// Ends a session.
    pub(super) fn end(&self, id: &str) {
        self.sessions().remove(id);
    }

    fn find(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions();
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }
}

/// 32 random bytes, hex.
fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session ID of a request's cookie.
pub(super) fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Whether the request came over TLS (directly, or through a proxy that says so).
pub(super) fn over_tls(config: &Config, headers: &HeaderMap) -> bool {
    config.console.secure_cookie.unwrap_or_else(|| {
        headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
    })
}

/// The `Set-Cookie` value of a session (or of its end, with an empty ID).
pub(super) fn set_cookie(id: &str, secure: bool, max_age: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path={BASE}; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A signed-in operator: who, the session, and its CSRF token. Without a session, a `GET` goes
/// to the sign-in page and anything else is refused.
pub struct Operator {
    /// Who signed in.
    pub who: String,
    /// The session's ID.
    pub session: String,
    /// The session's CSRF token, which every form must carry.
    pub csrf: String,
}

impl Operator {
    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(self.csrf.as_bytes())))
    }

    /// The actor recorded for what this operator does.
    pub fn actor(&self) -> String {
        format!("console ({})", self.who)
    }
}

/// Why a request has no operator.
pub enum NoOperator {
    /// The console is off: no API token and no operator password are configured.
    Off,
    /// Not signed in.
    SignIn,
    /// Not signed in, and not a page to be sent to the sign-in from.
    Refused,
}

impl<S> FromRequestParts<S> for Operator
where
    S: Send + Sync,
    Arc<Reseller>: FromRef<S>,
    Arc<Console>: FromRef<S>,
{
    type Rejection = NoOperator;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, NoOperator> {
        let reseller = Arc::<Reseller>::from_ref(state);
        if !reseller.active().config().console_enabled() {
            return Err(NoOperator::Off);
        }
        let console = Arc::<Console>::from_ref(state);
        let found = cookie(&parts.headers).and_then(|id| console.find(&id).map(|s| (id, s)));
        match found {
            Some((session, s)) => Ok(Operator {
                who: s.who,
                session,
                csrf: s.csrf,
            }),
            None if parts.method == Method::GET => Err(NoOperator::SignIn),
            None => Err(NoOperator::Refused),
        }
    }
}

/// The console's status for a refused CSRF token.
pub const CSRF_REFUSED: StatusCode = StatusCode::FORBIDDEN;
