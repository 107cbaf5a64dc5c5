//! The metadata service: any path under `meta-data/`.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut leaves = BTreeMap::new();
    for (k, v) in [
        ("instance-id", "i-0123456789abcdef0"),
        ("placement/availability-zone", "us-east-1a"),
        ("network/interfaces/macs/02:00:00:00:00:01/subnet-id", "subnet-0123"),
        ("public-keys", "0=demo"),
    ] {
        leaves.insert(k.to_owned(), v.to_owned());
    }
    let path = String::from_utf8_lossy(data);
    let _ = kiln_server::imds::resolve(&leaves, &path);
});
