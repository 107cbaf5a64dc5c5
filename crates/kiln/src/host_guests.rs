//! On a joined host: the services of the guests it runs, beside its agent. On VPC
//! networks each port (as the control plane lists them for this host, `GET
//! /v1/guests`, with their DHCP leases) gets a DHCP server and a metadata service
//! bound to its tap, so the tap a packet arrives on is the guest's identity; on QEMU's
//! user-mode network each VM's metadata socket is served. Metadata requests are relayed
//! to the control plane's metadata service for that instance over the host's
//! mutual-TLS channel (`/v1/imds/INSTANCE/…`), which answers a host only for the
//! instances placed on it, so a guest sees exactly what it would on the server's own
//! host. Each VPC with guests here and DNS support gets its resolver (the VPC's base +
//! 2, in the VPC's namespace), whose questions are relayed to the control plane's
//! resolver for that VPC (`/v1/dns/VPC`), so a guest gets the answers it would get on
//! the server's own host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kiln_agent_api::{GuestPorts, HostAgent, TapId};
use kiln_control::guest_view::PortView;
use kiln_server::limits::{GuestLimits, Service};
use tokio::task::JoinHandle;

/// Makes a client of the control plane with the host's current certificate.
pub(crate) type ClientMaker = Arc<dyn Fn() -> anyhow::Result<reqwest::Client> + Send + Sync>;

/// Where one guest's services are bound; a change makes them again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// The VM's metadata socket (user-mode network).
    Unix,
    /// Sockets on this tap, answering with this hop limit.
    Tap { tap: TapId, hop_limit: u32 },
    /// A VPC's resolver at this address, in this namespace (`HostAgent::network_id`).
    Dns { network: u64, addr: std::net::Ipv4Addr },
}

