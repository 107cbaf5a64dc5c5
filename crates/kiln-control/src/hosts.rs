//! Hosts that join with `kiln agent`: one-time join tokens, the certificate authority
//! (kept in the store, so every server issues and checks the same certificates), the
//! client certificates hosts authenticate with, heartbeats, the operator's states
//! (drain, cordon, retire) and which zones have a live host.
//!
//! A token reads `K1.<sha256 of the CA certificate>.<secret>`: the agent checks the
//! control plane's CA against the hash before it trusts it (as kubeadm's discovery
//! hash does), and the control plane keeps only the secret's hash.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_agent_api::{Enrolled, HostId, HostReport, HostState, JoinRequest};
use kiln_store::hosts::{self as store, Ca, Host, JoinToken};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use crate::leases::now_ms;
use crate::{Cloud, Error, Result};

/// How long a host's client certificate is valid; agents renew with a third left.
pub const HOST_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long a join token stays usable.
pub const JOIN_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A host is live while its last heartbeat is younger than this (agents beat every
/// `HEARTBEAT_EVERY`).
pub const HOST_LIVE: Duration = Duration::from_secs(15);
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

const TOKEN_PREFIX: &str = "K1";

/// A host as the operator sees it: its row and whether it is live now.
#[derive(Debug, Clone)]
pub struct HostView {
    pub host: Host,
    pub live: bool,
    pub heartbeat_age_ms: i64,
}

/// The SHA-256 of a certificate's DER, in hex: how hosts and the CA are named.
pub fn cert_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The DER of the first certificate in `pem`.
pub fn pem_der(pem: &str) -> Result<Vec<u8>> {
    let p = pem::parse(pem).map_err(|e| Error::Crypto(format!("not a PEM certificate: {e}")))?;
    Ok(p.into_contents())
}

fn crypto(e: rcgen::Error) -> Error {
    Error::Crypto(e.to_string())
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
}

/// The CA's certificate and key, ready to sign.
struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Issuer {
    fn load(ca: &Ca) -> Result<Self> {
        let key = KeyPair::from_pem(&ca.key_pem).map_err(crypto)?;
        let params = CertificateParams::from_ca_cert_pem(&ca.cert_pem).map_err(crypto)?;
        let cert = params.self_signed(&key).map_err(crypto)?;
        Ok(Self { cert, key })
    }

    /// A certificate for `host` on the key in `csr_pem`: its subject is the host ID
    /// whatever the request says, it authenticates the host to the control plane
    /// (client) and the host's agent to the control plane's calls (server, named
    /// `host_server_name`).
    fn client(&self, host: &HostId, csr_pem: &str) -> Result<(String, String, i64)> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::InvalidParameterValue(format!("the certificate signing request is not valid: {e}")))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host.as_str());
        params.subject_alt_names = vec![SanType::DnsName(host_server_name(host).try_into().map_err(crypto)?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, HOST_CERT_LIFETIME);
        csr.params = params;
        let cert = csr.signed_by(&self.cert, &self.key).map_err(crypto)?;
        let expires = now_ms() + HOST_CERT_LIFETIME.as_millis() as i64;
        Ok((cert.pem(), cert_sha256(cert.der()), expires))
    }
}

