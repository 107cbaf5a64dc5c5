//! Probes for whoever runs the server: `/healthz` (the process answers), `/readyz`
//! (it can serve: its database answers) and `/metrics` (Prometheus's text format).
//! None needs a signature: they say nothing about any account.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub(crate) async fn healthz() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let cloud = state.cloud.clone();
    let ping = tokio::task::spawn_blocking(move || cloud.store.ping()).await;
    match ping {
        Ok(Ok(())) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "ready\n".to_owned()).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain")],
                format!("not ready: the database does not answer: {e}\n"),
            )
                .into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/plain")], "not ready\n".to_owned())
            .into_response(),
    }
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let cloud = state.cloud.clone();
    let text = tokio::task::spawn_blocking(move || kiln_control::metrics::render(&cloud)).await.unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
