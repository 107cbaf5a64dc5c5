//! `MaxResults` / `NextToken` pagination. Tokens are opaque: an offset bound to a hash
//! of the query and the caller, so a token cannot be replayed against another query.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::{Ec2Error, Params};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paging {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

impl Paging {
    pub fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { max_results: p.int("MaxResults")?, next_token: p.string("NextToken") })
    }

    pub fn is_set(&self) -> bool {
        self.max_results.is_some() || self.next_token.is_some()
    }
}

/// Cuts one page from `items`. `scope` names the query and the caller; `range` is the
/// action's allowed MaxResults; `default` the page size when none is asked.
pub fn paginate<T>(
    items: Vec<T>,
    paging: &Paging,
    scope: &str,
    range: (i64, i64),
    default: Option<usize>,
) -> Result<(Vec<T>, Option<String>), Ec2Error> {
    let size = match paging.max_results {
        Some(n) if n < range.0 || n > range.1 => {
            return Err(Ec2Error::invalid_value(format!(
                "Value ( {n} ) for parameter maxResults is invalid. Parameter must be between {} and {}.",
                range.0, range.1
            )))
        }
        Some(n) => Some(n as usize),
        None => default,
    };
    let start = match &paging.next_token {
        None => 0,
        Some(t) => decode_token(t, scope)?,
    };
    let Some(size) = size else {
        return Ok((items.into_iter().skip(start).collect(), None));
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + size < total).then(|| encode_token(start + size, scope));
    Ok((page, next))
}

fn scope_hash(scope: &str) -> String {
    hex::encode(&Sha256::digest(scope.as_bytes())[..8])
}

fn encode_token(offset: usize, scope: &str) -> String {
    let raw = format!("{offset}:{}", scope_hash(scope));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str, scope: &str) -> Result<usize, Ec2Error> {
    let bad = || Ec2Error::new("InvalidPaginationToken", format!("Invalid pagination token: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (offset, hash) = raw.split_once(':').ok_or_else(bad)?;
    if hash != scope_hash(scope) {
        return Err(bad());
    }
    offset.parse().map_err(|_| bad())
}

/// The query's identity for token scoping: every parameter but the paging ones.
pub fn scope_of(account: &str, region: &str, p: &Params) -> String {
    let mut s = format!("{account}|{region}");
    for (k, v) in p.iter() {
        if k != "NextToken" && k != "MaxResults" {
            s.push('|');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_through_everything_once() {
        let items: Vec<u32> = (0..12).collect();
        let mut seen = Vec::new();
        let mut paging = Paging { max_results: Some(5), next_token: None };
        loop {
            let (page, next) = paginate(items.clone(), &paging, "q", (5, 1000), None).expect("page");
            seen.extend(page);
            match next {
                Some(t) => paging.next_token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn tokens_are_bound_to_their_query_and_range_is_checked() {
        let paging = Paging { max_results: Some(5), next_token: None };
        let (_, next) = paginate((0..10).collect::<Vec<_>>(), &paging, "q1", (5, 1000), None).expect("page");
        let other = Paging { max_results: Some(5), next_token: next };
        let err = paginate((0..10).collect::<Vec<_>>(), &other, "q2", (5, 1000), None);
        assert_eq!(err.map_err(|e| e.code), Err("InvalidPaginationToken".to_string()));
        let small = Paging { max_results: Some(4), next_token: None };
        assert!(paginate(vec![1], &small, "q", (5, 1000), None).is_err());
    }
}
