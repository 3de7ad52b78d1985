//! `/api/v1/…` for the module's life after the sale: renewals (with a quote first and an
//! `Idempotency-Key`), suspend and resume, removal, rebinding, operations in doubt,
//! reconciliation, the balance, renewals due, events and the Buy counts.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::orders::{ACTOR, Empty, OrderPath};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, Desk, blocking, parse_date};
use crate::money::Months;
use crate::orders::lifecycle::{Finding, Performed};
use crate::orders::reconcile::Options;
use crate::orders::{DeskError, OrderDesk};
use crate::reseller::Reseller;

pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
{
    Router::new()
        .route("/orders/{id}/renew", post(renew))
        .route("/orders/{id}/renewal-quote", get(quote))
        .route("/orders/{id}/suspend", post(suspend))
        .route("/orders/{id}/resume", post(resume))
        .route("/orders/{id}/remove", post(remove))
        .route("/orders/{id}/rebind", post(rebind))
        .route("/orders/{id}/operations", get(operations))
        .route("/orders/{id}/operations/{operation}/resolve", post(resolve))
        .route("/renewals", get(renewals))
        .route("/reconcile", post(reconcile))
        .route("/balance", get(balance))
        .route("/events", get(events))
        .route("/buys", get(buys))
}

/// The `Idempotency-Key` header, when given: the billing system's own name for the request
/// (its invoice ID, say). Read from the headers only, after the token.
pub(super) struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .map_err(|_| ApiError::invalid_request("Idempotency-Key: printable ASCII only"))?;
        crate::orders::operation::check_key(key)
            .map_err(|e| ApiError::invalid_request(format!("Idempotency-Key: {e}")))?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

/// An operation's answer: the order, the operation, and whether this repeats an earlier
/// answer (also said by the `Idempotent-Replayed` header).
fn performed(p: Performed) -> Response {
    let replayed = p.replayed;
    let mut response = Json(json!({
        "order": p.order,
        "operation": p.operation,
        "replayed": replayed,
    }))
    .into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Renew {
    period: Option<Months>,
    /// The new expiry date, for a renewal done by hand (manual mode).
    expires: Option<String>,
}

async fn renew(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(Renew { period, expires }): ApiJson<Renew>,
) -> Result<Response, ApiError> {
    let expires = expires.as_deref().map(parse_date).transpose()?;
    let done = blocking(move || desk.renew(&id, period, key.as_deref(), expires, ACTOR)).await?;
    Ok(performed(done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteQuery {
    period: Option<Months>,
}

async fn quote(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    ApiQuery(QuoteQuery { period }): ApiQuery<QuoteQuery>,
) -> Result<Json<Value>, ApiError> {
    let quote = blocking(move || desk.quote_renewal(&id, period)).await?;
    Ok(Json(json!({ "quote": quote })))
}

async fn suspend(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<Response, ApiError> {
    let done = blocking(move || desk.suspend(&id, key.as_deref(), ACTOR)).await?;
    Ok(performed(done))
}

async fn resume(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<Response, ApiError> {
    let done = blocking(move || desk.resume(&id, key.as_deref(), ACTOR)).await?;
    Ok(performed(done))
}

async fn remove(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(Empty {}): ApiJson<Empty>,
) -> Result<Response, ApiError> {
    let done = blocking(move || desk.remove(&id, key.as_deref(), ACTOR)).await?;
    Ok(performed(done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rebind {
    licence: String,
    #[serde(default)]
    ip: Option<IpAddr>,
}

async fn rebind(
    Desk(desk): Desk,
    OrderPath(id): OrderPath,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(Rebind { licence, ip }): ApiJson<Rebind>,
) -> Result<Response, ApiError> {
    let done = blocking(move || desk.rebind(&id, &licence, ip, key.as_deref(), ACTOR)).await?;
    Ok(performed(done))
}

async fn operations(Desk(desk): Desk, OrderPath(id): OrderPath) -> Result<Json<Value>, ApiError> {
    let operations = blocking(move || desk.operations(&id)).await?;
    Ok(Json(json!({ "operations": operations })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolve {
    /// Whether upstream did it.
    done: bool,
    /// For a renewal found done: the new expiry date.
    expires: Option<String>,
}

async fn resolve(
    Desk(desk): Desk,
    ApiPath((id, operation)): ApiPath<(String, i64)>,
    ApiJson(Resolve { done, expires }): ApiJson<Resolve>,
) -> Result<Response, ApiError> {
    let id = crate::orders::OrderId::parse(&id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_order_id", e.to_string()))?;
    let expires = expires.as_deref().map(parse_date).transpose()?;
    let finding = if done {
        Finding::Done(expires)
    } else {
        Finding::NotDone
    };
    let done = blocking(move || desk.resolve_operation(&id, operation, finding, ACTOR)).await?;
    Ok(performed(done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewalsQuery {
    within_days: Option<u32>,
}

/// Placed and suspended modules expiring within `within_days` (7 by default), soonest first;
/// those already past their expiry come first.
async fn renewals(
    Desk(desk): Desk,
    ApiQuery(RenewalsQuery { within_days }): ApiQuery<RenewalsQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = within_days.unwrap_or(7);
    if days > 3660 {
        return Err(ApiError::invalid_request("within_days: at most 3660"));
    }
    let due = blocking(move || desk.renewals_due(days)).await?;
    Ok(Json(json!({ "within_days": days, "orders": due })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reconcile {
    #[serde(default)]
    apply: bool,
    #[serde(default)]
    import: bool,
}

async fn reconcile(
    Desk(desk): Desk,
    ApiJson(Reconcile { apply, import }): ApiJson<Reconcile>,
) -> Result<Json<Value>, ApiError> {
    let options = Options {
        apply,
        import,
        unambiguous_only: false,
        resolve_doubts: false,
    };
    let report = blocking(move || desk.reconcile(options, ACTOR)).await?;
    Ok(Json(json!({ "report": report })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BalanceQuery {
    /// Read it from upstream now rather than show the last reading.
    #[serde(default)]
    fresh: bool,
}

async fn balance(
    Desk(desk): Desk,
    ApiQuery(BalanceQuery { fresh }): ApiQuery<BalanceQuery>,
) -> Result<Json<Value>, ApiError> {
    let balance = blocking(move || match desk.stored_balance()? {
        Some(b) if !fresh => Ok(b),
        _ => desk.read_balance(),
    })
    .await?;
    Ok(Json(json!({ "balance": balance })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// The event feed: events with an ID above `after`, oldest first.
async fn events(
    Desk(desk): Desk,
    ApiQuery(EventsQuery { after, limit }): ApiQuery<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_request("limit: expected 1 to 1000"));
    }
    let after = after.unwrap_or(0);
    let events = blocking(move || {
        desk.backend()
            .events_after(after, limit)
            .map_err(DeskError::from)
    })
    .await?;
    let next = events.last().map_or(after, |e| e.id);
    Ok(Json(json!({ "events": events, "next_after": next })))
}

async fn buys(Desk(desk): Desk) -> Json<Value> {
    Json(json!({ "buys": desk.buy_stats() }))
}
