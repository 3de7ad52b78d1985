//! HTTP: the BILLmanager endpoints with their faults, the JSON control API under `/sim/`, and
//! the server loop, which hyper drives directly so that a fault can close a connection after
//! reading the request without sending anything back.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::billmgr::Params;
use crate::date::Date;
use crate::doc::{html_page, login_page};
use crate::faults::{Fault, FaultSpec};
use crate::sim::{Call, Reply, Simulator};
use crate::state::State;

/// Where a [`Fault::Redirect`] sends the client: a name that never resolves.
const REDIRECT_TO: &str = "https://example.invalid/billmgr";

/// The application: BILLmanager under both of its paths, and the control API.
pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/billmgr", get(billmgr).post(billmgr))
        .route("/manager/billmgr", get(billmgr).post(billmgr))
        .route("/sim/calls", get(calls).delete(clear_calls))
        .route("/sim/state", get(state).put(put_state))
        .route("/sim/faults", get(faults).post(arm).delete(clear_faults))
        .route("/sim/reset", post(reset))
        .route("/sim/clock", get(clock).post(move_clock))
        .with_state(sim)
}

/// Serves `router` on `listener` until `shutdown` completes, then drops open connections.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, router.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Marks a response that must not be sent: the connection is closed instead.
#[derive(Clone, Copy)]
struct CutConnection;

/// What hyper is told when a response is [`CutConnection`]: an error of the service, on which
/// it closes the connection without writing anything.
#[derive(Debug, thiserror::Error)]
#[error("connection cut on purpose by a fault")]
struct ConnectionCut;

async fn connection(stream: TcpStream, peer: SocketAddr, router: Router) {
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<CutConnection>().is_some() {
                return Err(ConnectionCut);
            }
            Ok::<_, ConnectionCut>(response)
        }
    });
    let served = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// `/billmgr`: a BILLmanager call, GET with a query or POST with a form (and maybe a query).
async fn billmgr(
    Shared(sim): Shared<Simulator>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body = (method == Method::POST).then_some(body.as_ref());
    let params = Params::parse(uri.query(), body);
    let func = params.get("func").unwrap_or_default().trim().to_owned();
    let Some(spec) = sim.take_fault(&func) else {
        return document(&sim.execute(&params, None));
    };
    if let Fault::Delay { ms } = spec.fault {
        let pause = Duration::from_millis(ms);
        return if spec.apply {
            let reply = sim.execute(&params, Some(&spec));
            tokio::time::sleep(pause).await;
            document(&reply)
        } else {
            tokio::time::sleep(pause).await;
            document(&sim.execute(&params, Some(&spec)))
        };
    }
    let reply = sim.execute(&params, Some(&spec));
    spoiled(&spec.fault, &reply)
}

/// The answer a fault gives instead of `reply`.
fn spoiled(fault: &Fault, reply: &Reply) -> Response {
    match *fault {
        Fault::Delay { .. } => document(reply),
        Fault::Status { code } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            let title = format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Server Error")
            );
            html(status, &title, "The server cannot answer now.")
        }
        Fault::Html => html(
            StatusCode::OK,
            "Service temporarily unavailable",
            "The billing system is under maintenance. Please try again later.",
        ),
        Fault::Login => match login_page() {
            Ok(page) => ([(CONTENT_TYPE, "text/html; charset=UTF-8")], page).into_response(),
            Err(e) => internal(&e),
        },
        Fault::Redirect => (StatusCode::FOUND, [(LOCATION, REDIRECT_TO)]).into_response(),
        Fault::Truncated => match reply.render() {
            Ok((content_type, mut body)) => {
                body.truncate(body.len() / 2);
                ([(CONTENT_TYPE, content_type)], body).into_response()
            }
            Err(e) => internal(&e),
        },
        Fault::Empty => ([(CONTENT_TYPE, "text/xml; charset=UTF-8")], Bytes::new()).into_response(),
        Fault::Cut => {
            let mut response = StatusCode::OK.into_response();
            response.extensions_mut().insert(CutConnection);
            response
        }
    }
}

