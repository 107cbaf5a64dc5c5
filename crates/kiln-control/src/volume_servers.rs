//! Volumes of instances on joined hosts stay in the store, as EBS volumes stay off
//! the hypervisor: the control plane's own host serves each joined host the volumes of
//! its instances that have a VM, over NBD with TLS (`HostAgent::serve_volumes`), and
//! the host's VMs attach them from there. So a host that dies takes no volume with
//! it, an instance can start again on another host of its zone, and a volume moves
//! between hosts without a copy. A volume stops being served to a host the pass after
//! its instance leaves it (stopped, moved or terminated), which cuts off a VM left
//! running there.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock, PoisonError};

use kiln_agent_api::{AgentError, Disk, HostId, Served, ServerTls, StorePath};
use kiln_store::hosts::Host;
use kiln_store::instances::Instance;
use kiln_store::volumes::Volume;

use crate::{Cloud, Error, Result};

/// How long an unchanged set of exports goes without asking its server again (which
/// also starts a server that died).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Where volumes are served from, and each joined host's server.
#[derive(Default)]
pub(crate) struct VolumeServers {
    /// The address joined hosts reach this host at (the agents' endpoint's).
    ip: OnceLock<IpAddr>,
    /// Each joined host's server, while it serves something.
    addrs: Mutex<HashMap<String, SocketAddr>>,
    /// What each host's server was last made to serve (and whether kept while it
    /// serves nothing), and when: an unchanged set is not asked for again within
    /// `RECHECK` (a pass is every half second).
    applied: Mutex<HashMap<String, Applied>>,
    /// The servers' TLS identity and when it was made (made again after a week).
    tls: Mutex<Option<(std::time::Instant, ServerTls)>>,
}

/// What a host's server was last made to do.
struct Applied {
    exports: Vec<Disk>,
    keep: bool,
    at: std::time::Instant,
}

impl Cloud {
    /// Serves joined hosts' volumes on `ip` (`kiln serve --agent-listen`'s address).
    pub fn serve_volumes_on(&self, ip: IpAddr) {
        let _ = self.volume_servers.ip.set(ip);
    }

    /// The address joined hosts reach this server at, if it has a specific one.
    pub(crate) fn agents_ip(&self) -> Option<IpAddr> {
        self.volume_servers.ip.get().copied()
    }

