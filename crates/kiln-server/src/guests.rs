//! The services each live instance's guest talks to, kept in step every half second
//! with the reconciler's published view of live ports (never the store): its metadata service and, on VPC networks, its DHCP server. On a VPC
//! both are sockets bound to the instance's tap inside the VPC's namespace, so the port
//! a packet arrives on is the caller's identity; on QEMU's user-mode network the
//! metadata service is a Unix socket in the instance's directory that QEMU forwards to.
//! Each VPC with a namespace also gets its DNS (see `dns.rs`).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use kiln_control::guest_view::PortView;
use kiln_control::Cloud;
use tokio::task::JoinHandle;

use crate::dhcp;
use crate::imds::{self, Tokens};
use crate::limits::{GuestLimits, Service};

/// What a running set of services was made for; a change makes them again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Binding {
    /// A Unix socket in the instance's directory (user-mode network).
    Unix,
    /// Sockets on this tap, answering with this hop limit.
    Tap { tap: kiln_agent_api::TapId, hop_limit: u32 },
}

/// Tasks that end when dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn alive(&self) -> bool {
        self.0.iter().all(|t| !t.is_finished())
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Serving {
    binding: Binding,
    tasks: Tasks,
}

/// Live ports and how their services should be bound now (None: not yet possible,
/// e.g. the tap is still being made).
fn wanted(cloud: &Cloud) -> Vec<(PortView, Option<Binding>)> {
    let Ok(agent) = cloud.agent() else { return Vec::new() };
    // The agent beside these services answers at once; not knowing is "not yet".
    let Ok(vpc_networking) = agent.vpc_networking() else { return Vec::new() };
    cloud
        .guest_view()
        .ports
        .values()
        .map(|p| {
            let b = if vpc_networking {
                agent.tap_id(&p.vpc_id, &p.interface_id).map(|tap| Binding::Tap { tap, hop_limit: p.hop_limit })
            } else {
                Some(Binding::Unix)
            };
            (p.clone(), b)
        })
        .collect()
}

/// VPCs with a namespace on this host, with which namespace that is and their DNS
/// addresses.
fn vpc_dns(cloud: &Cloud) -> Vec<(String, u64, Ipv4Addr)> {
    let Ok(agent) = cloud.agent() else { return Vec::new() };
    cloud.guest_view().vpcs.iter().filter_map(|(id, v)| Some((id.clone(), agent.network_id(id)?, v.dns?))).collect()
}

