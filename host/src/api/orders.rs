//! `/api/v1/orders…` and `/api/v1/prices/refresh`: the order operations of [`OrderDesk`] for
//! the partner's billing system. Every answer is JSON; every error has a stable `code`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ApiError, authorize};
use crate::http::AppState;
use crate::orders::desk::UpstreamFailure;
use crate::orders::store::MAX_LIST_LIMIT;
use crate::orders::{DeskError, ListFilter, Order, OrderDesk, OrderId, OrderState};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/orders", get(list))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/{action}", post(act))
        .route("/prices/refresh", post(refresh_prices))
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        let (status, code) = match &e {
            DeskError::NotFound => (StatusCode::NOT_FOUND, "order_not_found"),
            DeskError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            DeskError::Conflict { .. } => (StatusCode::CONFLICT, "wrong_state"),
            DeskError::Unavailable(_) => (StatusCode::CONFLICT, "unavailable"),
            DeskError::Upstream { failure, .. } => match failure {
                UpstreamFailure::Refused => (StatusCode::BAD_GATEWAY, "upstream_refused"),
                UpstreamFailure::NotSent => (StatusCode::SERVICE_UNAVAILABLE, "upstream_not_sent"),
                UpstreamFailure::InDoubt => (StatusCode::BAD_GATEWAY, "upstream_in_doubt"),
            },
            DeskError::Internal(_) | DeskError::Config(_) => {
                tracing::error!("order API: {e}");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the host failed; see its log",
                );
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// An order as the API shows it: the stored fields, with the price also as a decimal string.
pub fn order_json(order: &Order) -> Value {
    let mut value = serde_json::to_value(order).unwrap_or_else(|_| json!({}));
    value["price"]["amount"] = json!(order.price.amount());
    value
}

/// Authorizes the request and gives the desk, or says why not.
fn desk(state: &AppState, headers: &HeaderMap) -> Result<Arc<OrderDesk>, ApiError> {
    authorize(&state.reseller.active(), headers)?;
    state.orders.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "orders_unavailable",
            "this server keeps no orders",
        )
    })
}

fn bad_path(e: PathRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("path: {e}"),
    )
}

fn order_id(id: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_order_id", e.to_string()))
}

/// Runs a desk operation on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeskError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            tracing::error!("an order task failed: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the host failed; see its log",
            )
        })?
        .map_err(ApiError::from)
}

/// A JSON object body; an empty body is `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("the request body is not JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(invalid("the request body must be a JSON object".to_owned()));
    }
    serde_json::from_value(value)
        .map_err(|e| invalid(format!("the request body is not what this call takes: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    licence: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&state, &headers)?;
    let query = query.unwrap_or_default();
    let q: ListQuery = query_as(&query)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m);
    let filter = ListFilter {
        state: q
            .state
            .map(|s| s.parse::<OrderState>())
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        licence_id: q.licence,
        limit: match q.limit {
            None => ListFilter::default().limit,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
                .ok_or_else(|| bad(format!("limit: expected 1 to {MAX_LIST_LIMIT}")))?,
        },
    };
    let orders = blocking(move || desk.list(&filter)).await?;
    Ok(Json(
        json!({"orders": orders.iter().map(order_json).collect::<Vec<_>>()}),
    ))
}

/// Parses a query string into `T` (unknown keys refused), with the API's error.
fn query_as<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let map: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("query: {e}"),
        )
    })
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&state, &headers)?;
    let Path(id) = path.map_err(bad_path)?;
    let id = order_id(&id)?;
    let (order, history) = blocking(move || Ok((desk.get(&id)?, desk.history(&id)?))).await?;
    Ok(Json(
        json!({"order": order_json(&order), "history": history}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Placed {
    service_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rebind {
    licence: String,
    #[serde(default)]
    ip: Option<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Renew {
    period: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    #[serde(default)]
    absent_upstream: bool,
}

const ACTOR: &str = "api";

async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&state, &headers)?;
    let Path((id, action)) = path.map_err(bad_path)?;
    let id = order_id(&id)?;
    let answer = match action.as_str() {
        "paid" => {
            body::<Empty>(&bytes)?;
            let marked = blocking(move || desk.mark_paid(&id, ACTOR)).await?;
            json!({"order": order_json(&marked.order), "changed": marked.changed})
        }
        "placed" => {
            let Placed { service_id } = body(&bytes)?;
            let order = blocking(move || desk.mark_placed(&id, &service_id, ACTOR)).await?;
            json!({"order": order_json(&order)})
        }
        "rebind" => {
            let Rebind { licence, ip } = body(&bytes)?;
            let order = blocking(move || desk.rebind(&id, &licence, ip, ACTOR)).await?;
            json!({"order": order_json(&order)})
        }
        "renew" => {
            let Renew { period } = body(&bytes)?;
            let order = blocking(move || {
                let months = match period {
                    Some(p) => p,
                    None => u16::try_from(desk.get(&id)?.period_months).unwrap_or(u16::MAX),
                };
                desk.renew(&id, months, ACTOR)
            })
            .await?;
            json!({"order": order_json(&order)})
        }
        "remove" => {
            body::<Empty>(&bytes)?;
            let order = blocking(move || desk.remove(&id, ACTOR)).await?;
            json!({"order": order_json(&order)})
        }
        "cancel" => {
            body::<Empty>(&bytes)?;
            let order = blocking(move || desk.cancel(&id, ACTOR)).await?;
            json!({"order": order_json(&order)})
        }
        "retry" => {
            let Retry { absent_upstream } = body(&bytes)?;
            let order = blocking(move || desk.retry(&id, absent_upstream, ACTOR)).await?;
            json!({"order": order_json(&order)})
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such order action: expected paid, placed, rebind, renew, remove, cancel or retry",
            ));
        }
    };
    Ok(Json(answer))
}

async fn refresh_prices(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let desk = desk(&state, &headers)?;
    let refresh = blocking(move || desk.refresh_prices()).await?;
    Ok(Json(json!(refresh)))
}
