//! `/api/v1/plugin/shadow…`: the candidate policy's shadow runs ([`crate::shadow`]), their
//! report, and the promotion of the candidate to the live policy.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, Authorized, blocking, describe};
use crate::reseller::PromoteError;
use crate::reseller::Reseller;

pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
{
    Router::new()
        .route("/plugin/shadow", get(report))
        .route("/plugin/shadow/promote", post(promote))
}

fn no_candidate() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_candidate",
        "no candidate policy is configured ([plugin.candidate])",
    )
}

impl From<PromoteError> for ApiError {
    fn from(e: PromoteError) -> Self {
        match e {
            PromoteError::NoCandidate => no_candidate(),
            PromoteError::Unfit(_) => {
                ApiError::new(StatusCode::CONFLICT, "candidate_unfit", e.to_string())
            }
            PromoteError::Refused(e) => {
                tracing::warn!("promotion refused: {e}");
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "promote_failed",
                    format!(
                        "the previous configuration keeps serving: {}: {}",
                        e.key, e.message
                    ),
                )
            }
        }
    }
}

async fn report(
    _: Authorized,
    State(reseller): State<Arc<Reseller>>,
) -> Result<Json<Value>, ApiError> {
    let active = reseller.active();
    let shadow = active.shadow().ok_or_else(no_candidate)?;
    Ok(Json(shadow.report()))
}

/// `POST /plugin/shadow/promote`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    /// Promote even a candidate that faulted, refused, or has not priced yet.
    #[serde(default)]
    force: bool,
}

async fn promote(
    _: Authorized,
    State(reseller): State<Arc<Reseller>>,
    ApiJson(body): ApiJson<Promote>,
) -> Result<Json<Value>, ApiError> {
    let serving = reseller.clone();
    let config = blocking(move || serving.promote_candidate(body.force)).await?;
    let policy = &config.plugin.policy;
    let pin = policy
        .sha256
        .as_deref()
        .map(|p| format!(", sha256 = \"{p}\""))
        .unwrap_or_default();
    let path = policy
        .path
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    tracing::warn!(
        "the candidate {path} is now the live policy; the configuration file is unchanged: \
         a reload or a restart brings the previous policy back until the file says so"
    );
    Ok(Json(json!({
        "promoted": describe(&reseller.active()),
        "configuration_file": format!(
            "unchanged: to keep this policy after a reload or a restart, move [plugin.candidate] \
             to [plugin.policy] (path = \"{path}\"{pin}) and its pricing settings, if it has its \
             own, to [pricing]"
        ),
    })))
}
