//! The partner-facing HTTP endpoints. `GET` or `POST /billmgr` dispatches on `func`, as
//! BILLmanager does; every failure is answered with a BILLmanager error document.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::net::TcpListener;

use crate::billmgr::{BillmgrError, Params};
use crate::bindings::{pricing::Format, types::PricingError};
use crate::orders::buy::BuyRequest;
use crate::orders::page::{error_page, order_page};
use crate::orders::{DeskError, OrderDesk, OrderId};
use crate::service::{ExportError, Reseller, pricing_message};

/// What every handler shares: the host and, when orders are kept, the order desk.
#[derive(Clone)]
pub struct AppState {
    /// The host.
    pub reseller: Arc<Reseller>,
    /// The orders; without them the Buy redirect and the order API answer "unavailable".
    pub orders: Option<Arc<OrderDesk>>,
}

impl FromRef<AppState> for Arc<Reseller> {
    fn from_ref(state: &AppState) -> Self {
        state.reseller.clone()
    }
}

/// The price routes alone, over a shared [`Reseller`]: no orders are taken.
pub fn router(reseller: Arc<Reseller>) -> Router {
    app(reseller, None)
}

/// Every route: prices, the Buy redirect and order pages, and the billing system's API.
pub fn app(reseller: Arc<Reseller>, orders: Option<Arc<OrderDesk>>) -> Router {
    Router::new()
        .route("/billmgr", any(billmgr))
        .route("/manager/billmgr", any(billmgr))
        .route("/order/{id}", get(order))
        .route("/manager/order/{id}", get(order))
        .nest("/api/v1", crate::api::routes())
        .fallback(|| async { answer_error(&BillmgrError::not_found(), Format::Xml) })
        .with_state(AppState { reseller, orders })
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    reseller: Arc<Reseller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(reseller), shutdown).await
}

/// Serves any `router` on `listener` until `shutdown` completes.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `addr`, logging the address actually bound (useful with port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}/billmgr", listener.local_addr()?);
    Ok(listener)
}