/// Keeps every live instance's services running, until `shutdown`.
pub async fn run(cloud: Arc<Cloud>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let tokens = Arc::new(Tokens::default());
    let limits = Arc::new(GuestLimits::default());
    // One resolver (and cache) for every VPC's forwarded questions.
    let upstream = Arc::new(crate::dns::Upstream::from_host());
    let mut serving: HashMap<String, Serving> = HashMap::new();
    // By VPC: the namespace the DNS sockets were made in, and their tasks.
    let mut dns: HashMap<String, (u64, Tasks)> = HashMap::new();
    // Binding fails for a moment while a namespace or tap is being made; only a failure
    // that lasts is worth a warning.
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut failed = |key: &str, what: &str, e: &str| {
        let n = failures.entry(key.to_owned()).or_default();
        *n += 1;
        if *n == 20 {
            tracing::warn!(%key, error = %e, "cannot serve {what} for 10 s; still retrying");
        } else {
            tracing::debug!(%key, error = %e, "cannot serve {what} yet; retrying");
        }
    };
    loop {
        let c = cloud.clone();
        let (now, vpcs) = tokio::task::spawn_blocking(move || (wanted(&c), vpc_dns(&c))).await.unwrap_or_default();
        dns.retain(|vpc, (netns, t)| vpcs.iter().any(|(v, n, _)| v == vpc && n == netns) && t.alive());
        for (vpc, netns, addr) in vpcs {
            if dns.contains_key(&vpc) {
                continue;
            }
            let (c, v) = (cloud.clone(), vpc.clone());
            let made = tokio::task::spawn_blocking(move || {
                c.guest_ports()
                    .map_err(|e| e.to_string())?
                    .vpc_dns_sockets(&v, std::net::SocketAddrV4::new(addr, 53))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .and_then(|s| {
                let udp = tokio::net::UdpSocket::from_std(s.udp).map_err(|e| e.to_string())?;
                let tcp = tokio::net::TcpListener::from_std(s.tcp).map_err(|e| e.to_string())?;
                Ok((udp, tcp))
            });
            match made {
                Ok((udp, tcp)) => {
                    let server = crate::dns::Server::new(cloud.clone(), limits.clone(), upstream.clone(), vpc.clone());
                    let tasks = vec![tokio::spawn(server.clone().udp(udp)), tokio::spawn(server.tcp(tcp))];
                    dns.insert(vpc, (netns, Tasks(tasks)));
                }
                Err(e) => failed(&vpc, "the VPC's DNS", &e),
            }
        }
        serving.retain(|id, s| {
            now.iter().any(|(p, b)| &p.interface_id == id && b.as_ref() == Some(&s.binding)) && s.tasks.alive()
        });
        for (p, binding) in now {
            let Some(binding) = binding else { continue };
            if serving.contains_key(&p.interface_id) {
                continue;
            }
            match start(&cloud, &tokens, &limits, &p, &binding).await {
                Ok(tasks) => {
                    serving.insert(p.interface_id.clone(), Serving { binding, tasks: Tasks(tasks) });
                }
                Err(e) => failed(&p.interface_id, "the guest's DHCP and metadata", &e),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => break,
        }
    }
}

async fn start(
    cloud: &Arc<Cloud>,
    tokens: &Arc<Tokens>,
    limits: &Arc<GuestLimits>,
    p: &PortView,
    binding: &Binding,
) -> Result<Vec<JoinHandle<()>>, String> {
    let app = imds::router(cloud.clone(), tokens.clone(), limits.clone(), p.instance_id.clone());
    match binding {
        Binding::Unix => {
            let path = cloud.guest_ports().map_err(|e| e.to_string())?.imds_socket(&p.instance_id);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path).map_err(|e| e.to_string())?;
            Ok(vec![tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            })])
        }
        Binding::Tap { hop_limit, .. } => {
            let (c, vpc, id, hop) = (cloud.clone(), p.vpc_id.clone(), p.interface_id.clone(), *hop_limit);
            let sockets = tokio::task::spawn_blocking(move || {
                c.guest_ports().map_err(|e| e.to_string())?.port_sockets(&vpc, &id, hop).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            let listener = tokio::net::TcpListener::from_std(sockets.imds).map_err(|e| e.to_string())?;
            let udp = tokio::net::UdpSocket::from_std(sockets.dhcp).map_err(|e| e.to_string())?;
            let imds_task = tokio::spawn(serve_tcp(listener, app));
            let (c, id) = (cloud.clone(), p.interface_id.clone());
            let lease = move || c.guest_view().ports.get(&id).and_then(|p| p.lease.clone());
            let dhcp_task = tokio::spawn(serve_dhcp(limits.clone(), p.interface_id.clone(), udp, lease));
            Ok(vec![imds_task, dhcp_task])
        }
    }
}

/// Serves HTTP/1 on a port's metadata socket. Written out rather than `axum::serve`
/// because guests' clients (busybox `nc`, curl with `--http1.0`) close their sending
/// side before the answer comes, and only hyper's half-close setting answers them.
pub async fn serve_tcp(listener: tokio::net::TcpListener, app: axum::Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers the DHCP packets of port `id` on `socket` until the task ends, with the
/// lease `lease` gives at each packet (none: no answer), within the port's DHCP limit.
/// Answers are broadcast on the tap: the guest has no address yet, and only it is there.
pub async fn serve_dhcp(
    limits: Arc<GuestLimits>,
    id: String,
    socket: tokio::net::UdpSocket,
    lease: impl Fn() -> Option<kiln_control::guest_view::Lease>,
) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, _)) = socket.recv_from(&mut buf).await else { return };
        if !limits.allow(Service::Dhcp, &id) {
            continue;
        }
        let Some(answer) = lease().and_then(|l| dhcp::reply(&buf[..n], &l)) else { continue };
        if let Err(e) = socket.send_to(&answer, (Ipv4Addr::BROADCAST, 68)).await {
            tracing::warn!(interface = %id, error = %e, "cannot answer DHCP");
        }
    }
}
