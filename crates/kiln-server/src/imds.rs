//! The Instance Metadata Service's answers. Each live instance has its own listening
//! socket (see `guests.rs`), so the socket a request arrives on *is* the caller's
//! identity and a guest can only ever read its own data. IMDSv2 session tokens
//! (PUT /latest/api/token) and v1, with the instance's HttpTokens and HttpEndpoint
//! options.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use kiln_control::{Cloud, Scope};
use kiln_store::instances::Instance;
use kiln_types::ids::instance_mac;
use rand::RngCore;

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// The dated versions answered as aliases of `latest`.
const VERSIONS: &[&str] = &["1.0", "2009-04-04", "2011-01-01", "2016-09-02", "2018-09-24", "2021-03-23", "latest"];

/// Session tokens one instance may hold at once; issuing another retires its oldest.
const TOKENS_PER_INSTANCE: usize = 32;

/// Tokens by value: the instance they belong to and when they expire. Expired tokens
/// go at each issue, and each instance holds at most `TOKENS_PER_INSTANCE`, so a guest
/// asking for tokens in a loop cannot grow the map.
#[derive(Default)]
pub struct Tokens(Mutex<HashMap<String, (String, Instant)>>);

impl Tokens {
    fn issue(&self, instance: &str, ttl: u64) -> String {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, exp)| *exp > Instant::now());
        let mine: Vec<(&String, &Instant)> =
            map.iter().filter(|(_, (i, _))| i == instance).map(|(t, (_, exp))| (t, exp)).collect();
        if mine.len() >= TOKENS_PER_INSTANCE {
            if let Some(oldest) = mine.iter().min_by_key(|(_, exp)| **exp).map(|(t, _)| (*t).clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(token.clone(), (instance.to_owned(), Instant::now() + Duration::from_secs(ttl)));
        token
    }

    fn valid(&self, token: &str, instance: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token).is_some_and(|(i, exp)| i == instance && *exp > Instant::now())
    }
}

#[derive(Clone)]
struct Guest {
    cloud: Arc<Cloud>,
    tokens: Arc<Tokens>,
    limits: Arc<crate::limits::GuestLimits>,
    instance_id: String,
    /// What the control plane said about this instance, kept until anything in the
    /// cloud changes: a guest asking in a loop costs nothing while nothing changes, and
    /// a change (HttpTokens=required, a new public address) is seen by the next request.
    known: Arc<Mutex<Option<Arc<Known>>>>,
    /// The generation (plus one) at which an answer last marked the instance ready
    /// (status checks pass): at most one write per generation.
    marked: Arc<std::sync::atomic::AtomicU64>,
}

/// One instance's metadata as read at one state generation (`Cloud::generation`).
struct Known {
    generation: u64,
    instance: Instance,
    leaves: BTreeMap<String, String>,
}

impl Guest {
    /// This instance's metadata, from memory while nothing has changed.
    async fn known(&self) -> Option<Arc<Known>> {
        let generation = self.cloud.generation();
        if let Some(k) = self.known.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if k.generation == generation {
                return Some(k);
            }
        }
        let g = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let instance = g.cloud.instance_for_guest(&g.instance_id).ok().flatten()?;
            let leaves = meta_data(&g.cloud, &instance);
            Some(Arc::new(Known { generation, instance, leaves }))
        })
        .await
        .ok()
        .flatten()?;
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(read.clone());
        Some(read)
    }
}

fn text(status: StatusCode, body: impl Into<Body>) -> Response {
    (status, [("content-type", "text/plain")], body.into()).into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found")
}

/// The header in which a joined host relays the path a guest asked for (the URL it
/// relays to is fixed: a guest's path never becomes part of a URL).
pub const RELAYED_PATH: &str = "x-kiln-guest-path";

/// Whether a guest's metadata path may be relayed: absolute, of the characters
/// metadata paths use, and with no `.` or `..` segment.
pub fn relayable_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 1024
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
        && path.split('/').all(|seg| seg != "." && seg != "..")
}

