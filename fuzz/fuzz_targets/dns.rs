//! DNS: any packet a guest sends to its VPC's resolver.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let publics = [(Ipv4Addr::new(100, 64, 0, 1), Ipv4Addr::new(172, 31, 0, 5))];
    let _ = kiln_server::dns::answer(data, "us-east-1", &publics);
});
