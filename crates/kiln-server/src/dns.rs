//! The Amazon-provided DNS of a VPC (its base address + 2): EC2's private host names
//! (`ip-10-0-0-5.ec2.internal`) and, inside the VPC, public names of its instances
//! (`ec2-100-64-0-1.compute-1.amazonaws.com`, answered with the private address as
//! EC2 does) are answered here; every other question goes to the host's resolvers
//! through hickory's caching stub resolver (`Upstream`).

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::{ResolverBuilder, TokioResolver};
use kiln_control::Cloud;

use crate::limits::{GuestLimits, Service};

/// Questions of one VPC being answered at once; more are dropped (the guest retries).
const IN_FLIGHT: usize = 64;

/// What a name means inside a VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// One of EC2's names, with this address.
    Address(Ipv4Addr),
    /// One of EC2's names that names nothing.
    NoSuchName,
}

/// The address in an `ip-a-b-c-d` or `ec2-a-b-c-d` label.
fn dashed(label: &str, prefix: &str) -> Option<Ipv4Addr> {
    label.strip_prefix(prefix)?.replace('-', ".").parse().ok()
}

/// Answers a question from EC2's own names, or None when it is someone else's name.
/// `publics` maps the VPC's instances' public addresses to their private ones.
pub fn local(name: &str, region: &str, publics: &[(Ipv4Addr, Ipv4Addr)]) -> Option<Local> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let internal = kiln_types::region::internal_domain(region);
    if let Some(host) = name.strip_suffix(&format!(".{internal}")) {
        return Some(match dashed(host, "ip-") {
            Some(a) => Local::Address(a),
            None => Local::NoSuchName,
        });
    }
    let public = kiln_types::region::public_domain(region);
    if let Some(host) = name.strip_suffix(&format!(".{public}")) {
        let a = dashed(host, "ec2-")?;
        let private = publics.iter().find(|(p, _)| *p == a).map(|(_, i)| *i);
        return Some(Local::Address(private.unwrap_or(a)));
    }
    None
}

/// The answer to a query from EC2's names, or None to forward it.
pub fn answer(packet: &[u8], region: &str, publics: &[(Ipv4Addr, Ipv4Addr)]) -> Option<Vec<u8>> {
    let q = Message::from_vec(packet).ok()?;
    if q.metadata.message_type != MessageType::Query {
        return None;
    }
    let query = q.queries.first()?.clone();
    let found = local(&query.name().to_ascii(), region, publics)?;
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.metadata.authoritative = true;
    r.add_query(query.clone());
    match found {
        Local::Address(a) if query.query_type() == RecordType::A => {
            r.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(A(a))));
        }
        Local::Address(_) => {}
        Local::NoSuchName => r.metadata.response_code = ResponseCode::NXDomain,
    }
    r.to_vec().ok()
}

/// The host's resolvers (from /etc/resolv.conf, read once) behind hickory's resolver,
/// which caches answers for their TTL, retries another server, and falls back to TCP
/// for a truncated answer. The host's own /etc/hosts is never consulted: its names are
/// the host's, not the guests'.
pub struct Upstream(Option<TokioResolver>);

impl Upstream {
    pub fn from_host() -> Self {
        Self::build(TokioResolver::builder_tokio())
    }

    fn build(builder: Result<ResolverBuilder<TokioRuntimeProvider>, NetError>) -> Self {
        let built = builder.and_then(|mut b| {
            b.options_mut().use_hosts_file = ResolveHosts::Never;
            b.build()
        });
        match built {
            Ok(r) => Self(Some(r)),
            Err(e) => {
                tracing::warn!(error = %e, "no usable resolvers in /etc/resolv.conf; guests get SERVFAIL for names outside EC2's");
                Self(None)
            }
        }
    }

    /// The answer to a guest's query from the host's resolvers: the records found,
    /// NXDOMAIN or NOERROR-with-none as they said, SERVFAIL when none answered. Over
    /// UDP, an answer too large for the guest's buffer comes back truncated, so the
    /// guest asks again over TCP.
    async fn answer(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let q = Message::from_vec(packet).ok()?;
        if q.metadata.message_type != MessageType::Query {
            return None;
        }
        let query = q.queries.first()?.clone();
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.add_query(query.clone());
        let found = match &self.0 {
            Some(resolver) => resolver.lookup(query.name().clone(), query.query_type()).await,
            None => Err(NetError::Message("no resolvers")),
        };
        match found {
            Ok(lookup) => {
                r.add_answers(lookup.answers().iter().cloned());
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(none))) => r.metadata.response_code = none.response_code,
            Err(NetError::Dns(DnsError::ResponseCode(code))) => r.metadata.response_code = code,
            Err(_) => r.metadata.response_code = ResponseCode::ServFail,
        }
        // The guest's UDP buffer: 512 bytes, or what its EDNS says (up to 1232, the
        // size that avoids fragmentation), in which case the answer carries EDNS too.
        let limit = match &q.edns {
            _ if transport == Transport::Tcp => usize::from(u16::MAX),
            Some(e) => {
                let size = e.max_payload().clamp(512, 1232);
                let mut edns = Edns::new();
                edns.set_max_payload(size);
                r.edns = Some(edns);
                usize::from(size)
            }
            None => 512,
        };
        let bytes = r.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        r.answers.clear();
        r.metadata.truncation = true;
        r.to_vec().ok()
    }
}