/// The metadata service of one instance: every request on it is that instance's.
pub fn router(
    cloud: Arc<Cloud>,
    tokens: Arc<Tokens>,
    limits: Arc<crate::limits::GuestLimits>,
    instance_id: String,
) -> Router {
    Router::new().fallback(handle).with_state(Guest {
        cloud,
        tokens,
        limits,
        instance_id,
        known: Default::default(),
        marked: Default::default(),
    })
}

async fn handle(State(g): State<Guest>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if !g.limits.allow(crate::limits::Service::Metadata, &g.instance_id) {
        // EC2 answers a throttled metadata request with 429.
        return text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let Some(known) = g.known().await else { return not_found() };
    let instance = &known.instance;
    if instance.http_endpoint == kiln_types::HttpEndpoint::Disabled {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    let path = uri.path().to_owned();
    if method == Method::PUT {
        if path.trim_end_matches('/') != "/latest/api/token" {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        if headers.contains_key("x-forwarded-for") {
            return text(StatusCode::FORBIDDEN, "Forbidden");
        }
        let ttl = headers.get(TTL_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
            return text(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let token = g.tokens.issue(&instance.id, ttl);
        return (StatusCode::OK, [("content-type", "text/plain"), (TTL_HEADER, ttl.to_string().as_str())], token)
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) if !g.tokens.valid(t, &instance.id) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        None if instance.http_tokens == kiln_types::HttpTokens::Required => {
            return text(StatusCode::UNAUTHORIZED, "Unauthorized")
        }
        _ => {}
    }
    let mark = known.generation + 1;
    if instance.ready_at.is_none() && g.marked.swap(mark, std::sync::atomic::Ordering::SeqCst) != mark {
        let (cloud, id) = (g.cloud.clone(), instance.id.clone());
        let _ = tokio::task::spawn_blocking(move || cloud.mark_ready(&id)).await;
    }
    answer(&known, &path)
}

/// The metadata leaves of one instance, by path under `meta-data/`.
fn meta_data(cloud: &Cloud, i: &Instance) -> BTreeMap<String, String> {
    let scope = Scope { account: i.account_id.clone(), region: i.region.clone() };
    let names = cloud.security_group_names(&scope).unwrap_or_default();
    let subnet_cidr = i
        .subnet_id
        .parse()
        .ok()
        .and_then(|id| cloud.subnets(&scope, &[id]).ok())
        .and_then(|s| s.first().map(|s| s.cidr.clone()))
        .unwrap_or_default();
    let vpc_cidr = i
        .vpc_id
        .parse()
        .ok()
        .and_then(|id| cloud.vpcs(&scope, &[id]).ok())
        .and_then(|v| v.first().map(|v| v.cidr.clone()))
        .unwrap_or_default();
    let hostname = kiln_types::region::private_dns(&i.region, &i.private_ip);
    let mac = instance_mac(&i.id);
    let zone_id =
        cloud.region(&i.region).and_then(|r| r.zone(&i.availability_zone).map(|z| z.id.clone())).unwrap_or_default();
    let group_names: Vec<String> = i.groups.iter().filter_map(|g| names.get(g).cloned()).collect();
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_owned(), v);
    };
    put("ami-id", i.image_id.clone());
    put("ami-launch-index", i.launch_index.to_string());
    put("ami-manifest-path", "(unknown)".into());
    put("hostname", hostname.clone());
    put("local-hostname", hostname.clone());
    put("local-ipv4", i.private_ip.clone());
    if let Some(public) = &i.public_ip {
        let name = kiln_types::region::public_dns(&i.region, public);
        put("public-ipv4", public.clone());
        put("public-hostname", name.clone());
        put(&format!("network/interfaces/macs/{mac}/public-ipv4s"), public.clone());
        put(&format!("network/interfaces/macs/{mac}/public-hostname"), name);
    }
    put("instance-id", i.id.clone());
    put("instance-type", i.instance_type.clone());
    put("instance-life-cycle", "on-demand".into());
    put("mac", mac.clone());
    put("reservation-id", i.reservation_id.clone());
    put("security-groups", group_names.join("\n"));
    put("placement/availability-zone", i.availability_zone.clone());
    put("placement/availability-zone-id", zone_id);
    put("placement/region", i.region.clone());
    let root_short = i.root_device_name.trim_start_matches("/dev/").to_owned();
    put("block-device-mapping/ami", root_short.clone());
    put("block-device-mapping/root", i.root_device_name.clone());
    if let Ok(vols) = cloud.instance_volumes(&i.id) {
        for (n, v) in vols.iter().filter(|v| v.device_name.as_deref() != Some(i.root_device_name.as_str())).enumerate()
        {
            put(
                &format!("block-device-mapping/ebs{}", n + 1),
                v.device_name.clone().unwrap_or_default().trim_start_matches("/dev/").to_owned(),
            );
        }
    }
    if let Some(k) = &i.public_key {
        put("public-keys/0/openssh-key", format!("{k}\n"));
    }
    // Every interface by MAC: the primary one, then those attached (device order).
    let mut nics = vec![kiln_control::interfaces::primary(i)];
    let mut attached: Vec<_> = cloud
        .attached_interfaces(&scope)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.record.attachment.as_ref().is_some_and(|a| a.instance_id == i.id))
        .collect();
    attached.sort_by_key(|n| n.record.attachment.as_ref().map(|a| a.device_index));
    nics.extend(attached);
    for n in &nics {
        let r = &n.record;
        let cidr = if r.subnet_id == i.subnet_id {
            subnet_cidr.clone()
        } else {
            r.subnet_id
                .parse()
                .ok()
                .and_then(|id| cloud.subnets(&scope, &[id]).ok())
                .and_then(|s| s.first().map(|s| s.cidr.clone()))
                .unwrap_or_default()
        };
        let nic = format!("network/interfaces/macs/{}", n.mac);
        let device = r.attachment.as_ref().map_or(0, |a| a.device_index);
        let names: Vec<String> = r.groups.iter().filter_map(|g| names.get(g).cloned()).collect();
        put(&format!("{nic}/device-number"), device.to_string());
        put(&format!("{nic}/interface-id"), r.id.clone());
        put(&format!("{nic}/local-hostname"), kiln_types::region::private_dns(&i.region, &r.private_ip));
        put(&format!("{nic}/local-ipv4s"), r.private_ip.clone());
        put(&format!("{nic}/mac"), n.mac.clone());
        put(&format!("{nic}/owner-id"), i.account_id.clone());
        put(&format!("{nic}/security-group-ids"), r.groups.join("\n"));
        put(&format!("{nic}/security-groups"), names.join("\n"));
        put(&format!("{nic}/subnet-id"), r.subnet_id.clone());
        put(&format!("{nic}/subnet-ipv4-cidr-block"), cidr);
        put(&format!("{nic}/vpc-id"), r.vpc_id.clone());
        put(&format!("{nic}/vpc-ipv4-cidr-block"), vpc_cidr.clone());
        put(&format!("{nic}/vpc-ipv4-cidr-blocks"), vpc_cidr.clone());
    }
    put("services/domain", "amazonaws.com".into());
    put("services/partition", "aws".into());
    m
}

/// What a path under `meta-data/` answers: a leaf's value, or a directory's listing.
/// Pure, and fuzzed (`fuzz/fuzz_targets/imds.rs`): any path, none panics.
pub fn resolve(leaves: &BTreeMap<String, String>, meta: &str) -> Option<String> {
    leaves.get(meta).cloned().or_else(|| listing(leaves, meta))
}

/// The children of `dir` (with a trailing `/` on directories), or None if empty.
fn listing(leaves: &BTreeMap<String, String>, dir: &str) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for k in leaves.keys() {
        let rest =
            if dir.is_empty() { Some(k.as_str()) } else { k.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) };
        if let Some(rest) = rest {
            let entry = match rest.split_once('/') {
                Some((d, _)) => format!("{d}/"),
                None => rest.to_owned(),
            };
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    (!out.is_empty()).then(|| out.join("\n"))
}

fn identity_document(i: &Instance) -> String {
    serde_json::json!({
        "accountId": i.account_id,
        "architecture": i.architecture,
        "availabilityZone": i.availability_zone,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": i.image_id,
        "instanceId": i.id,
        "instanceType": i.instance_type,
        "kernelId": null,
        "pendingTime": i.launch_time,
        "privateIp": i.private_ip,
        "ramdiskId": null,
        "region": i.region,
        "version": "2017-09-30"
    })
    .to_string()
}

fn answer(known: &Known, path: &str) -> Response {
    let i = &known.instance;
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return text(StatusCode::OK, VERSIONS.join("\n"));
    }
    let (version, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    if !VERSIONS.contains(&version) {
        return not_found();
    }
    let rest = rest.trim_end_matches('/');
    match rest {
        "" => text(StatusCode::OK, "dynamic\nmeta-data\nuser-data"),
        "user-data" => match &i.user_data {
            Some(d) if !d.is_empty() => {
                (StatusCode::OK, [("content-type", "application/octet-stream")], d.clone()).into_response()
            }
            _ => not_found(),
        },
        "dynamic" => text(StatusCode::OK, "instance-identity/"),
        "dynamic/instance-identity" => text(StatusCode::OK, "document"),
        "dynamic/instance-identity/document" => {
            (StatusCode::OK, [("content-type", "application/json")], identity_document(i)).into_response()
        }
        _ => {
            let Some(meta) = rest.strip_prefix("meta-data").map(|m| m.trim_start_matches('/')) else {
                return not_found();
            };
            let leaves = &known.leaves;
            if meta == "public-keys" {
                return match (&i.key_name, &i.public_key) {
                    (Some(name), Some(_)) => text(StatusCode::OK, format!("0={name}")),
                    _ => not_found(),
                };
            }
            if meta == "public-keys/0" && i.public_key.is_some() {
                return text(StatusCode::OK, "openssh-key");
            }
            match resolve(leaves, meta) {
                Some(l) => text(StatusCode::OK, l),
                None => not_found(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path a joined host relays cannot climb out of the instance's metadata: it is
    /// sent in a header, and anything but a plain absolute path is refused.
    #[test]
    fn only_plain_metadata_paths_are_relayed() {
        for ok in ["/", "/latest/meta-data/", "/latest/api/token", "/2021-03-23/user-data", "/latest/meta-data/a.b"] {
            assert!(relayable_path(ok), "{ok}");
        }
        for bad in ["", "latest", "/../i-0123", "/latest/../../renew", "/%2e%2e/x", "/a\\b", "/./x", "/x/..", "/a?b"] {
            assert!(!relayable_path(bad), "{bad}");
        }
    }

    #[test]
    fn listings_show_children_once_with_slashes() {
        let mut m = BTreeMap::new();
        m.insert("instance-id".to_owned(), "i-1".to_owned());
        m.insert("placement/region".to_owned(), "us-east-1".to_owned());
        m.insert("placement/availability-zone".to_owned(), "us-east-1a".to_owned());
        assert_eq!(listing(&m, "").as_deref(), Some("instance-id\nplacement/"));
        assert_eq!(listing(&m, "placement").as_deref(), Some("availability-zone\nregion"));
        assert_eq!(listing(&m, "nope"), None);
    }

    #[test]
    fn tokens_belong_to_one_instance_and_expire() {
        let t = Tokens::default();
        let tok = t.issue("i-1", 60);
        assert!(t.valid(&tok, "i-1"));
        assert!(!t.valid(&tok, "i-2"), "another guest's token is refused");
        assert!(!t.valid("forged", "i-1"));
        let short = t.issue("i-1", 0);
        assert!(!t.valid(&short, "i-1"), "an expired token is refused");
    }

    #[test]
    fn one_guest_cannot_grow_the_token_map() {
        let t = Tokens::default();
        let other = t.issue("i-2", 600);
        let first = t.issue("i-1", 60);
        let mut last = String::new();
        for _ in 0..1000 {
            last = t.issue("i-1", 600);
        }
        let map = t.0.lock().expect("lock");
        assert_eq!(map.values().filter(|(i, _)| i == "i-1").count(), TOKENS_PER_INSTANCE);
        drop(map);
        assert!(!t.valid(&first, "i-1"), "the oldest token was retired");
        assert!(t.valid(&last, "i-1"));
        assert!(t.valid(&other, "i-2"), "another guest's tokens are untouched");
    }
}
