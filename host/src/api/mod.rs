//! The billing system's JSON API under `/api/v1/`, authenticated with the bearer token of
//! `[api] token`. Without a token configured the API is off. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a stable `code`.
//!
//! The router is generic over the application's state: it needs only the host
//! (`Arc<Reseller>`) and, for the order routes, the desk (`Option<Arc<OrderDesk>>`), taken with
//! [`FromRef`]. Every handler starts with an extractor that checks the token ([`Authorized`],
//! or [`Desk`] which also needs orders), so that nothing of a request's body is read before it
//! is authorised.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::limits::Limit;
use crate::orders::OrderDesk;
use crate::reseller::{Active, Reseller};
use crate::runtime::Harness;
use crate::serve::{BodyError, read_body};

pub mod client;
mod json;
mod lifecycle;
mod orders;
mod shadow;

/// A `YYYY-MM-DD` date from a request.
pub(super) fn parse_date(text: &str) -> Result<time::Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text.trim(), format)
        .map_err(|_| ApiError::invalid_request(format!("`{text}` is not a date (YYYY-MM-DD)")))
}

/// An API error: HTTP status, stable code, message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The host failed; the details are in its log only.
    pub(crate) fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the host failed; see its log",
        )
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The API's routes, to be nested under `/api/v1`, over any state that holds the host and,
/// optionally, the order desk.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
{
    Router::new()
        .route("/plugin", get(plugin_info))
        .route("/plugin/reload", post(reload))
        .merge(orders::routes())
        .merge(lifecycle::routes())
        .merge(shadow::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route takes another method (GET reads, POST acts)",
            )
        })
}

/// A request that carries the configured bearer token (compared in constant time). Extracted
/// first, from the headers alone.
pub struct Authorized;

impl<S> FromRequestParts<S> for Authorized
where
    S: Send + Sync,
    Arc<Reseller>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let reseller = Arc::<Reseller>::from_ref(state);
        let active = reseller.active();
        let Some(crate::config::Secret(expected)) = &active.config().api.token else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "api_disabled",
                "the API is off: no api.token is configured",
            ));
        };
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(Authorized)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            ))
        }
    }
}

/// The order desk of an authorised request; `orders_unavailable` when the server keeps none.
pub struct Desk(pub Arc<OrderDesk>);

impl<S> FromRequestParts<S> for Desk
where
    S: Send + Sync,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Authorized::from_request_parts(parts, state).await?;
        Option::<Arc<OrderDesk>>::from_ref(state)
            .map(Desk)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "orders_unavailable",
                    "this server keeps no orders",
                )
            })
    }
}

/// A JSON object body of the call's fields, whatever the content type says (`curl -d` sends
/// form's); an empty body is `{}`. Unknown fields are refused by the target type, and a key
/// given twice anywhere in the body is refused by name. The body is bounded by
/// `server.max_api_body_bytes` (a larger declared length is refused unread) and
/// `server.body_timeout_ms`.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    Arc<Reseller>: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let invalid =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
        let (max, timeout) = {
            let active = Arc::<Reseller>::from_ref(state).active();
            let server = &active.config().server;
            (
                server.max_api_body_bytes,
                std::time::Duration::from_millis(server.body_timeout_ms),
            )
        };
        let (parts, body) = req.into_parts();
        let bytes = read_body(&parts.headers, body, max, timeout)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(_) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("{e} (server.max_api_body_bytes)"),
                ),
                BodyError::TimedOut(_) => {
                    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string())
                }
                BodyError::Failed(_) => invalid(e.to_string()),
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("the request body must be a JSON object".to_owned()));
        }
        json::unique_keys(text)
            .map_err(|e| invalid(format!("the request body is not JSON: {e}")))?;
        serde_json::from_slice(text)
            .map(ApiJson)
            .map_err(|e| invalid(format!("the request body is not what this call takes: {e}")))
    }
}

/// The query string as `T` (unknown keys refused by the target type), with the API's error.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::invalid_request(format!("query: {}", e.body_text())))
    }
}

/// The path's parameters as `T`, with the API's error.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::invalid_request(format!("path: {}", e.body_text())))
    }
}

/// Runs blocking work (the plugin, the database) on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!("an API task failed: {e}");
            ApiError::internal()
        })?
        .map_err(Into::into)
}

/// What serves: the plugin and the policy joined to it, each with its digest, contract,
/// imports, exports and counters; `stats` repeats the plugin's call and fault counts.
pub fn describe(active: &Active) -> Value {
    let plugin = active.plugin();
    let stats = plugin.stats();
    let component = |h: &Harness| {
        let stats = h.stats();
        let limit_hits: serde_json::Map<String, Value> = Limit::ALL
            .iter()
            .map(|l| (l.key().to_owned(), json!(stats.limit_hits(*l))))
            .collect();
        json!({
            "name": &**h.name(),
            "sha256": h.sha256(),
            "contract": h.contract_version(),
            "imports": h.imports(),
            "exports": h.exports(),
            "stats": {"calls": stats.calls(), "faults": stats.faults(), "limit_hits": limit_hits},
        })
    };
    json!({
        "plugin": component(plugin),
        "policy": active.policy().map(|p| component(p)),
        "candidate": active.shadow().map(|s| component(s.candidate())),
        "modules": active.config().catalogue.modules.len(),
        "stats": {"calls": stats.calls(), "faults": stats.faults()},
    })
}

async fn plugin_info(_: Authorized, State(reseller): State<Arc<Reseller>>) -> axum::Json<Value> {
    axum::Json(describe(&reseller.active()))
}

/// Why a reload was refused: said to the caller without the configuration's path.
struct Refused(crate::config::ConfigError);

impl From<Refused> for ApiError {
    fn from(Refused(e): Refused) -> Self {
        tracing::warn!("reload refused: {e}");
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reload_failed",
            format!(
                "the previous configuration keeps serving: {}: {}",
                e.key, e.message
            ),
        )
    }
}

async fn reload(
    _: Authorized,
    State(reseller): State<Arc<Reseller>>,
) -> Result<axum::Json<Value>, ApiError> {
    let active = blocking(move || reseller.reload().map_err(Refused)).await?;
    Ok(axum::Json(describe(&active)))
}
