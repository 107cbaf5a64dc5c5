//! `kiln agent`: joins this host to a control plane with a one-time token, then keeps
//! it known there with a heartbeat carrying its report (zone, architectures,
//! accelerator, vCPUs, memory, QEMU version, where it takes calls), over HTTP/2 and
//! mutual TLS. With `--listen` it also serves the control plane's calls of the host
//! interface there (`kiln_server::host_endpoint`). The host's key, certificate and the
//! CA it trusts live in DATA_DIR/agent (0600); the certificate is renewed when a third
//! of its life is left, at once with `--renew`, and at start when it does not name the
//! host as a server (issued before the control plane's calls existed).
//!
//! Joining trusts the control plane's CA only if its SHA-256 is the one the token
//! carries, so a token read by someone else cannot point the host at another CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use kiln_agent_api::{Enrolled, HostAgent, HostId, HostReport, HostState, JoinRequest};
use kiln_types::Architecture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credentials::write_private;

/// What the agent keeps about its membership, beside its key and certificate.
#[derive(Serialize, Deserialize)]
struct Membership {
    host_id: HostId,
    zone: String,
    control: String,
    /// Unix seconds: when the certificate was issued and when it lapses.
    issued_at: u64,
    expires_at: u64,
}

/// The certificates the control plane issues last this long.
const LIFETIME: Duration = kiln_control::hosts::HOST_CERT_LIFETIME;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Accepts any server certificate: used once, to fetch the CA whose hash the token
/// pins (the hash is checked before anything is trusted or sent).
#[derive(Debug)]
struct PinnedLater(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for PinnedLater {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An HTTP/2 client trusting `ca_pem` only, presenting `identity` (cert, key PEM) if
/// given: the builder, for callers to add their own options (`remote_host.rs` names
/// the server it expects at an address).
pub(crate) fn client_builder(
    ca_pem: Option<&str>,
    identity: Option<(&str, &str)>,
) -> Result<reqwest::blocking::ClientBuilder> {
    Ok(reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls_config(ca_pem, identity)?)
        .http2_prior_knowledge())
}

/// The TLS set-up of a client of the agents' channel: trusting `ca_pem` (or pinned
/// later, when joining), presenting `identity` (cert, key PEM) if given, HTTP/2.
fn tls_config(ca_pem: Option<&str>, identity: Option<(&str, &str)>) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(pem.as_bytes())?)?;
            builder.with_root_certificates(roots)
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedLater(provider()))),
    };
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// An HTTP/2 client trusting `ca_pem` only, presenting `identity` (cert, key PEM) if
/// given.
fn client(ca_pem: Option<&str>, identity: Option<(&str, &str)>) -> Result<reqwest::blocking::Client> {
    Ok(client_builder(ca_pem, identity)?.timeout(Duration::from_secs(15)).build()?)
}

/// The control plane's store, as a joined host fetches layers from it: each opening
/// is a `GET /v1/layers/FILE` from a byte on, with the host's current certificate.
struct StoreLayers {
    files: Files,
    control: String,
}

impl kiln_agent_api::LayerSource for StoreLayers {
    fn open(
        &self,
        file: &kiln_agent_api::StorePath,
        from: u64,
    ) -> std::result::Result<Box<dyn std::io::Read + Send>, kiln_agent_api::AgentError> {
        let failed = |e: &dyn std::fmt::Display| {
            kiln_agent_api::AgentError::Failed(format!("fetching {file} from the store at {}: {e}", self.control))
        };
        let (ca, cert, key) = (self.files.read("ca.pem"), self.files.read("cert.pem"), self.files.read("key.pem"));
        let (ca, cert, key) =
            (ca.map_err(|e| failed(&e))?, cert.map_err(|e| failed(&e))?, key.map_err(|e| failed(&e))?);
        // Each read may wait 30 s; the transfer as a whole as long as it takes.
        let client = client_builder(Some(&ca), Some((&cert, &key)))
            .and_then(|b| Ok(b.connect_timeout(Duration::from_secs(10)).timeout(Duration::from_secs(30)).build()?))
            .map_err(|e| failed(&e))?;
        let r = client
            .get(format!("{}/v1/layers/{file}", self.control))
            .header(reqwest::header::RANGE, format!("bytes={from}-"))
            .send()
            .map_err(|e| failed(&e))?;
        match r.status() {
            reqwest::StatusCode::PARTIAL_CONTENT => Ok(Box::new(r)),
            reqwest::StatusCode::OK if from == 0 => Ok(Box::new(r)),
            status => Err(failed(&format!("{status}: {}", r.text().unwrap_or_default()))),
        }
    }
}