    fn volume_server_tls(&self, ip: IpAddr) -> std::result::Result<ServerTls, AgentError> {
        let mut kept = self.volume_servers.tls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made, tls)) = kept.as_ref() {
            if made.elapsed() < std::time::Duration::from_secs(7 * 24 * 3600) {
                return Ok(tls.clone());
            }
        }
        let id = self.agent_endpoint_identity(&[ip.to_string()]).map_err(|e| AgentError::Failed(e.to_string()))?;
        let tls = ServerTls { ca_pem: id.ca_pem, cert_pem: id.cert_pem, key_pem: id.key_pem };
        *kept = Some((std::time::Instant::now(), tls.clone()));
        Ok(tls)
    }

    /// Makes each joined host's volume server serve exactly the volumes attached to
    /// its instances that have a VM (`all` and `attached` are this pass's reads).
    pub(crate) fn sync_volume_servers(&self, all: &[Instance], attached: &[Volume], hosts: &[Host]) -> Result<()> {
        let mut first_error = None;
        let now = crate::leases::now_ms();
        for h in hosts {
            // A live host that takes launches keeps its server while it serves nothing.
            let keep = crate::placement::is_live(h, now) && h.state != kiln_agent_api::HostState::Retired;
            if let Err(e) = self.serve_host(&h.host_id, all, attached, &[], keep) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `sync_volume_servers` for one host, from the store now; `settled`: layers whose
    /// VM went on to its new top though their snapshot is not yet marked made (served
    /// read-only, sealed, from now on).
    pub(crate) fn sync_volume_server_of(&self, host: &str, settled: &[StorePath]) -> Result<()> {
        let host: HostId =
            host.parse().map_err(|e: AgentError| Error::Store(kiln_store::StoreError::Corrupt(e.to_string())))?;
        let (all, attached) = self.store.read(|c| {
            let vols: Vec<Volume> =
                kiln_store::volumes::all(c)?.into_iter().filter(|v| v.instance_id.is_some()).collect();
            Ok::<_, Error>((kiln_store::instances::all(c)?, vols))
        })?;
        self.serve_host(&host, &all, &attached, settled, true)
    }

    fn serve_host(
        &self,
        host: &HostId,
        all: &[Instance],
        attached: &[Volume],
        settled: &[StorePath],
        keep: bool,
    ) -> Result<()> {
        let mine: Vec<&str> = all
            .iter()
            .filter(|i| i.host_id.as_deref() == Some(host.as_str()) && crate::network::has_port(i.state))
            .map(|i| i.id.as_str())
            .collect();
        let exports: Vec<Disk> = attached
            .iter()
            // Not yet made: served once its file exists.
            .filter(|v| v.state != kiln_types::VolumeState::Creating)
            .filter(|v| v.instance_id.as_deref().is_some_and(|i| mine.contains(&i)))
            .map(|v| self.served_disk(v, settled))
            .collect::<Result<_>>()?;
        let Some(ip) = self.volume_servers.ip.get().copied() else {
            if exports.is_empty() {
                return Ok(());
            }
            return Err(Error::host(
                format!("serving volumes to host {host}"),
                "this server has no address hosts reach it at: give kiln serve --agent-listen a specific address, not 0.0.0.0",
            ));
        };
        {
            let applied = self.volume_servers.applied.lock().unwrap_or_else(PoisonError::into_inner);
            if applied
                .get(host.as_str())
                .is_some_and(|a| a.exports == exports && a.keep == keep && a.at.elapsed() < RECHECK)
            {
                return Ok(());
            }
        }
        let served = self.agent()?.serve_volumes(host, ip, &|| self.volume_server_tls(ip), &exports, keep);
        let mut applied = self.volume_servers.applied.lock().unwrap_or_else(PoisonError::into_inner);
        match &served {
            Ok(_) => applied.insert(host.to_string(), Applied { exports, keep, at: std::time::Instant::now() }),
            Err(_) => applied.remove(host.as_str()),
        };
        drop(applied);
        let mut addrs = self.volume_servers.addrs.lock().unwrap_or_else(PoisonError::into_inner);
        match served {
            Ok(Some(addr)) => {
                addrs.insert(host.to_string(), addr);
                Ok(())
            }
            Ok(None) => {
                addrs.remove(host.as_str());
                Ok(())
            }
            // Its server may serve the others: the address stays while it is known.
            Err(e) => Err(Error::host(format!("serving volumes to host {host}"), e)),
        }
    }

    /// A volume as a joined host's disk: its file and the layers under it, which its
    /// server exports (the host reads the layers from its own copies where it has
    /// them).
    fn served_disk(&self, v: &Volume, settled: &[StorePath]) -> Result<Disk> {
        let chain = self.chain(v)?;
        // The nearest layer, while its snapshot is being made, may still be written by
        // the VM (until it goes on to its new top).
        let settling = chain.first().filter(|(f, frozen)| !frozen && !settled.contains(f)).map(|(f, _)| f.clone());
        Ok(Disk { below: chain.into_iter().map(|(f, _)| f).collect(), settling, ..crate::reconcile::disk(v)? })
    }

    /// The disks `i`'s VM should have (`vols`, root first, but those being detached):
    /// on a joined host, each served from the store over the layers under it.
    pub(crate) fn disks_for(&self, i: &Instance, vols: &[Volume]) -> Result<Vec<Disk>> {
        let Some(h) = i.host_id.as_deref() else { return crate::reconcile::wanted_disks(vols) };
        let addr =
            self.volume_servers.addrs.lock().unwrap_or_else(PoisonError::into_inner).get(h).copied().ok_or_else(
                || Error::host(format!("serving {}'s volumes to host {h}", i.id), "its volume server is not up yet"),
            )?;
        let mut disks = crate::reconcile::wanted_disks(vols)?;
        for d in &mut disks {
            if let Some(v) = vols.iter().find(|v| v.id == d.volume_id.as_str()) {
                d.below = self.below(v)?;
            }
            d.served = Some(Served { addr, export: d.volume_id.clone() });
        }
        Ok(disks)
    }
}
