//! DHCP for a VPC port: the answer is always the instance's own lease from Kiln's
//! state (its PrivateIpAddress, the subnet's mask and gateway, the VPC's DNS address,
//! EC2's host and domain names). The socket it arrives on is bound to the instance's
//! tap, so the port, not the packet, says who is asking.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};

pub use kiln_control::guest_view::Lease;

/// How long a lease lasts (the guest renews it; it never changes while the instance lives).
const LEASE_SECONDS: u32 = 3600;

fn mask(prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix_len.min(32))).unwrap_or(0))
}

/// The reply to one DHCP packet from the port, or None when it gets no answer (not a
/// request, not from the port's MAC, a release).
pub fn reply(packet: &[u8], lease: &Lease) -> Option<Vec<u8>> {
    let req = Message::from_bytes(packet).ok()?;
    // dhcproto slices the hardware address by the packet's own length field, which
    // panics past 16 (found by fuzzing: fuzz/fuzz_targets/dhcp.rs).
    if req.hlen() > 16 {
        return None;
    }
    if req.opcode() != Opcode::BootRequest || req.chaddr() != lease.mac {
        return None;
    }
    let kind = match req.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            let asked = match req.opts().get(dhcproto::v4::OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => *a,
                _ => req.ciaddr(),
            };
            if asked == lease.ip {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
        MessageType::Inform => MessageType::Ack,
        _ => return None,
    };
    let yiaddr = if matches!(kind, MessageType::Nak) || req.opts().msg_type() == Some(MessageType::Inform) {
        Ipv4Addr::UNSPECIFIED
    } else {
        lease.ip
    };
    let mut m = Message::new_with_id(req.xid(), req.ciaddr(), yiaddr, lease.gateway, Ipv4Addr::UNSPECIFIED, &lease.mac);
    m.set_opcode(Opcode::BootReply).set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(lease.gateway));
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(mask(lease.prefix_len)));
        o.insert(DhcpOption::Router(vec![lease.gateway]));
        if !lease.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(lease.dns.clone()));
        }
        if !lease.ntp.is_empty() {
            o.insert(DhcpOption::NtpServers(lease.ntp.clone()));
        }
        o.insert(DhcpOption::DomainName(lease.domain.clone()));
        o.insert(DhcpOption::Hostname(lease.hostname.clone()));
        o.insert(DhcpOption::AddressLeaseTime(LEASE_SECONDS));
    }
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            mac: [2, 0, 0, 0, 0, 1],
            ip: Ipv4Addr::new(172, 31, 0, 5),
            prefix_len: 20,
            gateway: Ipv4Addr::new(172, 31, 0, 1),
            dns: vec![Ipv4Addr::new(172, 31, 0, 2)],
            ntp: Vec::new(),
            hostname: "ip-172-31-0-5".into(),
            domain: "ec2.internal".into(),
        }
    }

    fn ask(kind: MessageType, mac: &[u8], requested: Option<Ipv4Addr>) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(7, z, z, z, z, mac);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(r) = requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(r));
        }
        m.to_vec().expect("encode")
    }

    fn decode(b: &[u8]) -> Message {
        Message::from_bytes(b).expect("decode")
    }

    #[test]
    fn the_port_gets_its_own_address() {
        let l = lease();
        let offer = decode(&reply(&ask(MessageType::Discover, &l.mac, None), &l).expect("offer"));
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), l.ip);
        assert_eq!(offer.xid(), 7);
        assert_eq!(
            offer.opts().get(dhcproto::v4::OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 240, 0)))
        );
        let ack = decode(&reply(&ask(MessageType::Request, &l.mac, Some(l.ip)), &l).expect("ack"));
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        let nak =
            decode(&reply(&ask(MessageType::Request, &l.mac, Some(Ipv4Addr::new(172, 31, 0, 9))), &l).expect("nak"));
        assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn other_macs_and_garbage_get_nothing() {
        let l = lease();
        assert!(reply(&ask(MessageType::Discover, &[2, 0, 0, 0, 0, 2], None), &l).is_none());
        assert!(reply(b"not dhcp", &l).is_none());
        assert!(reply(&ask(MessageType::Release, &l.mac, None), &l).is_none());
    }

    #[test]
    fn a_hardware_address_longer_than_16_bytes_is_ignored() {
        // The fuzzer's input: a BootRequest whose hlen is 81.
        let mut packet = vec![1u8, 1, 81, 0];
        packet.resize(300, 0);
        packet[236..240].copy_from_slice(&[99, 130, 83, 99]);
        packet.extend_from_slice(&[53, 1, 1, 255]);
        assert_eq!(reply(&packet, &lease()), None);
    }
}
