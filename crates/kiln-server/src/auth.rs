//! Authentication: SigV4 claim → time window → access key → signature → caller.

use axum::http::{header, HeaderMap, Method, Uri};
use kiln_ec2::sigv4::{self, HttpRequest};
use kiln_ec2::Ec2Error;

use crate::{errors, AppState, Caller};

/// The service a request's credential is scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Ec2,
    Sts,
}

/// One value of a query string, decoded.
fn form_value(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

pub(crate) fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Caller, Service), Ec2Error> {
    let header_list: Vec<(String, String)> =
        headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned()))).collect();
    let mut header_list = header_list;
    // HTTP/2 and some clients carry the host only in the URI authority.
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = uri.authority() {
            header_list.push(("host".into(), authority.to_string()));
        }
    }
    let req = HttpRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &header_list,
        body,
    };
    let claim = sigv4::parse_claim(&req)?;
    sigv4::check_time(&claim, chrono::Utc::now(), state.config.max_skew)?;
    let key = state.cloud.access_key(&claim.access_key_id).map_err(errors::to_ec2)?.ok_or_else(sigv4::auth_failure)?;
    sigv4::verify(&req, &claim, &key.secret)?;
    if let Some(limits) = &key.session {
        // Temporary credentials: the request carries their session token (signed),
        // and they work until they expire or the session ends.
        let token = header_list
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-security-token"))
            .map(|(_, v)| v.clone())
            .or_else(|| form_value(uri.query().unwrap_or_default(), "X-Amz-Security-Token"))
            .ok_or_else(|| {
                Ec2Error::new("AuthFailure", "Temporary credentials need their session token (X-Amz-Security-Token)")
            })?;
        if kiln_control::console::token_hash(&token) != limits.token_hash {
            return Err(sigv4::auth_failure());
        }
        if kiln_control::console::expired(limits, chrono::Utc::now()) {
            return Err(Ec2Error::new(
                "ExpiredToken",
                "The security token included in the request is expired. Sign in to the console again.",
            ));
        }
    }
    if state.cloud.region(&claim.region).is_none() {
        let served: Vec<&str> = state.cloud.regions.iter().map(|r| r.name.as_str()).collect();
        return Err(Ec2Error::new(
            "AuthFailure",
            format!(
                "Credential should be scoped to a valid region: '{}' is not served here (served: {})",
                claim.region,
                served.join(", ")
            ),
        ));
    }
    let service = if claim.service == "sts" { Service::Sts } else { Service::Ec2 };
    Ok((Caller { account: key.account_id, region: claim.region }, service))
}
