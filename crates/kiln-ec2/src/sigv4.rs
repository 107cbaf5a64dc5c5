//! AWS Signature Version 4 verification, for the `Authorization` header and for
//! presigned query strings.
//!
//! There is no maintained crate that *verifies* SigV4 on the server side (the AWS crates
//! sign outgoing requests and choose their own header set), so the canonicalisation is
//! written here, following AWS's published algorithm, and checked against AWS's vectors
//! and against botocore. Comparison is constant-time.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Ec2Error;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const SERVICE: &str = "ec2";
/// The services this endpoint answers: EC2, and STS's GetCallerIdentity.
const SERVICES: &[&str] = &[SERVICE, "sts"];
/// How far a header-signed request's clock may be from ours.
pub const DEFAULT_MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

/// RFC 3986 unreserved characters stay as they are; everything else is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The parts of an HTTP request that a signature covers.
pub struct HttpRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string, without the `?`.
    pub query: &'a str,
    /// Header names and values as received; names in any case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a request claims about who signed it, before the claim is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub amz_date: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
    /// `Some(seconds)` for a presigned URL.
    pub expires: Option<i64>,
    pub presigned: bool,
}

impl Claim {
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

fn incomplete(msg: impl Into<String>) -> Ec2Error {
    Ec2Error::new("IncompleteSignature", msg)
}

/// The error for an unknown access key.
pub fn auth_failure() -> Ec2Error {
    Ec2Error::new("AuthFailure", "AWS was not able to validate the provided access credentials")
}

fn signature_mismatch() -> Ec2Error {
    Ec2Error::new(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method.",
    )
}

/// Reads the signature claim from the header or the query string.
pub fn parse_claim(req: &HttpRequest<'_>) -> Result<Claim, Ec2Error> {
    if let Some(auth) = req.header("authorization") {
        return parse_header_claim(req, auth);
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes()).into_owned().collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(alg) = q("X-Amz-Algorithm") {
        if alg != ALGORITHM {
            return Err(incomplete(format!("Unsupported signing algorithm {alg}")));
        }
        let credential = q("X-Amz-Credential").ok_or_else(|| incomplete("X-Amz-Credential is missing"))?;
        let amz_date = q("X-Amz-Date").ok_or_else(|| incomplete("X-Amz-Date is missing"))?;
        let signed = q("X-Amz-SignedHeaders").ok_or_else(|| incomplete("X-Amz-SignedHeaders is missing"))?;
        let signature = q("X-Amz-Signature").ok_or_else(|| incomplete("X-Amz-Signature is missing"))?;
        let expires = q("X-Amz-Expires")
            .ok_or_else(|| incomplete("X-Amz-Expires is missing"))?
            .parse::<i64>()
            .ok()
            .filter(|e| (1..=604_800).contains(e))
            .ok_or_else(|| Ec2Error::invalid_value("X-Amz-Expires must be between 1 and 604800 seconds"))?;
        return build_claim(&credential, amz_date, &signed, signature, Some(expires));
    }
    Err(Ec2Error::new(
        "MissingParameter",
        "The request must contain the parameter AWSAccessKeyId (sign it with AWS Signature Version 4)",
    ))
}

fn parse_header_claim(req: &HttpRequest<'_>, auth: &str) -> Result<Claim, Ec2Error> {
    let rest =
        auth.strip_prefix(ALGORITHM).ok_or_else(|| incomplete("Only AWS4-HMAC-SHA256 signatures are supported"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Authorization header requires 'Credential' parameter"))?;
    let signed = signed.ok_or_else(|| incomplete("Authorization header requires 'SignedHeaders' parameter"))?;
    let signature = signature.ok_or_else(|| incomplete("Authorization header requires 'Signature' parameter"))?;
    let amz_date = req.header("x-amz-date").or_else(|| req.header("date")).ok_or_else(|| {
        incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header")
    })?;
    build_claim(credential, amz_date.to_owned(), signed, signature.to_owned(), None)
}

fn build_claim(
    credential: &str,
    amz_date: String,
    signed: &str,
    signature: String,
    expires: Option<i64>,
) -> Result<Claim, Ec2Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts[..] else {
        return Err(incomplete(format!("Credential scope is malformed: {credential}")));
    };
    if terminator != "aws4_request" || akid.is_empty() {
        return Err(incomplete(format!("Credential scope is malformed: {credential}")));
    }
    if !SERVICES.contains(&service) {
        return Err(incomplete(format!("Credential should be scoped to correct service: '{SERVICE}'")));
    }
    if !amz_date.starts_with(date) {
        return Err(incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{amz_date}'"
        )));
    }
    Ok(Claim {
        access_key_id: akid.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        amz_date,
        signed_headers: signed.split(';').map(|h| h.to_ascii_lowercase()).collect(),
        signature,
        expires,
        presigned: expires.is_some(),
    })
}

