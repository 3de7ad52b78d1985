//! The operator console under `/console/`: server-rendered pages (askama templates compiled
//! into the binary) over the order desk — orders with filters and paging, an order's history
//! and the actions its state allows, in-doubt orders first, the plugin, the prices, the
//! reconciliation.
//!
//! Every page and action needs a session: sign in with the API token or the operator password
//! of `[console]`; the session cookie is `HttpOnly`, `SameSite=Strict`, `Secure` when served
//! over TLS, and lives in this process (sign in on each host behind a load balancer without
//! sticky sessions). Every form carries the session's CSRF token; every action asks for a
//! confirmation and is recorded as the console's. Works without JavaScript; every text is
//! escaped by the templates; the Content-Security-Policy allows only the console's own style
//! sheet.

mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use session::Console;

use crate::orders::OrderDesk;
use crate::reseller::Reseller;

/// Where the console is served.
pub const BASE: &str = "/console";

/// The console's routes, to be nested under [`BASE`], over any state that holds the host, the
/// order desk and the console's sessions.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
    Arc<Console>: FromRef<S>,
{
    Router::new()
        .route("/", get(pages::home))
        .route("/style.css", get(style))
        .route("/signin", get(pages::signin_form).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/orders", get(pages::orders))
        .route("/orders/{id}", get(pages::order))
        .route("/orders/{id}/{action}", post(pages::act))
        .route("/plugin", get(pages::plugin))
        .route("/plugin/reload", post(pages::reload))
        .route("/prices", get(pages::prices))
        .route("/prices/refresh", post(pages::refresh_prices))
        .route("/balance", post(pages::read_balance))
        .route("/events", get(pages::events))
        .route(
            "/reconcile",
            get(pages::reconcile_form).post(pages::reconcile),
        )
        .fallback(|| async { pages::not_found() })
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        include_str!("../../templates/console/style.css"),
    )
        .into_response()
}

/// A console page: never cached, never framed, nothing loaded but the console's own style
/// sheet, forms posted only to the console.
fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'self'; form-action 'self'; \
                     frame-ancestors 'none'; base-uri 'none'",
                ),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// A redirect within the console.
fn to(path: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("{BASE}{path}")) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
