//! `/api/v1/orders…` and `/api/v1/prices/refresh`: the order operations of [`OrderDesk`] for
//! the partner's billing system. Every answer is JSON; every error has a stable `code`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, ApiPath, ApiQuery, Desk, blocking};
use crate::money::Months;
use crate::orders::store::MAX_LIST_LIMIT;
use crate::orders::{DeskError, ListFilter, OrderDesk, OrderId, OrderState, UpstreamOutcome};
use crate::reseller::Reseller;

pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
{
    Router::new()
        .route("/orders", get(list))
        .route("/orders/{id}", get(show).patch(details))
        .route("/orders/{id}/paid", post(paid))
        .route("/orders/{id}/placed", post(placed))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/orders/{id}/retry", post(retry))
        .route("/prices/refresh", post(refresh_prices))
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        let (status, code) = match &e {
            DeskError::NotFound => (StatusCode::NOT_FOUND, "order_not_found"),
            DeskError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            DeskError::Conflict { .. } => (StatusCode::CONFLICT, "wrong_state"),
            DeskError::Unavailable(_) => (StatusCode::CONFLICT, "unavailable"),
            DeskError::Upstream { outcome, .. } => match outcome {
                UpstreamOutcome::Refused => (StatusCode::BAD_GATEWAY, "upstream_refused"),
                UpstreamOutcome::NotSent => (StatusCode::SERVICE_UNAVAILABLE, "upstream_not_sent"),
                UpstreamOutcome::InDoubt => (StatusCode::BAD_GATEWAY, "upstream_in_doubt"),
            },
            DeskError::Plugin(_) => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_failed"),
            DeskError::NoOperation => (StatusCode::NOT_FOUND, "operation_not_found"),
            DeskError::OperationOpen { .. } => (StatusCode::CONFLICT, "operation_open"),
            DeskError::Internal(_) | DeskError::Config(_) => {
                tracing::error!("order API: {e}");
                return ApiError::internal();
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// The order ID of the path, checked before anything else of the request is read.
pub(super) struct OrderPath(pub(super) OrderId);

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ApiPath(id) = ApiPath::<String>::from_request_parts(parts, state).await?;
        OrderId::parse(&id)
            .map(OrderPath)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_order_id", e.to_string()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    licence: Option<String>,
    tariff: Option<u64>,
    expires_by: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn list(Desk(desk): Desk, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Value>, ApiError> {
    let filter = ListFilter {
        state: q
            .state
            .map(|s| s.parse::<OrderState>())
            .transpose()
            .map_err(|e| ApiError::invalid_request(e.to_string()))?,
        licence_id: q.licence,
        tariff_id: q.tariff,
        expires_by: q.expires_by.as_deref().map(super::parse_date).transpose()?,
        offset: q.offset.unwrap_or(0),
        created_from_ms: None,
        created_to_ms: None,
        limit: match q.limit {
            None => ListFilter::default().limit,
            Some(l) if (1..=MAX_LIST_LIMIT).contains(&l) => l,
            Some(_) => {
                return Err(ApiError::invalid_request(format!(
                    "limit: expected 1 to {MAX_LIST_LIMIT}"
                )));
            }
        },
    };
    let orders = blocking(move || desk.list(&filter)).await?;
    Ok(Json(json!({ "orders": orders })))
}

async fn show(Desk(desk): Desk, OrderPath(id): OrderPath) -> Result<Json<Value>, ApiError> {
    let (order, history, operations) = blocking(move || {
        Ok::<_, DeskError>((desk.get(&id)?, desk.history(&id)?, desk.operations(&id)?))
    })
    .await?;
    Ok(Json(
        json!({"order": order, "history": history, "operations": operations}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Details {
    period: Option<Months>,
    fields: Option<std::collections::BTreeMap<String, String>>,
}

/// Changes what an unpaid order asks for (its period) or gives the module's order fields.
async fn details(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiJson(Details { period, fields }): ApiJson<Details>,
) -> Result<Json<Value>, ApiError> {
    let order = blocking(move || {
        let fields: Option<Vec<(String, String)>> = fields.map(|f| f.into_iter().collect());
        desk.set_details(&id, period, fields.as_deref(), ACTOR)
    })
    .await?;
    Ok(Json(json!({ "order": order })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Placed {
    service_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Retry {
    #[serde(default)]
    absent_upstream: bool,
}

/// Who the order history says acted.
pub(super) const ACTOR: &str = "api";

async fn paid(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<Json<Value>, ApiError> {
    let marked = blocking(move || desk.mark_paid(&id, ACTOR)).await?;
    Ok(Json(
        json!({"order": marked.order, "changed": marked.changed}),
    ))
}

async fn placed(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiJson(Placed { service_id }): ApiJson<Placed>,
) -> Result<Json<Value>, ApiError> {
    let order = blocking(move || desk.mark_placed(&id, &service_id, ACTOR)).await?;
    Ok(Json(json!({ "order": order })))
}

async fn cancel(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<Json<Value>, ApiError> {
    let order = blocking(move || desk.cancel(&id, ACTOR)).await?;
    Ok(Json(json!({ "order": order })))
}

async fn retry(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiJson(Retry { absent_upstream }): ApiJson<Retry>,
) -> Result<Json<Value>, ApiError> {
    let order = blocking(move || desk.retry(&id, absent_upstream, ACTOR)).await?;
    Ok(Json(json!({ "order": order })))
}

async fn refresh_prices(Desk(desk): Desk) -> Result<Json<Value>, ApiError> {
    let refresh = blocking(move || desk.refresh_prices()).await?;
    Ok(Json(json!(refresh)))
}