fn parse_amz_date(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| DateTime::parse_from_rfc2822(s).ok().map(|t| t.with_timezone(&Utc)))
}

/// Checks the claim's time against `now`: EC2 answers `RequestExpired` for a request
/// too old or too far in the future.
pub fn check_time(claim: &Claim, now: DateTime<Utc>, max_skew: TimeDelta) -> Result<(), Ec2Error> {
    let t = parse_amz_date(&claim.amz_date)
        .ok_or_else(|| incomplete(format!("X-Amz-Date '{}' is not a valid date", claim.amz_date)))?;
    let expired = || {
        Ec2Error::new(
            "RequestExpired",
            format!(
                "Request has expired. The request time {} is outside the allowed window of the server time {}; check the client's clock.",
                claim.amz_date,
                now.format("%Y%m%dT%H%M%SZ")
            ),
        )
    };
    match claim.expires {
        Some(secs) => {
            if t - max_skew > now || now >= t + TimeDelta::seconds(secs) {
                return Err(expired());
            }
        }
        None => {
            if (now - t).abs() > max_skew {
                return Err(expired());
            }
        }
    }
    Ok(())
}

/// Verifies the signature with the caller's secret key.
pub fn verify(req: &HttpRequest<'_>, claim: &Claim, secret: &str) -> Result<(), Ec2Error> {
    if !claim.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete("The host header must be signed"));
    }
    if let Some(declared) = req.header("x-amz-content-sha256") {
        if declared != "UNSIGNED-PAYLOAD" && declared != hex::encode(Sha256::digest(req.body)) {
            return Err(Ec2Error::new(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }
    let expected = signature(req, claim, secret)?;
    if expected.as_bytes().ct_eq(claim.signature.as_bytes()).into() {
        Ok(())
    } else {
        Err(signature_mismatch())
    }
}

/// The signature the request should carry, given the secret.
pub fn signature(req: &HttpRequest<'_>, claim: &Claim, secret: &str) -> Result<String, Ec2Error> {
    let canonical = canonical_request(req, claim)?;
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        claim.amz_date,
        claim.scope(),
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(secret, &claim.date, &claim.region, &claim.service);
    Ok(hex::encode(hmac(&key, string_to_sign.as_bytes())))
}

/// The canonical request, step 1 of the algorithm.
pub fn canonical_request(req: &HttpRequest<'_>, claim: &Claim) -> Result<String, Ec2Error> {
    let mut out = String::with_capacity(512);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query, claim.presigned));
    out.push('\n');
    for name in &claim.signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(incomplete(format!("Signed header '{name}' is missing from the request")));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&claim.signed_headers.join(";"));
    out.push('\n');
    // A declared payload hash (checked against the body in `verify`) is what was signed.
    let payload = match req.header("x-amz-content-sha256") {
        Some(declared) => declared.to_owned(),
        None => hex::encode(Sha256::digest(req.body)),
    };
    out.push_str(&payload);
    Ok(out)
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    path.split('/')
        .map(|seg| {
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            utf8_percent_encode(&decoded, UNRESERVED).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| {
            (utf8_percent_encode(&k, UNRESERVED).to_string(), utf8_percent_encode(&v, UNRESERVED).to_string())
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC-SHA256 accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Signs a request the way botocore does (header form, signing `content-type`, `host`
/// and `x-amz-date`). Used by Kiln's own CLI and benchmark clients and by tests.
pub fn sign_headers(
    access_key_id: &str,
    secret: &str,
    region: &str,
    host: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let headers = vec![
        ("content-type".to_owned(), "application/x-www-form-urlencoded; charset=utf-8".to_owned()),
        ("host".to_owned(), host.to_owned()),
        ("x-amz-date".to_owned(), amz_date.clone()),
    ];
    let claim = Claim {
        access_key_id: access_key_id.to_owned(),
        date: amz_date[..8].to_owned(),
        region: region.to_owned(),
        service: SERVICE.to_owned(),
        amz_date,
        signed_headers: vec!["content-type".into(), "host".into(), "x-amz-date".into()],
        signature: String::new(),
        expires: None,
        presigned: false,
    };
    let req = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body };
    // Signing our own well-formed request cannot fail: every signed header is present.
    let sig = signature(&req, &claim, secret).unwrap_or_default();
    let mut out = headers;
    out.push((
        "authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={access_key_id}/{}, SignedHeaders=content-type;host;x-amz-date, Signature={sig}",
            claim.scope()
        ),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at(s: &str) -> DateTime<Utc> {
        parse_amz_date(s).expect("date")
    }

    /// The golden POST vector from the wire notes (checked against botocore's SigV4Auth).
    #[test]
    fn botocore_post_vector() {
        let body = b"Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-0123456789abcdef0";
        let headers = sign_headers(AKID, SECRET, "us-east-1", "127.0.0.1:8773", body, at("20161115T120000Z"));
        let auth = &headers.iter().find(|(k, _)| k == "authorization").expect("auth").1;
        assert!(auth.ends_with("Signature=37d907cfee141c913fa057be5186e51db96262a4fafbcbed8f619d1e923cfc71"), "{auth}");
        let req = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body };
        let claim = parse_claim(&req).expect("claim");
        assert_eq!(claim.access_key_id, AKID);
        assert_eq!(claim.region, "us-east-1");
        let canonical = canonical_request(&req, &claim).expect("canonical");
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "ce883c3e09bc0787ffbe27daba9ec9610bfa3c3887552c90190a94fd432684ae"
        );
        verify(&req, &claim, SECRET).expect("valid");
        assert_eq!(verify(&req, &claim, "wrong").map_err(|e| e.code), Err("SignatureDoesNotMatch".into()));
        check_time(&claim, at("20161115T120400Z"), DEFAULT_MAX_SKEW).expect("in window");
        assert_eq!(
            check_time(&claim, at("20161115T121000Z"), DEFAULT_MAX_SKEW).map_err(|e| e.code),
            Err("RequestExpired".into())
        );
        assert!(check_time(&claim, at("20161115T115000Z"), DEFAULT_MAX_SKEW).is_err(), "future");
    }

    /// A tampered body no longer matches.
    #[test]
    fn tampering_is_detected() {
        let body = b"Action=DescribeVpcs&Version=2016-11-15";
        let headers = sign_headers(AKID, SECRET, "eu-west-1", "localhost:8787", body, at("20240101T000000Z"));
        let tampered = b"Action=DeleteVpc&Version=2016-11-15";
        let req = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body: tampered };
        let claim = parse_claim(&req).expect("claim");
        assert!(verify(&req, &claim, SECRET).is_err());
    }

    /// The presigned GET vector from the wire notes.
    #[test]
    fn presigned_get_vector() {
        let query = "Action=DescribeRegions&Version=2016-11-15&X-Amz-Algorithm=AWS4-HMAC-SHA256\
&X-Amz-Credential=AKIDEXAMPLE%2F20161115%2Fus-east-1%2Fec2%2Faws4_request&X-Amz-Date=20161115T120000Z\
&X-Amz-Expires=300&X-Amz-SignedHeaders=host\
&X-Amz-Signature=7de78ac9c59a3bcedf3df86e2caed42d69a5a7eeefa5235cbcb64ad82ab8ff90";
        let headers = vec![("Host".to_owned(), "127.0.0.1:8773".to_owned())];
        let req = HttpRequest { method: "GET", path: "/", query, headers: &headers, body: b"" };
        let claim = parse_claim(&req).expect("claim");
        assert!(claim.presigned);
        verify(&req, &claim, SECRET).expect("valid presigned");
        check_time(&claim, at("20161115T120400Z"), DEFAULT_MAX_SKEW).expect("fresh");
        assert!(check_time(&claim, at("20161115T120600Z"), DEFAULT_MAX_SKEW).is_err(), "expired");
    }

    /// AWS's published test-suite case `get-vanilla-query-order-key-case`
    /// (service "service", so the scope check is bypassed by building the claim here).
    #[test]
    fn aws_suite_get_vanilla_query_order() {
        let headers = vec![
            ("Host".to_owned(), "example.amazonaws.com".to_owned()),
            ("X-Amz-Date".to_owned(), "20150830T123600Z".to_owned()),
        ];
        let req = HttpRequest {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let claim = Claim {
            access_key_id: AKID.into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            amz_date: "20150830T123600Z".into(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500".into(),
            expires: None,
            presigned: false,
        };
        verify(&req, &claim, SECRET).expect("AWS suite vector");
    }

    #[test]
    fn unsigned_and_malformed_claims() {
        let req = HttpRequest { method: "POST", path: "/", query: "", headers: &[], body: b"Action=X" };
        assert_eq!(parse_claim(&req).map_err(|e| e.code), Err("MissingParameter".into()));
        let headers = vec![
            (
                "authorization".to_owned(),
                "AWS4-HMAC-SHA256 Credential=AK/2020/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00"
                    .to_owned(),
            ),
            ("x-amz-date".into(), "20200101T000000Z".into()),
        ];
        let req = HttpRequest { method: "POST", path: "/", query: "", headers: &headers, body: b"" };
        assert_eq!(parse_claim(&req).map_err(|e| e.code), Err("IncompleteSignature".into()));
    }
}
