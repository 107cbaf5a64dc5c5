//! SigV4: any Authorization header or presigned query, claimed, timed and verified.
#![no_main]

use kiln_ec2::sigv4::{check_time, parse_claim, verify, HttpRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let auth = parts.next().unwrap_or_default().to_owned();
    let query = parts.next().unwrap_or_default().to_owned();
    let date = parts.next().unwrap_or_default().to_owned();
    let body = parts.next().unwrap_or_default().as_bytes().to_vec();
    let headers = vec![
        ("Authorization".to_owned(), auth),
        ("X-Amz-Date".to_owned(), date),
        ("Host".to_owned(), "127.0.0.1:8787".to_owned()),
    ];
    for hs in [&headers[..], &headers[1..]] {
        let req = HttpRequest { method: "POST", path: "/", query: &query, headers: hs, body: &body };
        if let Ok(claim) = parse_claim(&req) {
            let _ = check_time(&claim, chrono::Utc::now(), chrono::TimeDelta::minutes(5));
            let _ = verify(&req, &claim, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        }
    }
});
