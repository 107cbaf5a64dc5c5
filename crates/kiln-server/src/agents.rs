//! The endpoint hosts' agents call: HTTP/2 over TLS whose server certificate the hosts'
//! CA signed, with JSON bodies typed by `kiln-agent-api` (both ends are this binary).
//! `GET /v1/ca` and `POST /v1/join` take no client certificate (a joining host has
//! none yet; the join token authenticates it); every other path requires a client
//! certificate the CA issued to a host that is not retired. `GET /v1/layers/FILE`
//! sends a host a layer of the store (ranges honoured, so a cut-off transfer resumes).
//! `GET /v1/network` tells a host the cloud's public address pool; `GET /v1/guests` the
//! ports (with their DHCP leases) of the guests placed on it, which its agent serves.
//! `/v1/imds/INSTANCE/…` answers the metadata requests a joined host relays from a
//! guest it runs: only for an instance placed on that host, by the same metadata
//! service the server's own guests get.

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
    let id = cloud.agent_endpoint_identity(names)?;
    mtls_acceptor(&id.ca_pem, &id.cert_pem, &id.key_pem, false)
}

/// A TLS set-up presenting `cert_pem` (with `key_pem`, and the CA after it) and
/// checking client certificates against the CA `ca_pem`: required, or optional at the
/// handshake (though one the CA did not sign still fails it). HTTP/2 first.
pub(crate) fn mtls_acceptor(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    client_required: bool,
) -> Result<TlsAcceptor, EndpointError> {
    let tls = |e: &dyn std::fmt::Display| EndpointError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| tls(&e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if client_required { verifier } else { verifier.allow_unauthenticated() };
    let verifier = verifier.build().map_err(|e| tls(&e))?;
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| tls(&e))?, ca];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The metadata service and DNS of the guests joined hosts run: their tokens and limits,
/// and each instance's metadata service (kept while the instance is asked about, for
/// its memo).
#[derive(Default)]
struct Relayed {
    tokens: Arc<crate::imds::Tokens>,
    limits: Arc<crate::limits::GuestLimits>,
    services: std::sync::Mutex<std::collections::HashMap<String, Router>>,
}

/// How many instances' metadata services are kept before the memo starts afresh.
const RELAYED_KEPT: usize = 4096;

fn router(cloud: Arc<Cloud>) -> Router {
    Router::new()
        .route("/v1/imds/{instance}", axum::routing::any(relayed_metadata))
        .route("/v1/dns/{vpc}", post(relayed_dns).layer(axum::extract::DefaultBodyLimit::max(DNS_MESSAGE_MAX)))
        .layer(Extension(Arc::new(Relayed::default())))
        .layer(Extension(Arc::new(crate::dns::Upstream::from_host())))
        .route("/v1/ca", get(ca))
        .route("/v1/join", post(join))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/renew", post(renew))
        .route("/v1/layers/{*file}", get(layer))
        .route("/v1/network", get(network))
        .route("/v1/guests", get(guest_ports))
        .with_state(cloud)
}

/// Serves the agents' endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, cloud: Arc<Cloud>) {
    let app = router(cloud);
    let with_peer =
        move |cert: Option<&CertificateDer<'_>>| app.clone().layer(Extension(Peer(cert.map(|c| cert_sha256(c)))));
    serve_tls(listener, move || acceptor.clone(), with_peer, "the agents' endpoint").await
}

/// Accepts connections on `listener` until the task is dropped, each with the TLS
/// set-up `acceptor` gives when it arrives, and serves each with the router `app`
/// makes for the client certificate it presented (if any). `what` names the endpoint
/// in logs. Shared by the agents' endpoint and the one a host serves the control
/// plane on.
pub(crate) async fn serve_tls<R>(listener: TcpListener, acceptor: impl Fn() -> TlsAcceptor, app: R, what: &'static str)
where
    R: Fn(Option<&CertificateDer<'_>>) -> Router + Send + Sync + 'static,
{
    let app = Arc::new(app);
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "{what} could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor(), Arc::clone(&app));
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%from, error = %e, "a TLS handshake with {what} failed");
                    return;
                }
                Err(_) => return,
            };
            let router = app(tls.get_ref().1.peer_certificates().and_then(|c| c.first()));
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), hyper_util::service::TowerToHyperService::new(router))
                .await;
            if let Err(e) = served {
                tracing::debug!(%from, error = %e, "a connection to {what} ended");
            }
        });
    }
}

/// An error as the agent sees it: a status and a message saying what to do.
type Refusal = (StatusCode, String);

