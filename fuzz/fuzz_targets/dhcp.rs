//! DHCP: any packet a guest sends to its port's server.
#![no_main]

use std::net::Ipv4Addr;

use kiln_server::dhcp::{reply, Lease};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lease = Lease {
        mac: [0x02, 0, 0, 0, 0, 1],
        ip: Ipv4Addr::new(172, 31, 0, 5),
        prefix_len: 20,
        gateway: Ipv4Addr::new(172, 31, 0, 1),
        dns: vec![Ipv4Addr::new(172, 31, 0, 2)],
        ntp: vec![Ipv4Addr::new(172, 31, 0, 3)],
        hostname: "ip-172-31-0-5".into(),
        domain: "ec2.internal".into(),
    };
    let _ = reply(data, &lease);
});
