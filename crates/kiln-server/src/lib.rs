//! Kiln's HTTP edge: reads a request off the socket, authenticates it with SigV4,
//! decodes it into a typed EC2 request, runs it against the control plane and writes
//! EC2's XML back. The one mapping from control-plane errors to EC2 errors lives here
//! (`errors.rs`).

mod actions;
pub mod agents;
mod auth;
mod console;
pub mod dhcp;
pub mod dns;
mod errors;
pub mod guests;
mod health;
pub mod host_endpoint;
pub mod imds;
pub mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use kiln_control::{Cloud, Scope};
use kiln_ec2::requests::Request;
use kiln_ec2::{Ec2Error, Params};

pub use actions::ACTIONS;

/// Settings of the API edge.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// How far a signed request's clock may be from the server's.
    pub max_skew: chrono::TimeDelta,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { max_body: 1024 * 1024, max_skew: kiln_ec2::sigv4::DEFAULT_MAX_SKEW }
    }
}

struct AppState {
    cloud: Arc<Cloud>,
    config: ApiConfig,
    sign_ins: console::SignInGuard,
}

/// The API's routes: EC2's Query protocol at `/`, the console at `/console/`.
pub fn router(cloud: Arc<Cloud>, config: ApiConfig) -> Router {
    use axum::routing::{get, post};
    let state = Arc::new(AppState { cloud, config, sign_ins: Default::default() });
    Router::new()
        .route("/console/api/signin", post(console::sign_in))
        .route("/console/api/signout", post(console::sign_out))
        .route("/console", get(console::to_console))
        .route("/console/", get(console::index))
        .route("/console/{*path}", get(console::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(handle)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cloud: Arc<Cloud>,
    config: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(cloud, config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A browser opening the endpoint: the console. API calls carry a query or a body.
    if method == Method::GET && uri.path() == "/" && uri.query().is_none_or(str::is_empty) {
        return axum::response::Redirect::to("/console/").into_response();
    }
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = handle_inner(state, method, uri, headers, body, &request_id).await;
    let (status, xml, action) = match result {
        Ok((action, xml)) => (StatusCode::OK, xml, action),
        Err(Failure { action, error: e, sts }) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::info!(action, code = %e.code, "request refused");
            let xml = if sts {
                kiln_ec2::sts::error_document(&e.code, &e.message, &request_id, status.is_client_error())
            } else {
                kiln_ec2::xml::error_document(&e.code, &e.message, &request_id)
            };
            (status, xml, action)
        }
    };
    let took = started.elapsed();
    tracing::debug!(action, status = status.as_u16(), micros = took.as_micros() as u64, "request");
    let known = if ACTIONS.contains(&action.as_str()) { action.as_str() } else { "other" };
    kiln_control::metrics::request(known, status.as_u16(), took);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml;charset=UTF-8"),
            (header::HeaderName::from_static("x-amzn-requestid"), request_id.as_str()),
        ],
        xml,
    )
        .into_response()
}

/// A refused request: its action, why, and whether to answer in STS's envelope.
struct Failure {
    action: String,
    error: Ec2Error,
    sts: bool,
}

async fn handle_inner(
    state: Arc<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    request_id: &str,
) -> Result<(String, String), Failure> {
    let fail = |e: Ec2Error| Failure { action: String::from("-"), error: e, sts: false };
    if method != Method::POST && method != Method::GET {
        return Err(fail(Ec2Error::new(
            "InvalidAction",
            format!("The HTTP method {method} is not supported; use POST or GET"),
        )));
    }
    let body = axum::body::to_bytes(body, state.config.max_body).await.map_err(|_| {
        fail(Ec2Error::new(
            "RequestEntityTooLarge",
            format!("The request body exceeds the maximum of {} bytes", state.config.max_body),
        ))
    })?;
    let request_id = request_id.to_owned();
    // Everything past the socket (parsing, the signature and its key lookup in the
    // store, decoding, the action) runs on a blocking thread, never on an async worker.
    tokio::task::spawn_blocking(move || run_blocking(&state, &method, &uri, &headers, &body, &request_id))
        .await
        .map_err(|_| fail(Ec2Error::internal()))?
}

fn run_blocking(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    request_id: &str,
) -> Result<(String, String), Failure> {
    let query = uri.query().unwrap_or_default();
    let params = Params::parse(query, body);
    let action = params.get("Action").unwrap_or("-").to_owned();
    // STS's requests all name its API version; their errors take its envelope.
    let sts = params.get("Version") == Some(kiln_ec2::sts::VERSION);
    let fail = |e: Ec2Error| {
        // STS names an unknown key its own way.
        let error = if sts && e.code == "AuthFailure" {
            Ec2Error::new("InvalidClientTokenId", "The security token included in the request is invalid.")
        } else {
            e
        };
        Failure { action: action.clone(), error, sts }
    };

    let (caller, service) = auth::authenticate(state, method, uri, headers, body).map_err(fail)?;
    let Some(action_name) = params.get("Action").filter(|a| !a.is_empty()) else {
        return Err(fail(Ec2Error::new("MissingAction", "The request must contain the parameter Action")));
    };
    if service == auth::Service::Sts {
        return match action_name {
            "GetCallerIdentity" => Ok((action, kiln_ec2::sts::caller_identity_document(&caller.account, request_id))),
            other => Err(fail(Ec2Error::new(
                "InvalidAction",
                format!(
                    "Could not find operation {other} for version {}: Kiln's STS answers GetCallerIdentity only",
                    kiln_ec2::sts::VERSION
                ),
            ))),
        };
    }
    let request = Request::decode(action_name, &params).map_err(fail)?;
    let dry_run = params.flag("DryRun").map_err(fail)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let ctx = actions::Ctx { cloud: &state.cloud, scope: caller, request_id, params: &params, host };
    let xml = if dry_run {
        // Every check runs, in transactions that are rolled back.
        kiln_store::dry_run(|| actions::dispatch(&ctx, request)).and_then(|_| Err(Ec2Error::dry_run_ok()))
    } else {
        let xml = actions::dispatch(&ctx, request);
        // A change may have work for the reconciler (a VM to start, a disk to plug):
        // it starts its pass now rather than at its next tick.
        if xml.is_ok() && !action_name.starts_with("Describe") && !action_name.starts_with("Get") {
            state.cloud.nudge.nudge();
        }
        xml
    }
    .map_err(fail)?;
    Ok((action, xml))
}

/// The caller of a request: their account and the region of their credential scope.
pub type Caller = Scope;
