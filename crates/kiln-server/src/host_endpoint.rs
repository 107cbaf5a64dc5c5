//! The endpoint a joined host's agent serves (`kiln agent --listen`): the control
//! plane's calls of `HostAgent`, one `HostCall` per `POST /v1/call`, over HTTP/2 and
//! mutual TLS. The agent presents its host certificate, which names it
//! `host_server_name(host)`; a caller must present a certificate of the hosts' CA whose
//! subject is `CONTROL_SUBJECT`. The CA gives every host certificate the host's own ID
//! as its subject, so no host can drive another host's agent.

use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use kiln_agent_api::{HostAgent, HostCall};
use kiln_control::hosts::CONTROL_SUBJECT;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::agents::EndpointError;

/// The largest call body taken (a VPC's network with many ports and rules).
const MAX_CALL: usize = 16 << 20;

/// The TLS set-up, replaced when the agent renews its certificate; each connection
/// takes the one current when it arrives.
pub type Acceptor = Arc<RwLock<TlsAcceptor>>;

/// Whether the connection's client presented the control plane's certificate.
#[derive(Clone, Copy)]
struct FromControl(bool);

/// The TLS set-up for the host's endpoint: its certificate and key (PEM), and client
/// certificates required and checked against the hosts' CA (`ca_pem`).
pub fn tls_acceptor(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<TlsAcceptor, EndpointError> {
    crate::agents::mtls_acceptor(ca_pem, cert_pem, key_pem, true)
}

/// Whether `der` (a certificate the CA signed: the handshake checked that) has the
/// control plane's subject.
fn is_control(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, cert)| {
        let mut names = cert.subject().iter_common_name();
        let first = names.next().and_then(|cn| cn.as_str().ok());
        first == Some(CONTROL_SUBJECT) && names.next().is_none()
    })
}

/// Serves `host` to the control plane on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, acceptor: Acceptor, host: Arc<dyn HostAgent>) {
    let app = Router::new().route("/v1/call", post(call)).layer(DefaultBodyLimit::max(MAX_CALL)).with_state(host);
    let current = move || acceptor.read().unwrap_or_else(PoisonError::into_inner).clone();
    let with_caller = move |cert: Option<&CertificateDer<'_>>| {
        app.clone().layer(Extension(FromControl(cert.is_some_and(|c| is_control(c)))))
    };
    crate::agents::serve_tls(listener, current, with_caller, "the host's endpoint").await
}

async fn call(
    State(host): State<Arc<dyn HostAgent>>,
    Extension(FromControl(control)): Extension<FromControl>,
    body: Bytes,
) -> Result<Response, (StatusCode, String)> {
    if !control {
        return Err((
            StatusCode::FORBIDDEN,
            format!("Only the control plane (a certificate whose subject is '{CONTROL_SUBJECT}') calls a host"),
        ));
    }
    let call: HostCall = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("The body is not a host call this agent knows: {e}")))?;
    tracing::debug!(?call, "the control plane called");
    match tokio::task::spawn_blocking(move || call.run(host.as_ref())).await {
        Ok(Ok(answer)) => Ok(Json(answer).into_response()),
        Ok(Err(refused)) => Err((StatusCode::BAD_REQUEST, refused.to_string())),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "the host's call failed on the host".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, subject);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn only_the_control_planes_subject_is_the_control_plane() {
        assert!(is_control(&cert(CONTROL_SUBJECT)));
        assert!(!is_control(&cert("h-0123456789abcdef0")));
        assert!(!is_control(&cert("Kiln control plane2")));
        assert!(!is_control(b"not a certificate"));
    }
}