fn document(reply: &Reply) -> Response {
    match reply.render() {
        Ok((content_type, body)) => ([(CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => internal(&e),
    }
}

fn html(status: StatusCode, title: &str, text: &str) -> Response {
    match html_page(title, text) {
        Ok(page) => (status, [(CONTENT_TYPE, "text/html; charset=UTF-8")], page).into_response(),
        Err(e) => internal(&e),
    }
}

fn internal(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "cannot render an answer");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => internal(&e),
    }
}

fn bad_request(why: &str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": why }),
    )
}

/// `GET /sim/calls`.
#[derive(Serialize)]
struct Journal {
    counts: std::collections::BTreeMap<String, usize>,
    calls: Vec<Call>,
}

async fn calls(Shared(sim): Shared<Simulator>) -> Response {
    let journal = Journal {
        counts: sim.counts(),
        calls: sim.calls(),
    };
    json(StatusCode::OK, &journal)
}

async fn clear_calls(Shared(sim): Shared<Simulator>) -> StatusCode {
    sim.clear_calls();
    StatusCode::NO_CONTENT
}

async fn state(Shared(sim): Shared<Simulator>) -> Response {
    json(StatusCode::OK, &sim.state())
}

async fn put_state(Shared(sim): Shared<Simulator>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the state is not UTF-8");
    };
    let replaced = State::from_json(text).and_then(|state| sim.set_state(state));
    match replaced {
        Ok(()) => {
            tracing::info!("state replaced through the control API");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn faults(Shared(sim): Shared<Simulator>) -> Response {
    json(StatusCode::OK, &sim.pending_faults())
}

async fn arm(Shared(sim): Shared<Simulator>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return bad_request(&format!("not a fault: {e}")),
    };
    match sim.arm(spec.clone()) {
        Ok(()) => {
            tracing::info!(?spec, "fault armed");
            json(StatusCode::CREATED, &sim.pending_faults())
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

async fn clear_faults(Shared(sim): Shared<Simulator>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

/// `POST /sim/clock`: `{"advance_days": N}` or `{"today": "YYYY-MM-DD"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockMove {
    #[serde(default)]
    advance_days: Option<u32>,
    #[serde(default)]
    today: Option<Date>,
}

async fn clock(Shared(sim): Shared<Simulator>) -> Response {
    json(StatusCode::OK, &serde_json::json!({ "today": sim.today() }))
}

async fn move_clock(Shared(sim): Shared<Simulator>, body: Bytes) -> Response {
    let moved = match serde_json::from_slice::<ClockMove>(&body) {
        Ok(ClockMove {
            advance_days: Some(days),
            today: None,
        }) => sim.advance_days(days).map_err(|e| e.to_string()),
        Ok(ClockMove {
            advance_days: None,
            today: Some(today),
        }) => Ok(sim.set_today(today)),
        Ok(_) => Err("one of `advance_days` and `today` is expected".to_owned()),
        Err(e) => Err(format!("not a clock move: {e}")),
    };
    match moved {
        Ok(report) => {
            tracing::info!(?report, "clock moved");
            json(StatusCode::OK, &report)
        }
        Err(why) => bad_request(&why),
    }
}

async fn reset(Shared(sim): Shared<Simulator>) -> StatusCode {
    sim.reset();
    tracing::info!("simulator reset");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};

    use super::*;

    async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(uri)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn the_router_answers_without_a_socket() {
        let sim = Simulator::new(State::default());
        let router = router(sim.clone());
        let (status, body) = get(
            &router,
            "/billmgr?authinfo=partner%3Asecret&func=pricelist.export&pricelist=23221",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<id>23221</id>"), "{body}");
        // Without the simulator's own server loop, a cut is only an empty answer.
        sim.arm(FaultSpec::new(Fault::Cut)).expect("armed");
        assert_eq!(
            get(&router, "/billmgr?func=pricelist.export").await,
            (StatusCode::OK, String::new())
        );
        let (status, calls) = get(&router, "/sim/calls").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            calls.contains(r#""counts":{"pricelist.export":2}"#),
            "{calls}"
        );
        assert_eq!(get(&router, "/nowhere").await.0, StatusCode::NOT_FOUND);
    }
}