fn new_ca() -> Result<Ca> {
    let key = KeyPair::generate().map_err(crypto)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "Kiln hosts CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut params, Duration::from_secs(10 * 365 * 24 * 3600));
    let cert = params.self_signed(&key).map_err(crypto)?;
    Ok(Ca { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The subject of the certificate the control plane presents when it calls a host's
/// agent. The CA gives every host certificate the host's ID as its subject, so no host
/// can hold one with this subject and call another host's agent.
pub const CONTROL_SUBJECT: &str = "Kiln control plane";

/// The name a host's agent is known by when the control plane calls it (a SAN of the
/// host's certificate); the control plane connects to the address the host reported
/// and checks the certificate names this, so a host cannot answer for another.
pub fn host_server_name(host: &HostId) -> String {
    format!("{host}.hosts.kiln")
}

/// A certificate and its key (PEM), signed by the hosts' CA: the agents' endpoint's
/// server certificate, or the control plane's client certificate for calling hosts.
#[derive(Clone)]
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Cloud {
    /// The hosts' CA, made on first use (servers starting together keep one).
    fn host_ca(&self) -> Result<Ca> {
        if let Some(ca) = self.store.read(store::ca)? {
            return Ok(ca);
        }
        let made = new_ca()?;
        Ok(self.store.write(|tx| store::put_ca(tx, &made, now_ms()))?)
    }

    /// The CA certificate (PEM) agents trust.
    pub fn host_ca_pem(&self) -> Result<String> {
        Ok(self.host_ca()?.cert_pem)
    }

    /// A fresh certificate for the agents' endpoint naming `names` (IP addresses or DNS
    /// names), signed by the hosts' CA.
    pub fn agent_endpoint_identity(&self, names: &[String]) -> Result<Identity> {
        let ca = self.host_ca()?;
        let issuer = Issuer::load(&ca)?;
        let key = KeyPair::generate().map_err(crypto)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, CONTROL_SUBJECT);
        for n in names {
            params.subject_alt_names.push(match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().map_err(crypto)?),
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, HOST_CERT_LIFETIME);
        let cert = params.signed_by(&key, &issuer.cert, &issuer.key).map_err(crypto)?;
        Ok(Identity { ca_pem: ca.cert_pem, cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A fresh client certificate (subject `CONTROL_SUBJECT`, a day's life) with which
    /// this process calls hosts' agents; made per process, the key never stored.
    pub fn control_client_identity(&self) -> Result<Identity> {
        let ca = self.host_ca()?;
        let issuer = Issuer::load(&ca)?;
        let key = KeyPair::generate().map_err(crypto)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, CONTROL_SUBJECT);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, Duration::from_secs(24 * 3600));
        let cert = params.signed_by(&key, &issuer.cert, &issuer.key).map_err(crypto)?;
        Ok(Identity { ca_pem: ca.cert_pem, cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A one-time token for a host of `zone` to join with.
    pub fn create_join_token(&self, zone: &str) -> Result<String> {
        if !self.regions.iter().any(|r| r.zone(zone).is_some()) {
            return Err(Error::InvalidParameterValue(format!(
                "The zone '{zone}' does not exist in any region this cloud serves"
            )));
        }
        let ca_hash = cert_sha256(&pem_der(&self.host_ca()?.cert_pem)?);
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let token = JoinToken {
            token_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            zone: zone.to_owned(),
            created_at: now,
            expires_at: now + JOIN_TOKEN_LIFETIME.as_millis() as i64,
            used_by: None,
        };
        self.store.write(|tx| store::insert_token(tx, &token))?;
        Ok(format!("{TOKEN_PREFIX}.{ca_hash}.{secret}"))
    }

    /// Joins a host: spends its token (once, whoever else tries it), records the host
    /// and issues its client certificate.
    pub fn join_host(&self, req: &JoinRequest) -> Result<Enrolled> {
        let hash = hex::encode(Sha256::digest(req.secret.as_bytes()));
        let refused = || {
            Error::Unauthorized(
                "The join token is unknown, used or expired: make a new one with `kiln host join-token`".into(),
            )
        };
        let token = self.store.read(|c| store::token(c, &hash))?.ok_or_else(refused)?;
        let now = now_ms();
        if token.used_by.is_some() || token.expires_at < now {
            return Err(refused());
        }
        let issuer = Issuer::load(&self.host_ca()?)?;
        let host_id = HostId::generate();
        let (cert_pem, cert_hash, expires) = issuer.client(&host_id, &req.csr_pem)?;
        let r = stored_report(&req.report);
        let host = Host {
            host_id: host_id.clone(),
            zone: token.zone.clone(),
            hostname: r.hostname,
            state: HostState::Active,
            architectures: r.architectures,
            accel: r.accel,
            cpus: r.cpus,
            memory_mib: r.memory_mib,
            qemu_version: r.qemu_version,
            cert_sha256: cert_hash,
            prev_cert_sha256: None,
            cert_expires_at: expires,
            joined_at: now,
            heartbeat_at: now,
            vms: r.vms,
            vm_resident_mib: r.vm_resident_mib,
            memory_available_mib: r.memory_available_mib,
            endpoint: r.endpoint,
        };
        self.store.write(|tx| {
            if !store::use_token(tx, &hash, &host_id)? {
                return Err(refused());
            }
            store::insert(tx, &host)?;
            Ok(())
        })?;
        tracing::info!(host = %host_id, zone = %token.zone, hostname = %host.hostname, "a host joined");
        Ok(Enrolled { host_id, zone: token.zone, cert_pem })
    }

    /// The host presenting the client certificate whose DER hashes to `cert_sha256`;
    /// a retired host is refused.
    pub fn authenticate_host(&self, cert_sha256: &str) -> Result<Host> {
        match self.store.read(|c| store::by_cert(c, cert_sha256))? {
            Some(h) if h.state != HostState::Retired => Ok(h),
            Some(h) => Err(Error::Unauthorized(format!("Host {} is retired", h.host_id))),
            None => Err(Error::Unauthorized("This certificate belongs to no host of this cloud".into())),
        }
    }

    pub fn host_heartbeat(&self, host: &Host, report: &HostReport, presented_sha256: &str) -> Result<()> {
        let r = stored_report(report);
        Ok(self.store.write(|tx| store::heartbeat(tx, &host.host_id, &r, presented_sha256, now_ms()))?)
    }

    /// A new client certificate for a host, on the key in `csr_pem`; the one it
    /// presented stays valid until it is seen with the new one.
    pub fn renew_host_cert(&self, host: &Host, presented_sha256: &str, csr_pem: &str) -> Result<Enrolled> {
        let issuer = Issuer::load(&self.host_ca()?)?;
        let (cert_pem, hash, expires) = issuer.client(&host.host_id, csr_pem)?;
        self.store.write(|tx| store::renew(tx, &host.host_id, presented_sha256, &hash, expires))?;
        tracing::info!(host = %host.host_id, "a host's certificate was renewed");
        Ok(Enrolled { host_id: host.host_id.clone(), zone: host.zone.clone(), cert_pem })
    }

    /// Every joined host, and whether it is live.
    pub fn hosts(&self) -> Result<Vec<HostView>> {
        let now = now_ms();
        Ok(self
            .store
            .read(store::all)?
            .into_iter()
            .map(|host| {
                let age = now - host.heartbeat_at;
                HostView { live: crate::placement::is_live(&host, now), heartbeat_age_ms: age, host }
            })
            .collect())
    }

    /// Sets a host's state. A host is retired only once no instance is placed on it
    /// (terminated ones aside): their volumes are there.
    pub fn set_host_state(&self, id: &HostId, state: HostState) -> Result<Host> {
        self.store.write(|tx| {
            if state == HostState::Retired {
                let placed: Vec<String> = kiln_store::instances::all(tx)?
                    .into_iter()
                    .filter(|i| i.host_id.as_deref() == Some(id.as_str()))
                    .filter(|i| i.state != kiln_types::InstanceState::Terminated)
                    .map(|i| i.id)
                    .collect();
                if !placed.is_empty() {
                    return Err(Error::IncorrectState(format!(
                        "Host {id} still has instances placed on it ({}): terminate them before retiring it",
                        placed.join(", ")
                    )));
                }
            }
            if !store::set_state(tx, id, state)? {
                return Err(Error::InvalidParameterValue(format!("There is no host {id} in this cloud")));
            }
            store::get(tx, id)?.ok_or_else(|| Error::InvalidParameterValue(format!("There is no host {id}")))
        })
    }

    /// The zones that have joined hosts (retired ones aside), each with whether one of
    /// them is live. A zone without joined hosts is served by this server's own host.
    pub fn zone_liveness(&self) -> Result<BTreeMap<String, bool>> {
        let mut zones = BTreeMap::new();
        for v in self.hosts()? {
            if v.host.state != HostState::Retired {
                *zones.entry(v.host.zone.clone()).or_insert(false) |= v.live;
            }
        }
        Ok(zones)
    }
}

/// A host's report as the store keeps it.
fn stored_report(r: &HostReport) -> store::Report {
    let mib = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    store::Report {
        hostname: r.hostname.clone(),
        architectures: r.architectures.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(","),
        accel: r.info.accel.as_str().to_owned(),
        cpus: i64::from(r.info.cpus),
        memory_mib: mib(r.info.memory_mib),
        qemu_version: r.info.qemu_version.clone(),
        vms: i64::from(r.usage.vms),
        vm_resident_mib: mib(r.usage.vm_resident_mib),
        memory_available_mib: mib(r.usage.memory_available_mib),
        endpoint: r.endpoint.map(|a| a.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::World;
    use kiln_agent_api::{Accel, HostInfo, HostUsage};

    fn csr() -> String {
        let key = KeyPair::generate().expect("key");
        CertificateParams::default().serialize_request(&key).expect("csr").pem().expect("pem")
    }

    fn request(secret: &str) -> JoinRequest {
        JoinRequest {
            secret: secret.to_owned(),
            report: HostReport {
                hostname: "h1".into(),
                architectures: vec![kiln_types::Architecture::X86_64],
                info: HostInfo { accel: Accel::Tcg, cpus: 2, memory_mib: 2048, qemu_version: "7.2".into() },
                usage: HostUsage { vms: 1, vm_resident_mib: 190, memory_available_mib: 1500 },
                endpoint: Some("127.0.0.1:7000".parse().expect("addr")),
            },
            csr_pem: csr(),
        }
    }

    /// The agent's end of the channel: a call as it comes off the wire runs on the host
    /// and answers what the method returned; what could leave the store is refused
    /// when decoded, before the host sees it.
    #[test]
    fn a_host_call_from_the_wire_runs_on_the_host_and_hostile_ones_are_refused() {
        use kiln_agent_api::{HostAgent, HostCall};
        use serde_json::json;
        let w = World::new("host-calls");
        let host: &dyn HostAgent = w.agent.as_ref();
        let wire = |body: &str| -> Result<serde_json::Value, String> {
            let call = serde_json::from_str::<HostCall>(body).map_err(|e| e.to_string())?;
            call.run(host).map_err(|e| e.to_string())
        };
        let made = r#"{"call":"create_volume","file":"volumes/vol-1.qcow2","backing":null,"size_gib":8}"#;
        assert_eq!(wire(made).expect("decoded"), json!({"Ok": null}));
        assert!(w.dir.join("volumes/vol-1.qcow2").exists());
        assert_eq!(
            wire(r#"{"call":"volume_exists","file":"volumes/vol-1.qcow2"}"#).expect("decoded"),
            json!({"Ok": true})
        );
        let reset = r#"{"call":"reset","instance_id":"i-0123456789abcdef0"}"#;
        assert_eq!(wire(reset).expect("decoded"), json!({"Err": {"Failed": "not running"}}));
        assert_eq!(wire(r#"{"call":"running"}"#).expect("decoded"), json!({"Ok": []}));
        assert_eq!(wire(r#"{"call":"info"}"#).expect("decoded")["Ok"]["accel"], json!("Tcg"));
        for hostile in [
            r#"{"call":"delete_volume","file":"../../etc/passwd"}"#,
            r#"{"call":"create_volume","file":"/etc/x","backing":null,"size_gib":1}"#,
            r#"{"call":"kill","instance_id":"../i-0123456789abcdef0"}"#,
            r#"{"call":"remove_network","vpc_id":"vpc-1/../.."}"#,
            r#"{"call":"kill","instance_id":"i-0123456789abcdef0","and":"more"}"#,
            r#"{"call":"format_the_host"}"#,
            // Inside the store but outside what calls may name: the agent's own key.
            r#"{"call":"delete_volume","file":"agent/key.pem"}"#,
            r#"{"call":"volume_exists","file":"instances/x"}"#,
            // Text a nested spec carries into QEMU's command line or a device's name.
            r#"{"call":"set_nics","instance_id":"i-0123456789abcdef0",
                "nics":[{"interface_id":"eni-0123456789abcdef1","mac":"02:00:00:00:00:01,romfile=/etc/shadow"}]}"#,
            r#"{"call":"set_nics","instance_id":"i-0123456789abcdef0",
                "nics":[{"interface_id":"eni-é1","mac":"02:00:00:00:00:01"}]}"#,
            r#"{"call":"apply_network","net":{"vpc_id":"../x","router_addresses":[],"ports":[],"acls":[]}}"#,
            // A layer fetched over the agent's own key, or named by no hash.
            r#"{"call":"fetch_layers","layers":[{"file":"agent/key.pem","backing":null,"size":1,
                "sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]}"#,
            r#"{"call":"fetch_layers","layers":[{"file":"snapshots/s.qcow2","backing":null,"size":1,"sha256":"x"}]}"#,
        ] {
            assert!(wire(hostile).is_err(), "{hostile}");
        }
    }

    #[test]
    fn a_token_joins_one_host_whose_certificate_the_ca_signed_and_renewal_retires_the_old_one() {
        let w = World::new("hosts");
        assert!(w.cloud.create_join_token("nowhere-1z").is_err());
        let token = w.cloud.create_join_token("us-east-1b").expect("token");
        let [prefix, ca_hash, secret] = token.split('.').collect::<Vec<_>>()[..] else { panic!("{token}") };
        assert_eq!(prefix, "K1");
        let ca_pem = w.cloud.host_ca_pem().expect("ca");
        assert_eq!(ca_hash, cert_sha256(&pem_der(&ca_pem).expect("der")));
        assert!(matches!(w.cloud.join_host(&request("not-the-secret")), Err(Error::Unauthorized(_))));

        let enrolled = w.cloud.join_host(&request(secret)).expect("join");
        assert_eq!(enrolled.zone, "us-east-1b");
        assert!(matches!(w.cloud.join_host(&request(secret)), Err(Error::Unauthorized(_))), "spent");
        let (_, cert) = x509_parser::pem::parse_x509_pem(enrolled.cert_pem.as_bytes()).expect("pem");
        let cert = cert.parse_x509().expect("x509");
        let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("pem");
        let ca = ca.parse_x509().expect("x509");
        cert.verify_signature(Some(ca.public_key())).expect("signed by the hosts' CA");
        assert_eq!(cert.subject().to_string(), format!("CN={}", enrolled.host_id));
        // It names the host for the control plane's calls to its agent.
        let san = cert.subject_alternative_name().expect("san").expect("a SAN");
        assert_eq!(format!("{:?}", san.value.general_names), format!("[DNSName(\"{}.hosts.kiln\")]", enrolled.host_id));

        let first = cert_sha256(&pem_der(&enrolled.cert_pem).expect("der"));
        let host = w.cloud.authenticate_host(&first).expect("known");
        assert_eq!(host.host_id, enrolled.host_id);
        assert!(w.cloud.authenticate_host("00").is_err());
        assert_eq!(w.cloud.zone_liveness().expect("zones").get("us-east-1b"), Some(&true));

        // Renewed: both certificates work until the new one is seen, then only it.
        let renewed = w.cloud.renew_host_cert(&host, &first, &csr()).expect("renew");
        let second = cert_sha256(&pem_der(&renewed.cert_pem).expect("der"));
        assert!(w.cloud.authenticate_host(&first).is_ok() && w.cloud.authenticate_host(&second).is_ok());
        let mut busier = request("").report;
        busier.usage = HostUsage { vms: 3, vm_resident_mib: 600, memory_available_mib: 900 };
        w.cloud.host_heartbeat(&host, &busier, &second).expect("beat");
        assert!(w.cloud.authenticate_host(&first).is_err());
        // Each heartbeat's measured use is what the host list shows.
        let [seen] = &w.cloud.hosts().expect("hosts")[..] else { panic!("one host") };
        assert_eq!((seen.host.vms, seen.host.vm_resident_mib, seen.host.memory_available_mib), (3, 600, 900));
        assert_eq!(seen.host.endpoint.as_deref(), Some("127.0.0.1:7000"));

        // Retired: refused, and its zone no longer counts it.
        w.cloud.set_host_state(&host.host_id, HostState::Retired).expect("retire");
        assert!(matches!(w.cloud.authenticate_host(&second), Err(Error::Unauthorized(_))));
        assert_eq!(w.cloud.zone_liveness().expect("zones").get("us-east-1b"), None);
    }
}
