//! The Amazon-provided DNS of a VPC (its base address + 2): EC2's private host names
//! (`ip-10-0-0-5.ec2.internal`) and, inside the VPC, public names of its instances
//! (`ec2-100-64-0-1.compute-1.amazonaws.com`, answered with the private address as
//! EC2 does) are answered here; every other question goes to the host's resolvers.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
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

/// The host's resolvers, from /etc/resolv.conf.
fn upstreams() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Sends the query to the host's resolvers in turn; the first answer wins.
async fn forward(packet: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for &server in upstreams {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else { continue };
        if sock.send_to(packet, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// Answers a VPC's DNS questions on `socket` until it goes away: EC2's names from the
/// reconciler's published view (never the store), the rest forwarded. Each asking
/// address has its own rate limit, and at most `IN_FLIGHT` questions are in work.
pub async fn serve(cloud: Arc<Cloud>, limits: Arc<GuestLimits>, vpc_id: String, socket: tokio::net::UdpSocket) {
    let socket = Arc::new(socket);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    // Read once for the life of the VPC's DNS, not per question.
    let upstreams: Arc<[SocketAddr]> = upstreams().into();
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
        if !limits.allow(Service::Dns, &format!("{vpc_id}/{}", peer.ip())) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let packet = buf[..n].to_vec();
        let view = cloud.guest_view();
        let (region, publics) =
            view.vpcs.get(&vpc_id).map(|v| (v.region.clone(), v.publics.clone())).unwrap_or_default();
        let (socket, upstreams) = (socket.clone(), upstreams.clone());
        tokio::spawn(async move {
            let reply = match answer(&packet, &region, &publics) {
                Some(r) => Some(r),
                None => forward(&packet, &upstreams).await,
            };
            if let Some(r) = reply {
                let _ = socket.send_to(&r, peer).await;
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

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