/// Tasks that end when dropped.
struct Serving {
    binding: Binding,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One guest's metadata relay.
struct Relay {
    control: String,
    instance_id: String,
    client: ClientMaker,
    limits: Arc<GuestLimits>,
}

/// Keeps every guest's services on `host` bound until the process ends.
pub(crate) async fn run(host: Arc<kiln_agent::LocalAgent>, control: String, client: ClientMaker) {
    let limits = Arc::new(GuestLimits::default());
    // By interface (VPC) or instance (user-mode network).
    let mut serving: HashMap<String, Serving> = HashMap::new();
    loop {
        if let Some(wanted) = wanted(&host, &control, &client).await {
            serving.retain(|key, s| {
                wanted.iter().any(|(k, _, b)| k == key && *b == s.binding) && s.tasks.iter().all(|t| !t.is_finished())
            });
            for (key, port, binding) in wanted {
                if serving.contains_key(&key) {
                    continue;
                }
                match start(&host, &control, &client, &limits, &port, &binding).await {
                    Ok(tasks) => {
                        serving.insert(key, Serving { binding, tasks });
                    }
                    Err(e) => tracing::debug!(%key, error = %e, "cannot serve the guest yet; retrying"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The guests to serve now, each with its key and binding; None when that cannot be
/// known (the control plane did not answer: what runs keeps being served).
async fn wanted(
    host: &Arc<kiln_agent::LocalAgent>,
    control: &str,
    client: &ClientMaker,
) -> Option<Vec<(String, PortView, Binding)>> {
    if !host.has_vpc_networking() {
        let h = host.clone();
        let running = tokio::task::spawn_blocking(move || h.running()).await.ok()?.ok()?;
        let port = |id: String| PortView {
            interface_id: id.clone(),
            instance_id: id.clone(),
            vpc_id: String::new(),
            hop_limit: 1,
            lease: None,
            dns: None,
        };
        return Some(running.into_iter().map(|id| (id.clone(), port(id), Binding::Unix)).collect());
    }
    let ports: Vec<PortView> = match fetch_ports(control, client).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list this host's guests; keeping what runs");
            return None;
        }
    };
    let h = host.clone();
    tokio::task::spawn_blocking(move || {
        let mut wanted: Vec<(String, PortView, Binding)> = Vec::new();
        for p in ports {
            // Each VPC's resolver once, in its namespace (made with its first port).
            if let (Some(addr), Some(network)) = (p.dns, h.network_id(&p.vpc_id)) {
                let key = format!("dns {}", p.vpc_id);
                if !wanted.iter().any(|(k, _, _)| *k == key) {
                    wanted.push((key, p.clone(), Binding::Dns { network, addr }));
                }
            }
            // No tap yet: the reconciler is still making the port.
            if let Some(tap) = h.tap_id(&p.vpc_id, &p.interface_id) {
                let binding = Binding::Tap { tap, hop_limit: p.hop_limit };
                wanted.push((p.interface_id.clone(), p, binding));
            }
        }
        wanted
    })
    .await
    .ok()
}

async fn fetch_ports(control: &str, client: &ClientMaker) -> anyhow::Result<Vec<PortView>> {
    let r = client()?.get(format!("{control}/v1/guests")).send().await?;
    if !r.status().is_success() {
        anyhow::bail!("{}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(r.json().await?)
}

/// Binds one guest's services and starts them.
async fn start(
    host: &Arc<kiln_agent::LocalAgent>,
    control: &str,
    client: &ClientMaker,
    limits: &Arc<GuestLimits>,
    port: &PortView,
    binding: &Binding,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if let Binding::Dns { addr, .. } = binding {
        return serve_dns(host, control, client, limits, &port.vpc_id, *addr).await;
    }
    let relay = Arc::new(Relay {
        control: control.to_owned(),
        instance_id: port.instance_id.clone(),
        client: client.clone(),
        limits: limits.clone(),
    });
    let app = axum::Router::new().fallback(forward).with_state(relay);
    match binding {
        Binding::Unix => {
            let path = host.imds_socket(&port.instance_id);
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)?;
            Ok(vec![tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            })])
        }
        Binding::Tap { hop_limit, .. } => {
            let (h, vpc, id, hop) = (host.clone(), port.vpc_id.clone(), port.interface_id.clone(), *hop_limit);
            let sockets = tokio::task::spawn_blocking(move || h.port_sockets(&vpc, &id, hop)).await??;
            let listener = tokio::net::TcpListener::from_std(sockets.imds)?;
            let udp = tokio::net::UdpSocket::from_std(sockets.dhcp)?;
            let lease = port.lease.clone().ok_or_else(|| anyhow::anyhow!("the port has no lease"))?;
            Ok(vec![
                tokio::spawn(kiln_server::guests::serve_tcp(listener, app)),
                // A lease never changes while the instance lives.
                tokio::spawn(kiln_server::guests::serve_dhcp(
                    limits.clone(),
                    port.interface_id.clone(),
                    udp,
                    move || Some(lease.clone()),
                )),
            ])
        }
        Binding::Dns { .. } => unreachable!("served by serve_dns"),
    }
}

/// Serves VPC `vpc_id`'s resolver at `addr` in its namespace, each question relayed to
/// the control plane's resolver for the VPC with the asking guest's address.
async fn serve_dns(
    host: &Arc<kiln_agent::LocalAgent>,
    control: &str,
    client: &ClientMaker,
    limits: &Arc<GuestLimits>,
    vpc_id: &str,
    addr: std::net::Ipv4Addr,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let (h, vpc) = (host.clone(), vpc_id.to_owned());
    let sockets =
        tokio::task::spawn_blocking(move || h.vpc_dns_sockets(&vpc, std::net::SocketAddrV4::new(addr, 53))).await??;
    let (control, client, vpc) = (control.to_owned(), client.clone(), vpc_id.to_owned());
    let url = format!("{control}/v1/dns/{vpc}");
    let answer: kiln_server::dns::Answer = Arc::new(move |guest, packet, tcp| {
        let (client, url, vpc) = (client.clone(), url.clone(), vpc.clone());
        Box::pin(async move {
            let relayed = async {
                let r = client()?
                    .post(&url)
                    .header(kiln_server::agents::DNS_GUEST, guest.to_string())
                    .header(kiln_server::agents::DNS_TCP, if tcp { "1" } else { "0" })
                    .body(packet)
                    .send()
                    .await?;
                match r.status() {
                    reqwest::StatusCode::OK => Ok::<_, anyhow::Error>(Some(r.bytes().await?.to_vec())),
                    reqwest::StatusCode::NO_CONTENT => Ok(None),
                    other => anyhow::bail!("{other}: {}", r.text().await.unwrap_or_default()),
                }
            };
            relayed.await.unwrap_or_else(|e| {
                tracing::warn!(vpc = %vpc, error = %e, "relaying a DNS question failed; the guest will ask again");
                None
            })
        })
    });
    let server = kiln_server::dns::Server::answered_by(answer, limits.clone(), vpc_id.to_owned());
    let udp = tokio::net::UdpSocket::from_std(sockets.udp)?;
    let tcp = tokio::net::TcpListener::from_std(sockets.tcp)?;
    Ok(vec![tokio::spawn(server.clone().udp(udp)), tokio::spawn(server.tcp(tcp))])
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
    if !r.limits.allow(Service::Metadata, &r.instance_id) {
        // As EC2 answers a throttled metadata request; the control plane is not asked.
        return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    }
    // The guest's path goes in a header to one fixed URL, never into the URL itself.
    let path = uri.path();
    if !kiln_server::imds::relayable_path(path) {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    }
    let client = match (r.client)() {
        Ok(c) => c,
        Err(e) => return unavailable(&e),
    };
    let url = format!("{}/v1/imds/{}", r.control, r.instance_id);
    let mut req = client.request(method, url).header(kiln_server::imds::RELAYED_PATH, path).body(body);
    let relayed = |n: &str| !HOP_BY_HOP.contains(&n) && !n.starts_with("x-kiln-");
    for (name, value) in headers.iter().filter(|(n, _)| relayed(n.as_str())) {
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
