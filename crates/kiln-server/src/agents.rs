//! The endpoint hosts' agents call: HTTP/2 over TLS whose server certificate the hosts'
//! CA signed, with JSON bodies typed by `kiln-agent-api` (both ends are this binary).
//! `GET /v1/ca` and `POST /v1/join` take no client certificate (a joining host has
//! none yet; the join token authenticates it); every other path requires a client
//! certificate the CA issued to a host that is not retired.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kiln_agent_api::{HostReport, JoinRequest};
use kiln_control::hosts::cert_sha256;
use kiln_control::{Cloud, Error};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The hash of the client certificate a connection presented, if any.
#[derive(Clone)]
struct Peer(Option<String>);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("the agents' endpoint certificate: {0}")]
    Identity(#[from] Error),
    #[error("the agents' endpoint TLS set-up: {0}")]
    Tls(String),
}

/// The TLS set-up for the agents' endpoint: a certificate naming `names`, and client
/// certificates checked against the hosts' CA (optional at the handshake, required by
/// the paths that need them).
pub fn tls_acceptor(cloud: &Cloud, names: &[String]) -> Result<TlsAcceptor, EndpointError> {
    let tls = |e: &dyn std::fmt::Display| EndpointError::Tls(e.to_string());
    let id = cloud.agent_endpoint_identity(names)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(id.ca_pem.as_bytes()).map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let chain = vec![
        CertificateDer::from_pem_slice(id.cert_pem.as_bytes()).map_err(|e| tls(&e))?,
        CertificateDer::from_pem_slice(id.ca_pem.as_bytes()).map_err(|e| tls(&e))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn router(cloud: Arc<Cloud>) -> Router {
    Router::new()
        .route("/v1/ca", get(ca))
        .route("/v1/join", post(join))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/renew", post(renew))
        .with_state(cloud)
}

/// Serves the agents' endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, cloud: Arc<Cloud>) {
    let app = router(cloud);
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the agents' endpoint could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move { connection(tcp, from, acceptor, app).await });
    }
}

async fn connection(tcp: tokio::net::TcpStream, from: SocketAddr, acceptor: TlsAcceptor, app: Router) {
    let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%from, error = %e, "an agent's TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let peer = Peer(tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| cert_sha256(c)));
    let service = hyper_util::service::TowerToHyperService::new(app.layer(Extension(peer)));
    let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(%from, error = %e, "an agent's connection ended");
    }
}

/// An error as the agent sees it: a status and a message saying what to do.
type Refusal = (StatusCode, String);

fn refuse(e: Error) -> Refusal {
    let status = match &e {
        Error::Unauthorized(_) | Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::InvalidParameterValue(_) | Error::Crypto(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(refuse),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "the request's task failed".into())),
    }
}

async fn ca(State(cloud): State<Arc<Cloud>>) -> Result<String, Refusal> {
    blocking(move || cloud.host_ca_pem()).await
}

async fn join(State(cloud): State<Arc<Cloud>>, Json(req): Json<JoinRequest>) -> Result<Response, Refusal> {
    Ok(Json(blocking(move || cloud.join_host(&req)).await?).into_response())
}

/// The presented certificate's hash and the body as `T`: the certificate is checked
/// first, so a caller without one learns nothing about the body's shape.
fn presented<T: serde::de::DeserializeOwned>(peer: &Peer, body: &[u8]) -> Result<(String, T), Refusal> {
    let cert = peer.0.clone().ok_or_else(|| {
        (
            StatusCode::UNAUTHORIZED,
            "This path needs the host's client certificate; join with `kiln agent --token`".into(),
        )
    })?;
    let body = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("The request body is not what this path takes: {e}")))?;
    Ok((cert, body))
}

async fn heartbeat(
    State(cloud): State<Arc<Cloud>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let (cert, report): (String, HostReport) = presented(&peer, &body)?;
    let state = blocking(move || {
        let host = cloud.authenticate_host(&cert)?;
        cloud.host_heartbeat(&host, &report, &cert)?;
        Ok(host.state)
    })
    .await?;
    Ok(Json(serde_json::json!({ "state": state })).into_response())
}

#[derive(serde::Deserialize)]
struct RenewRequest {
    csr_pem: String,
}

async fn renew(
    State(cloud): State<Arc<Cloud>>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let (cert, r): (String, RenewRequest) = presented(&peer, &body)?;
    let enrolled = blocking(move || {
        let host = cloud.authenticate_host(&cert)?;
        cloud.renew_host_cert(&host, &cert, &r.csr_pem)
    })
    .await?;
    Ok(Json(enrolled).into_response())
}