/// How a question came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// A TCP connection idle this long is closed.
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// What answers one question for a VPC's DNS: the asking guest's address, the
/// message, and whether it came over TCP; None drops it (the guest retries).
pub type Answer = Arc<
    dyn Fn(Ipv4Addr, Vec<u8>, bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>
        + Send
        + Sync,
>;

/// One VPC's DNS on its resolver address's sockets: questions framed as UDP datagrams
/// and TCP messages, answered by `Answer` (this server's `local_answer`, or on a joined
/// host the control plane's, relayed). Each asking address has its own rate limit, and
/// at most `IN_FLIGHT` questions (UDP) or connections (TCP) are in work at once.
#[derive(Clone)]
pub struct Server {
    answer: Answer,
    limits: Arc<GuestLimits>,
    vpc_id: String,
    slots: Arc<tokio::sync::Semaphore>,
}

/// The answer to one question in VPC `vpc_id`: EC2's names from the reconciler's
/// published view (never the store), the rest forwarded to `upstream`; None when the
/// VPC's DNS support is off (it has no resolver, as on EC2).
pub async fn local_answer(
    cloud: &Cloud,
    upstream: &Upstream,
    vpc_id: &str,
    packet: &[u8],
    tcp: bool,
) -> Option<Vec<u8>> {
    let view = cloud.guest_view();
    let vpc = view.vpcs.get(vpc_id);
    if vpc.is_some_and(|v| !v.dns_support) {
        return None;
    }
    let (region, publics) = vpc.map(|v| (v.region.clone(), v.publics.clone())).unwrap_or_default();
    match answer(packet, &region, &publics) {
        Some(r) => Some(r),
        None => upstream.answer(packet, if tcp { Transport::Tcp } else { Transport::Udp }).await,
    }
}

impl Server {
    /// The DNS of VPC `vpc_id` answered by this server (`local_answer`).
    pub fn new(cloud: Arc<Cloud>, limits: Arc<GuestLimits>, upstream: Arc<Upstream>, vpc_id: String) -> Self {
        let vpc = vpc_id.clone();
        let answer: Answer = Arc::new(move |_guest, packet, tcp| {
            let (cloud, upstream, vpc) = (cloud.clone(), upstream.clone(), vpc.clone());
            Box::pin(async move { local_answer(&cloud, &upstream, &vpc, &packet, tcp).await })
        });
        Self::answered_by(answer, limits, vpc_id)
    }

    /// The DNS of VPC `vpc_id` answered by `answer`.
    pub fn answered_by(answer: Answer, limits: Arc<GuestLimits>, vpc_id: String) -> Self {
        Self { answer, limits, vpc_id, slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)) }
    }

    /// Whether `guest` may ask one more question now (its VPC's rate limit for it).
    pub fn allowed(&self, guest: Ipv4Addr) -> bool {
        self.limits.allow(Service::Dns, &format!("{}/{guest}", self.vpc_id))
    }

    fn allowed_peer(&self, peer: std::net::SocketAddr) -> bool {
        match peer.ip() {
            std::net::IpAddr::V4(a) => self.allowed(a),
            std::net::IpAddr::V6(_) => false,
        }
    }

    /// The answer to one question from `guest` (its rate limit aside).
    pub async fn answer(&self, guest: Ipv4Addr, packet: Vec<u8>, tcp: bool) -> Option<Vec<u8>> {
        (self.answer)(guest, packet, tcp).await
    }

    /// The answer to one question.
    async fn reply(&self, peer: std::net::SocketAddr, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let std::net::IpAddr::V4(guest) = peer.ip() else { return None };
        (self.answer)(guest, packet.to_vec(), transport == Transport::Tcp).await
    }

    /// Answers questions on `socket` until it goes away.
    pub async fn udp(self, socket: tokio::net::UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
            if !self.allowed_peer(peer) {
                continue;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else { continue };
            let packet = buf[..n].to_vec();
            let (this, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(r) = this.reply(peer, &packet, Transport::Udp).await {
                    let _ = socket.send_to(&r, peer).await;
                }
                drop(slot);
            });
        }
    }

    /// Answers questions on TCP connections (each a two-byte length, then the
    /// message, as RFC 1035 frames them) until the listener goes away.
    pub async fn tcp(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else { continue };
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.conversation(stream, peer).await;
                drop(slot);
            });
        }
    }

    async fn conversation(&self, mut stream: tokio::net::TcpStream, peer: std::net::SocketAddr) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return Ok(()),
            }
            let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await.map_err(std::io::Error::other)??;
            if !self.allowed_peer(peer) {
                return Ok(());
            }
            let Some(r) = self.reply(peer, &packet, Transport::Tcp).await else { return Ok(()) };
            let Ok(n) = u16::try_from(r.len()) else { return Ok(()) };
            stream.write_all(&n.to_be_bytes()).await?;
            stream.write_all(&r).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A resolver on loopback: `one.test` has an address, `big.test` sixty, and
    /// everything else is NXDOMAIN. Counts the questions it gets.
    async fn fake_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let asked = Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
                let Some(query) = q.queries.first().cloned() else { continue };
                let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                r.metadata.recursion_available = true;
                r.add_query(query.clone());
                let name = query.name().to_ascii();
                let how_many = match name.as_str() {
                    "one.test." => 1,
                    "big.test." => 60,
                    _ => 0,
                };
                if how_many == 0 {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
                for n in 0..how_many {
                    r.add_answer(Record::from_rdata(
                        query.name().clone(),
                        300,
                        RData::A(A(Ipv4Addr::new(10, 9, 0, n))),
                    ));
                }
                let _ = sock.send_to(&r.to_vec().expect("encode"), peer).await;
            }
        });
        (addr, asked)
    }

    #[tokio::test]
    async fn other_names_are_forwarded_cached_and_truncated_to_fit() {
        let (addr, asked) = fake_upstream().await;
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, vec![udp])]);
        let upstream = Upstream::build(Ok(TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())));

        let r = Message::from_vec(&upstream.answer(&ask("one.test."), Transport::Udp).await.expect("answer"))
            .expect("decode");
        assert_eq!(r.metadata.id, 42);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 9, 0, 0))));
        let before = asked.load(Ordering::SeqCst);
        let again = Message::from_vec(&upstream.answer(&ask("one.test."), Transport::Udp).await.expect("answer"))
            .expect("decode");
        assert_eq!(again.answers.len(), 1);
        assert_eq!(asked.load(Ordering::SeqCst), before, "the second answer comes from the cache");

        let r = Message::from_vec(&upstream.answer(&ask("nowhere.test."), Transport::Udp).await.expect("answer"))
            .expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

        let big = upstream.answer(&ask("big.test."), Transport::Udp).await.expect("answer");
        assert!(big.len() <= 512, "a plain query's answer fits 512 bytes");
        let r = Message::from_vec(&big).expect("decode");
        assert!(r.metadata.truncation && r.answers.is_empty(), "too large: truncated, so the guest asks over TCP");
        let whole = upstream.answer(&ask("big.test."), Transport::Tcp).await.expect("answer");
        assert_eq!(Message::from_vec(&whole).expect("decode").answers.len(), 60, "over TCP it is whole");

        // The VPC's DNS over TCP: length-framed questions on one connection.
        let cloud = Arc::new(Cloud::new(
            kiln_store::Store::in_memory().expect("store"),
            vec![kiln_types::RegionConfig::with_three_zones("us-east-1")],
            std::env::temp_dir(),
        ));
        let server = Server::new(cloud, Arc::new(GuestLimits::default()), Arc::new(upstream), "vpc-0123".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let at = listener.local_addr().expect("addr");
        tokio::spawn(server.tcp(listener));
        let mut conn = tokio::net::TcpStream::connect(at).await.expect("connect");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        for name in ["big.test.", "one.test."] {
            let q = ask(name);
            conn.write_all(&(q.len() as u16).to_be_bytes()).await.expect("write");
            conn.write_all(&q).await.expect("write");
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).await.expect("length");
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            conn.read_exact(&mut reply).await.expect("reply");
            let r = Message::from_vec(&reply).expect("decode");
            assert_eq!(r.answers.len(), if name == "big.test." { 60 } else { 1 }, "{name}");
        }

        let none = Upstream(None);
        let r =
            Message::from_vec(&none.answer(&ask("one.test."), Transport::Udp).await.expect("answer")).expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    fn ask(name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 42;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
        m.to_vec().expect("encode")
    }

    #[test]
    fn ec2_names_resolve_inside_the_vpc() {
        let publics = [(Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(172, 31, 0, 5))];
        let r = Message::from_vec(&answer(&ask("ip-172-31-0-9.ec2.internal."), "us-east-1", &publics).expect("local"))
            .expect("decode");
        assert_eq!(r.metadata.id, 42);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(172, 31, 0, 9))));
        let r = Message::from_vec(
            &answer(&ask("ec2-100-64-0-1.compute-1.amazonaws.com."), "us-east-1", &publics).expect("public"),
        )
        .expect("decode");
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(172, 31, 0, 5))), "split horizon");
        let r = Message::from_vec(&answer(&ask("nothing.ec2.internal."), "us-east-1", &publics).expect("nx"))
            .expect("decode");
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(answer(&ask("debian.org."), "us-east-1", &publics).is_none(), "others are forwarded");
        assert_eq!(
            local("ip-10-0-0-1.eu-west-1.compute.internal", "eu-west-1", &[]),
            Some(Local::Address(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }
}
