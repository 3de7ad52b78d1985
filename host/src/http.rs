//! The partner-facing HTTP endpoints. `GET` or `POST /billmgr` dispatches on `func`, as
//! BILLmanager does; every failure is answered with a BILLmanager error document.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;

use crate::billmgr::{BillmgrError, Params};
use crate::bindings::{pricing::Format, types::PricingError};
use crate::service::{ExportError, Reseller, pricing_message};

/// The routes, over a shared [`Reseller`].
pub fn router(reseller: Arc<Reseller>) -> Router {
    Router::new()
        .route("/billmgr", any(billmgr))
        .route("/manager/billmgr", any(billmgr))
        .nest("/api/v1", crate::api::routes())
        .fallback(|| async { answer_error(&BillmgrError::not_found(), Format::Xml) })
        .with_state(reseller)
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
    State(reseller): State<Arc<Reseller>>,
    method: axum::http::Method,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let max = reseller.active().config().server.max_query_bytes;
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
    let format = params.format().unwrap_or(Format::Xml);
    match dispatch(reseller, &params).await {
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
