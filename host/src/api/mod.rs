//! The billing system's JSON API under `/api/v1/`, authenticated with the bearer token of
//! `[api] token`. Without a token configured the API is off. Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a stable `code`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::http::AppState;
use crate::runtime::Limit;
use crate::service::{Active, Reseller};

mod orders;

pub use orders::order_json;

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
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

/// The API's routes, to be nested under `/api/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugin", get(plugin_info))
        .route("/plugin/reload", post(reload))
        .merge(orders::routes())
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

/// Checks the bearer token in constant time.
pub(crate) fn authorize(active: &Active, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(crate::config::Secret(expected)) = &active.config().api.token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "api_disabled",
            "the API is off: no api.token is configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ))
    }
}

/// What serves: the plugin, its digest, limits, imports and counters.
pub fn describe(active: &Active) -> Value {
    let plugin = active.plugin();
    let stats = plugin.stats();
    let limit_hits: serde_json::Map<String, Value> = Limit::ALL
        .iter()
        .map(|l| (l.key().to_owned(), json!(stats.limit_hits(*l))))
        .collect();
    json!({
        "plugin": {
            "name": &**plugin.name(),
            "sha256": plugin.sha256(),
            "imports": plugin.imports(),
            "exports": plugin.exports(),
        },
        "modules": active.config().catalogue.modules.len(),
        "stats": {"calls": stats.calls(), "faults": stats.faults(), "limit_hits": limit_hits},
    })
}

async fn plugin_info(
    State(reseller): State<Arc<Reseller>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let active = reseller.active();
    authorize(&active, &headers)?;
    Ok(Json(describe(&active)))
}

async fn reload(
    State(reseller): State<Arc<Reseller>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&reseller.active(), &headers)?;
    let outcome = tokio::task::spawn_blocking(move || reseller.reload())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the reload task failed",
            )
        })?;
    match outcome {
        Ok(active) => Ok(Json(describe(&active))),
        Err(e) => {
            tracing::warn!("reload refused: {e}");
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload_failed",
                format!("the previous configuration keeps serving: {e}"),
            ))
        }
    }
}