/// Relays the metadata requests of the guests this host runs to the control plane,
/// on a thread of its own, until the process ends.
fn relay_guests(host: &Arc<kiln_agent::LocalAgent>, dir: &Path, control: &str) -> Result<()> {
    let files = Files { dir: dir.join("agent") };
    // One client (and connection) while the host's certificate stays the same.
    let held: std::sync::Mutex<Option<(SystemTime, reqwest::Client)>> = std::sync::Mutex::new(None);
    let client: crate::host_guests::ClientMaker = Arc::new(move || {
        let issued = std::fs::metadata(files.dir.join("cert.pem"))?.modified()?;
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        match &*held {
            Some((at, c)) if *at == issued => Ok(c.clone()),
            _ => {
                let c = async_host_client(&files)?;
                *held = Some((issued, c.clone()));
                Ok(c)
            }
        }
    });
    let (host, control) = (Arc::clone(host), control.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kiln-agent-guests")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("kiln-agent-guests".into())
        .spawn(move || runtime.block_on(crate::host_guests::run(host, control, client)))?;
    Ok(())
}

/// An async client of the control plane with this host's current certificate (read
/// afresh each time, so a renewal is used at once).
fn async_host_client(files: &Files) -> Result<reqwest::Client> {
    let config = tls_config(Some(&files.read("ca.pem")?), Some((&files.read("cert.pem")?, &files.read("key.pem")?)))?;
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .http2_prior_knowledge()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .build()?)
}

/// A fresh key (PEM) and a signing request for it.
fn key_and_csr() -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "kiln agent");
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

/// What this host is, as it reports it.
fn report(host: &kiln_agent::LocalAgent, endpoint: Option<SocketAddr>) -> HostReport {
    let on_path = |program: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
    };
    HostReport {
        hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        architectures: Architecture::ALL.into_iter().filter(|a| on_path(kiln_agent::qemu::program(*a))).collect(),
        info: host.host_info(),
        usage: host.usage(),
        endpoint,
    }
}

/// The answer's body as `T`, or what the control plane said.
fn answer<T: serde::de::DeserializeOwned>(r: reqwest::blocking::Response) -> Result<T> {
    let status = r.status();
    let body = r.text()?;
    if !status.is_success() {
        bail!("the control plane refused ({status}): {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("the control plane's answer: {body}"))
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn read(&self, name: &str) -> Result<String> {
        std::fs::read_to_string(self.path(name)).with_context(|| format!("reading {}", self.path(name).display()))
    }
    fn membership(&self) -> Result<Option<Membership>> {
        match std::fs::read_to_string(self.path("host.json")) {
            Ok(s) => Ok(Some(serde_json::from_str(&s)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    /// Keeps a new key and certificate (the key first: a certificate is never kept
    /// without its key).
    fn keep(&self, m: &Membership, key_pem: &str, e: &Enrolled) -> Result<()> {
        write_private(&self.path("key.pem"), key_pem)?;
        write_private(&self.path("cert.pem"), &e.cert_pem)?;
        write_private(&self.path("host.json"), &serde_json::to_string_pretty(m)?)
    }
}

fn join(
    files: &Files,
    control: &str,
    token: &str,
    host: &kiln_agent::LocalAgent,
    endpoint: Option<SocketAddr>,
) -> Result<Membership> {
    let mut parts = token.trim().splitn(3, '.');
    let (Some("K1"), Some(ca_hash), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("that is not a join token (K1.<CA hash>.<secret>): make one with `kiln host join-token --zone ZONE`");
    };
    let ca_pem = client(None, None)?
        .get(format!("{control}/v1/ca"))
        .send()
        .with_context(|| format!("reaching the control plane at {control}"))?
        .error_for_status()?
        .text()?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("the control plane's CA")?;
    if hex::encode(Sha256::digest(&der)) != ca_hash {
        bail!(
            "the control plane at {control} shows a CA whose hash is not the token's: not joining (is the URL right?)"
        );
    }
    let (key_pem, csr_pem) = key_and_csr()?;
    let req = JoinRequest { secret: secret.to_owned(), report: report(host, endpoint), csr_pem };
    let enrolled: Enrolled =
        answer(client(Some(&ca_pem), None)?.post(format!("{control}/v1/join")).json(&req).send()?)?;
    let m = Membership {
        host_id: enrolled.host_id.clone(),
        zone: enrolled.zone.clone(),
        control: control.to_owned(),
        issued_at: now(),
        expires_at: now() + LIFETIME.as_secs(),
    };
    std::fs::create_dir_all(&files.dir).with_context(|| format!("creating {}", files.dir.display()))?;
    write_private(&files.path("ca.pem"), &ca_pem)?;
    files.keep(&m, &key_pem, &enrolled)?;
    println!("Joined the control plane at {control} as host {} in zone {}.", m.host_id, m.zone);
    Ok(m)
}

/// A client presenting the host's current certificate.
fn host_client(files: &Files) -> Result<reqwest::blocking::Client> {
    client(Some(&files.read("ca.pem")?), Some((&files.read("cert.pem")?, &files.read("key.pem")?)))
}

fn renew(files: &Files, m: &mut Membership) -> Result<()> {
    let c = host_client(files)?;
    let (key_pem, csr_pem) = key_and_csr()?;
    let enrolled: Enrolled =
        answer(c.post(format!("{}/v1/renew", m.control)).json(&serde_json::json!({ "csr_pem": csr_pem })).send()?)?;
    m.issued_at = now();
    m.expires_at = now() + LIFETIME.as_secs();
    files.keep(m, &key_pem, &enrolled)?;
    println!("Renewed host {}'s certificate (valid until Unix time {}).", m.host_id, m.expires_at);
    Ok(())
}

#[derive(Deserialize)]
struct Beat {
    state: HostState,
}

/// Whether the host's certificate names it as a server for the control plane's calls
/// (`host_server_name`); certificates issued before those calls existed do not.
fn names_host_as_server(files: &Files, host: &HostId) -> Result<bool> {
    let pem = files.read("cert.pem")?;
    let (_, cert) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).context("the host's certificate")?;
    let cert = cert.parse_x509().context("the host's certificate")?;
    let name = kiln_control::hosts::host_server_name(host);
    Ok(cert.subject_alternative_name().ok().flatten().is_some_and(|san| {
        san.value
            .general_names
            .iter()
            .any(|n| matches!(n, x509_parser::extensions::GeneralName::DNSName(d) if *d == name))
    }))
}

/// The TLS set-up of the host's endpoint from the host's current key and certificate.
fn endpoint_tls(files: &Files) -> Result<tokio_rustls::TlsAcceptor> {
    Ok(kiln_server::host_endpoint::tls_acceptor(
        &files.read("ca.pem")?,
        &files.read("cert.pem")?,
        &files.read("key.pem")?,
    )?)
}

/// Serves the control plane's calls of `host` on `addr`, on a thread of its own, until
/// the process ends.
fn serve_calls(
    addr: SocketAddr,
    acceptor: kiln_server::host_endpoint::Acceptor,
    host: Arc<dyn HostAgent>,
) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("listening on {addr} for the control plane's calls (--listen)"))?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("kiln-agent-calls")
        .enable_all()
        .build()?;
    std::thread::Builder::new().name("kiln-agent-endpoint".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => kiln_server::host_endpoint::serve(l, acceptor, host).await,
                Err(e) => tracing::error!(error = %e, "the host's endpoint could not start"),
            }
        });
    })?;
    Ok(())
}

