//! The Query protocol: any query string and form body, parsed and decoded as every
//! action Kiln knows.
#![no_main]

use kiln_ec2::requests::Request;
use kiln_ec2::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let query = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let params = Params::parse(&query, body);
    let _ = params.flag("DryRun");
    if let Some(action) = params.get("Action") {
        let _ = Request::decode(action, &params);
    }
    for action in kiln_ec2::requests::ACTIONS {
        let _ = Request::decode(action, &params);
    }
});