async fn billmgr(
    State(state): State<AppState>,
    method: axum::http::Method,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let max = state.reseller.active().config().server.max_query_bytes;
    let query = query.unwrap_or_default();
    if query.len() > max {
        return answer_error(&BillmgrError::too_long(max), Format::Xml);
    }
    let form = match method {
        axum::http::Method::GET | axum::http::Method::HEAD => Bytes::new(),
        axum::http::Method::POST => {
            match axum::body::to_bytes(body, max.saturating_sub(query.len())).await {
                Ok(form) => form,
                Err(_) => return answer_error(&BillmgrError::too_long(max), Format::Xml),
            }
        }
        _ => {
            let mut response = answer_error(
                &BillmgrError {
                    status: 405,
                    ..BillmgrError::value("method", method.as_str(), "use GET or POST")
                },
                Format::Xml,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    let params = Params::parse(&[query.as_bytes(), &form]);
    // The panel's Buy button: a browser, not a BILLmanager client.
    if params.get("func").is_none() && (params.has("module") || params.has("license")) {
        return buy(state.orders, &params).await;
    }
    let format = params.format().unwrap_or(Format::Xml);
    match dispatch(state.reseller, &params).await {
        Ok(response) => response,
        Err(e) => answer_error(&e, format),
    }
}

async fn dispatch(reseller: Arc<Reseller>, params: &Params) -> Result<Response, BillmgrError> {
    match params.get("func") {
        Some("pricelist.export") => price_export(reseller, params).await,
        Some(other) => Err(BillmgrError::unknown_func(other)),
        None => Err(BillmgrError::missed("func")),
    }
}

async fn price_export(reseller: Arc<Reseller>, params: &Params) -> Result<Response, BillmgrError> {
    let query = params.price_query()?;
    let format = query.format;
    let active = reseller.active();
    let answer = match active.cached_answer(&query) {
        Some(doc) => Ok(doc),
        None => {
            let _turn = reseller.pricing_turn().await;
            tokio::task::spawn_blocking(move || active.export_prices(&query))
                .await
                .map_err(|e| {
                    tracing::error!("the price export task failed: {e}");
                    BillmgrError::internal()
                })?
        }
    };
    match answer {
        // A plugin may not choose what a browser would make of the partner's page.
        Ok(doc) if !BillmgrError::content_type_of(format, &doc.content_type) => {
            tracing::error!(
                "the plugin answered `{}` to a {format:?} price export",
                doc.content_type.escape_debug()
            );
            Err(BillmgrError::plugin())
        }
        Ok(doc) => Ok(document(StatusCode::OK, &doc.content_type, doc.body)),
        Err(ExportError::Pricing(PricingError::InvalidValue(f))) => {
            Err(BillmgrError::value(&f.field, &f.value, &f.message))
        }
        Err(ExportError::Pricing(e)) => {
            tracing::error!("the plugin cannot price: {}", pricing_message(&e));
            Err(BillmgrError::internal())
        }
        // Whose fault it was reaches the panel: the plugin's, or the host's.
        Err(ExportError::Fault(fault)) if fault.is_guest() => {
            tracing::error!("{fault}");
            Err(BillmgrError::plugin())
        }
        Err(ExportError::Fault(fault)) => {
            tracing::error!("{fault}");
            Err(BillmgrError::internal())
        }
    }
}

/// The Buy redirect: records the order and sends the browser on to the checkout.
async fn buy(orders: Option<Arc<OrderDesk>>, params: &Params) -> Response {
    let Some(desk) = orders else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            error_page(
                "Ordering is not available",
                "This server does not take orders.",
            ),
        );
    };
    let request = match BuyRequest::parse(|name| params.get(name)) {
        Ok(request) => request,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                error_page(
                    "This order link is not valid",
                    &format!("The parameter `{}` is {}.", e.field, e.message),
                ),
            );
        }
    };
    let task_desk = desk.clone();
    let created = tokio::task::spawn_blocking(move || task_desk.buy(&request)).await;
    let created = match created {
        Ok(Ok(created)) => created,
        Ok(Err(DeskError::Invalid(m))) => {
            return html(
                StatusCode::BAD_REQUEST,
                error_page("This order link is not valid", &m),
            );
        }
        Ok(Err(DeskError::Unavailable(m))) => {
            return html(
                StatusCode::CONFLICT,
                error_page("This module cannot be ordered now", &m),
            );
        }
        Ok(Err(e)) => {
            tracing::error!("recording a Buy redirect: {e}");
            return failed_page();
        }
        Err(e) => {
            tracing::error!("the Buy redirect task failed: {e}");
            return failed_page();
        }
    };
    let order = &created.order;
    tracing::info!(
        order = %order.id,
        licence = order.licence_id,
        tariff = order.tariff_id,
        price = %order.price,
        reused = created.reused,
        "Buy redirect"
    );
    let location = match &desk.reseller().active().config().orders.checkout_url {
        Some(template) => checkout_url(template, order),
        // Relative, so that it works under any prefix: `/billmgr` → `/order/ID`.
        None => format!("order/{}", order.id),
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Fills a checkout URL template with an order's ID and price, percent-encoded.
pub fn checkout_url(template: &str, order: &crate::orders::Order) -> String {
    let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    template
        .replace("{order_id}", &encode(order.id.as_str()))
        .replace("{amount}", &encode(&order.price.amount()))
        .replace("{currency}", &encode(&order.price.currency))
}

/// The host's own order page.
async fn order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            error_page("No such order", "Check the link you followed."),
        )
    };
    let (Some(desk), Ok(id)) = (state.orders, OrderId::parse(&id)) else {
        return not_found();
    };
    match tokio::task::spawn_blocking(move || desk.get(&id)).await {
        Ok(Ok(order)) => html(StatusCode::OK, order_page(&order)),
        Ok(Err(DeskError::NotFound)) => not_found(),
        Ok(Err(e)) => {
            tracing::error!("showing an order: {e}");
            failed_page()
        }
        Err(e) => {
            tracing::error!("the order page task failed: {e}");
            failed_page()
        }
    }
}

/// The page for a failure of the host: the details are in its log only.
fn failed_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        error_page("Something went wrong", "Please try again later."),
    )
}

/// An HTML page for a browser: never cached, never framed, nothing loaded from elsewhere.
fn html(status: StatusCode, body: String) -> Response {
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
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
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

pub(crate) fn answer_error(e: &BillmgrError, format: Format) -> Response {
    let (content_type, body) = e.render(format);
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    document(status, content_type, body)
}

pub(crate) fn document(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let nosniff = HeaderValue::from_static("nosniff");
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, nosniff),
        ],
        body,
    )
        .into_response()
}