/// How the host runs guests: the accelerator (`auto`, `kvm`, `tcg`), the network
/// (`auto`, `vpc`, `user`, as `kiln serve --network`), whether instances' public
/// traffic is NATed out, and how many bytes of layer copies it keeps unused.
pub(crate) struct Guests<'a> {
    pub(crate) accel: &'a str,
    pub(crate) network: &'a str,
    pub(crate) egress_nat: bool,
    pub(crate) layer_room: u64,
}

/// The cloud's network settings a host's VPC networking needs.
#[derive(Deserialize)]
struct CloudNetwork {
    public_ip_pool: ipnet::Ipv4Net,
}

/// The host's credentials for the control plane's volume servers, as QEMU's TLS wants
/// them (`kiln_agent_api::NBD_CLIENT_TLS_DIR`): links to the CA, certificate and key it
/// joined with, so that a renewed certificate is the one the next VM presents.
fn nbd_client_tls(dir: &Path) -> Result<()> {
    let tls = dir.join(kiln_agent_api::NBD_CLIENT_TLS_DIR);
    std::fs::create_dir_all(&tls).with_context(|| format!("making {}", tls.display()))?;
    for (link, target) in
        [("ca-cert.pem", "../ca.pem"), ("client-cert.pem", "../cert.pem"), ("client-key.pem", "../key.pem")]
    {
        let path = tls.join(link);
        if std::fs::read_link(&path).ok().as_deref() != Some(Path::new(target)) {
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(target, &path).with_context(|| format!("linking {}", path.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn run(
    dir: &Path,
    control: &str,
    token: Option<&str>,
    force_renew: bool,
    guests: &Guests<'_>,
    listen: Option<SocketAddr>,
) -> Result<()> {
    let control = control.trim_end_matches('/');
    if listen.is_some_and(|a| a.ip().is_unspecified() || a.port() == 0) {
        bail!("--listen must be the address and port the control plane reaches this host at, not 0.0.0.0 or port 0");
    }
    if !control.starts_with("https://") {
        bail!("--control must be the control plane's agents' endpoint, https://HOST:PORT (kiln serve --agent-listen)");
    }
    let files = Files { dir: dir.join("agent") };
    let forced = match guests.accel {
        "kvm" => Some(kiln_agent_api::Accel::Kvm),
        "tcg" => Some(kiln_agent_api::Accel::Tcg),
        _ => None,
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "kiln".into());
    let layers = StoreLayers { files: Files { dir: dir.join("agent") }, control: control.to_owned() };
    // What it reports while it joins; its network is set up once it is a member.
    let host = kiln_agent::LocalAgent::new(dir.to_path_buf(), exe, forced)
        .with_layer_source(Arc::new(layers))
        .with_layer_room(guests.layer_room);
    let mut m = match (files.membership()?, token) {
        (Some(m), _) if m.control == control => m,
        (Some(m), _) => bail!(
            "{} already belongs to the control plane at {} as {}: use another --data-dir",
            dir.display(),
            m.control,
            m.host_id
        ),
        (None, Some(token)) => join(&files, control, token, &host, listen)?,
        (None, None) => bail!("this host has not joined yet: pass --token (from `kiln host join-token --zone ZONE`)"),
    };
    if force_renew {
        renew(&files, &mut m)?;
    } else if !names_host_as_server(&files, &m.host_id)? {
        // Needed only to serve --listen: without it, a control plane that is down now
        // does not keep the agent from starting (it renews at the next third of life).
        match renew(&files, &mut m) {
            Ok(()) => {}
            Err(e) if listen.is_some() => {
                bail!("serving --listen needs a certificate naming this host, and renewing it failed: {e:#}")
            }
            Err(e) => tracing::warn!(error = %e, "renewing the host's certificate (to name it as a server) failed"),
        }
    }
    nbd_client_tls(dir)?;
    host.resume_relays();
    if listen.is_some() && !names_host_as_server(&files, &m.host_id)? {
        bail!(
            "the control plane at {control} issued a certificate that does not name this host as a server: \
             upgrade it before serving --listen"
        );
    }
    let vpc = match guests.network {
        "vpc" => true,
        "user" => false,
        _ => crate::host::can_network(),
    };
    let host = Arc::new(if vpc {
        let cloud: CloudNetwork = answer(host_client(&files)?.get(format!("{control}/v1/network")).send()?)
            .context("asking the control plane for its public address pool")?;
        host.with_network(kiln_agent::net::NetConfig {
            tag: kiln_agent::net::net_tag(dir),
            public_pool: (cloud.public_ip_pool.network(), cloud.public_ip_pool.prefix_len()),
            egress_nat: guests.egress_nat,
            underlay: listen.and_then(|a| match a.ip() {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            }),
        })
    } else {
        host
    });
    println!(
        "Host {} gives guests {}.",
        m.host_id,
        if vpc { "VPC networking" } else { "QEMU's user-mode network (no VPC, no public addresses)" }
    );
    relay_guests(&host, dir, control)?;
    let acceptor = match listen {
        Some(addr) => {
            let acceptor = Arc::new(RwLock::new(endpoint_tls(&files)?));
            serve_calls(addr, Arc::clone(&acceptor), Arc::clone(&host) as Arc<dyn HostAgent>)?;
            println!("Host {} takes the control plane's calls on {addr}.", m.host_id);
            Some(acceptor)
        }
        None => None,
    };
    println!("Host {} (zone {}) reports to {control} every {} s.", m.host_id, m.zone, HEARTBEAT.as_secs());
    let mut last_state = None;
    // One client (and connection) for the heartbeats, made again after a renewal.
    let mut c = host_client(&files)?;
    loop {
        if now() > m.issued_at + (m.expires_at - m.issued_at) * 2 / 3 {
            match renew(&files, &mut m) {
                Ok(()) => {
                    c = host_client(&files)?;
                    if let Some(acceptor) = &acceptor {
                        match endpoint_tls(&files) {
                            Ok(fresh) => *acceptor.write().unwrap_or_else(PoisonError::into_inner) = fresh,
                            Err(e) => tracing::warn!(
                                error = %e,
                                "the renewed certificate could not be served; the endpoint keeps the one before"
                            ),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the host's certificate failed; trying again at the next beat")
                }
            }
        }
        match c.post(format!("{control}/v1/heartbeat")).json(&report(&host, listen)).send() {
            Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN => {
                bail!("the control plane refused this host: {}", r.text().unwrap_or_default())
            }
            Ok(r) => match answer::<Beat>(r) {
                Ok(beat) => {
                    if last_state != Some(beat.state) {
                        println!("Host {} is {}.", m.host_id, beat.state.as_str());
                        last_state = Some(beat.state);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a heartbeat was refused"),
            },
            Err(e) => tracing::warn!(error = %anyhow!(e), "the control plane did not answer a heartbeat"),
        }
        std::thread::sleep(HEARTBEAT);
    }
}

const HEARTBEAT: Duration = kiln_control::hosts::HEARTBEAT_EVERY;
