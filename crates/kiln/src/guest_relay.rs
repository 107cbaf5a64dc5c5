//! On a joined host: the metadata service of the guests it runs, relayed. Each VM's
//! metadata socket (where QEMU's user-mode network sends 169.254.169.254:80) is served
//! here, and every request on it goes to the control plane's metadata service for that
//! instance over the host's mutual-TLS channel (`/v1/imds/INSTANCE/…`). The socket is
//! the guest's identity, as on the server's own host; the control plane answers a host
//! only for the instances placed on it. The answers are built where the state is, so a
//! guest sees exactly what it would see on the server's own host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kiln_agent_api::{GuestPorts, HostAgent};
use tokio::task::JoinHandle;

/// Makes a client of the control plane with the host's current certificate.
pub(crate) type ClientMaker = Arc<dyn Fn() -> anyhow::Result<reqwest::Client> + Send + Sync>;

/// One guest's relay.
struct Relay {
    control: String,
    instance_id: String,
    client: ClientMaker,
}

/// Keeps a relay on the metadata socket of every VM `host` runs, until the process
/// ends. Guests on VPC networks are not relayed yet (their services need the tap).
pub(crate) async fn run(host: Arc<kiln_agent::LocalAgent>, control: String, client: ClientMaker) {
    if host.has_vpc_networking() {
        tracing::warn!("guests on this host's VPC networks get no metadata service yet");
        return;
    }
    let mut serving: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let h = host.clone();
        let running = match tokio::task::spawn_blocking(move || h.running()).await {
            Ok(Ok(running)) => running,
            _ => Vec::new(),
        };
        serving.retain(|id, task| {
            let keep = running.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for id in running {
            if serving.contains_key(&id) {
                continue;
            }
            let path = host.imds_socket(&id);
            let _ = std::fs::remove_file(&path);
            match tokio::net::UnixListener::bind(&path) {
                Ok(listener) => {
                    let relay =
                        Arc::new(Relay { control: control.clone(), instance_id: id.clone(), client: client.clone() });
                    let app = axum::Router::new().fallback(forward).with_state(relay);
                    serving.insert(
                        id,
                        tokio::spawn(async move {
                            let _ = axum::serve(listener, app).await;
                        }),
                    );
                }
                Err(e) => tracing::debug!(instance = %id, error = %e, "cannot serve the guest's metadata yet"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Headers that belong to one hop, not to the request relayed.
const HOP_BY_HOP: [&str; 5] = ["host", "connection", "content-length", "transfer-encoding", "keep-alive"];

/// Sends one guest request to the control plane and its answer back.
async fn forward(State(r): State<Arc<Relay>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(instance = %r.instance_id, error = %e, "relaying a metadata request failed");
        (StatusCode::BAD_GATEWAY, "The metadata service cannot be reached from this host now; try again")
            .into_response()
    };
    let client = match (r.client)() {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    let url = format!("{}/v1/imds/{}{}", r.control, r.instance_id, uri.path());
    let mut req = client.request(method, url).body(body);
    for (name, value) in headers.iter().filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str())) {
        req = req.header(name, value);
    }
    let answer = match req.send().await {
        Ok(a) => a,
        Err(e) => return unavailable(&e),
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers().iter().filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str())) {
        out.insert(name.clone(), value.clone());
    }
    match answer.bytes().await {
        Ok(body) => (status, out, body).into_response(),
        Err(e) => unavailable(&e),
    }
}