fn refuse(e: Error) -> Refusal {
    let status = match &e {
        Error::Unauthorized(_) | Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::InvalidParameterValue(_) | Error::Crypto(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
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

/// The calling host, by the certificate it presented.
async fn calling_host(cloud: &Arc<Cloud>, peer: Peer) -> Result<kiln_store::hosts::Host, Refusal> {
    let cert = peer.0.ok_or_else(|| {
        (
            StatusCode::UNAUTHORIZED,
            "This path needs the host's client certificate; join with `kiln agent --token`".into(),
        )
    })?;
    let cloud = cloud.clone();
    blocking(move || cloud.authenticate_host(&cert)).await
}

/// What a host's VPC networking needs to know of the cloud: its public address pool.
async fn network(State(cloud): State<Arc<Cloud>>, Extension(peer): Extension<Peer>) -> Result<Response, Refusal> {
    calling_host(&cloud, peer).await?;
    Ok(Json(serde_json::json!({ "public_ip_pool": cloud.public_pool.to_string() })).into_response())
}

/// The ports of the guests placed on the calling host, with their leases.
async fn guest_ports(State(cloud): State<Arc<Cloud>>, Extension(peer): Extension<Peer>) -> Result<Response, Refusal> {
    let host = calling_host(&cloud, peer).await?;
    Ok(Json(blocking(move || cloud.host_ports(&host.host_id)).await?).into_response())
}

/// The largest DNS message (TCP's two-byte length).
const DNS_MESSAGE_MAX: usize = 65_535;

/// Headers of a relayed DNS question: the asking guest's address, and whether it came
/// over TCP (its answer may then exceed a datagram).
pub const DNS_GUEST: &str = "x-kiln-dns-guest";
pub const DNS_TCP: &str = "x-kiln-dns-tcp";

/// A DNS question a joined host relays from a guest of VPC `vpc` (the message as the
/// body): answered as this server's resolver for the VPC answers its own guests, if
/// the calling host runs an instance of that VPC. No answer (the VPC's DNS support is
/// off, or the guest asks too often) is 204.
async fn relayed_dns(
    State(cloud): State<Arc<Cloud>>,
    Extension(peer): Extension<Peer>,
    Extension(upstream): Extension<Arc<crate::dns::Upstream>>,
    Extension(relayed): Extension<Arc<Relayed>>,
    axum::extract::Path(vpc): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    let host = calling_host(&cloud, peer).await?;
    if vpc.parse::<kiln_types::VpcId>().is_err() {
        return Err((StatusCode::BAD_REQUEST, format!("'{vpc}' is not a VPC ID")));
    }
    let guest: std::net::Ipv4Addr =
        headers.get(DNS_GUEST).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| {
            (StatusCode::BAD_REQUEST, format!("the {DNS_GUEST} header must be the guest's IPv4 address"))
        })?;
    // A host asks only for its own guests of the VPC (and spends only their share of
    // the resolver's rate limit).
    match cloud.guest_view().vpcs.get(&vpc).and_then(|v| v.hosts.get(host.host_id.as_str())) {
        None => return Err((StatusCode::FORBIDDEN, format!("Host {} runs no instance of {vpc}", host.host_id))),
        Some(guests) if !guests.contains(&guest) => {
            return Err((StatusCode::FORBIDDEN, format!("{guest} is no guest of {vpc} on host {}", host.host_id)))
        }
        Some(_) => {}
    }
    let server = crate::dns::Server::new(cloud, relayed.limits.clone(), upstream, vpc);
    if !server.allowed(guest) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let tcp = headers.get(DNS_TCP).is_some_and(|v| v == "1");
    match server.answer(guest, body.to_vec(), tcp).await {
        Some(answer) => Ok(answer.into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// A layer of the store (a completed snapshot's, or a kernel) for a host that lacks
/// it, from the byte its `Range` asks for.
async fn layer(
    State(cloud): State<Arc<Cloud>>,
    Extension(peer): Extension<Peer>,
    axum::extract::Path(file): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> Result<Response, Refusal> {
    use tower::ServiceExt as _;
    let host = calling_host(&cloud, peer).await?;
    let path = blocking(move || cloud.layer_for_host(&host.host_id, &file)).await?;
    match tower_http::services::ServeFile::new(path).oneshot(request).await {
        Ok(r) => Ok(r.into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("reading the layer: {e}"))),
    }
}

/// A metadata request a joined host relays from guest `instance`, the guest's path in
/// the `RELAYED_PATH` header: answered as the server's own metadata service answers
/// its guests, if the instance is placed on the calling host and holds capacity (a
/// host asks only for the guests it runs).
async fn relayed_metadata(
    State(cloud): State<Arc<Cloud>>,
    Extension(peer): Extension<Peer>,
    Extension(relayed): Extension<Arc<Relayed>>,
    axum::extract::Path(instance): axum::extract::Path<String>,
    mut request: axum::extract::Request,
) -> Result<Response, Refusal> {
    use tower::ServiceExt as _;
    let host = calling_host(&cloud, peer).await?;
    if instance.parse::<kiln_types::InstanceId>().is_err() {
        return Err((StatusCode::BAD_REQUEST, format!("'{instance}' is not an instance ID")));
    }
    let path = request.headers().get(crate::imds::RELAYED_PATH).and_then(|v| v.to_str().ok()).unwrap_or("/");
    if !crate::imds::relayable_path(path) {
        return Err((StatusCode::BAD_REQUEST, format!("'{path}' is not a metadata path")));
    }
    let path = path.to_owned();
    let (c, id) = (cloud.clone(), instance.clone());
    blocking(move || match c.instance_for_guest(&id)? {
        Some(i) if i.host_id.as_deref() == Some(host.host_id.as_str()) && i.state.holds_capacity() => Ok(()),
        _ => Err(Error::Forbidden(format!("Host {} runs no instance {id}", host.host_id))),
    })
    .await?;
    *request.uri_mut() = path.parse().map_err(|_| (StatusCode::BAD_REQUEST, format!("'{path}' is not a path")))?;
    let service = {
        let mut services = relayed.services.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if services.len() >= RELAYED_KEPT && !services.contains_key(&instance) {
            services.clear();
        }
        services
            .entry(instance.clone())
            .or_insert_with(|| {
                crate::imds::router(cloud, relayed.tokens.clone(), relayed.limits.clone(), instance.clone())
            })
            .clone()
    };
    match service.oneshot(request).await {
        Ok(r) => Ok(r),
        Err(e) => match e {},
    }
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
