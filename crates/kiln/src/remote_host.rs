//! The control plane's end of the channel to a joined host's agent: `HostCall`s sent
//! over HTTP/2 and mutual TLS to the address the host reported, presenting the control
//! plane's certificate and trusting only a certificate of the hosts' CA that names
//! this host (`host_server_name`), so another host at that address cannot answer.

use std::net::SocketAddr;
use std::time::Duration;

use kiln_agent_api::{
    AgentError, Disk, HostAgent, HostCall, HostId, HostInfo, Layer, LayersReady, Nic, StorePath, TapId, VmSpec,
    VpcNetwork,
};
use kiln_control::hosts::{host_server_name, Identity};
use kiln_types::{InstanceId, NetworkInterfaceId, VolumeId, VpcId};
use serde::de::DeserializeOwned;

/// A joined host's agent, called over the network.
pub(crate) struct RemoteHost {
    id: HostId,
    endpoint: SocketAddr,
    url: String,
    client: reqwest::blocking::Client,
}

impl RemoteHost {
    /// The agent of host `id`, serving at `endpoint`, called with `identity` (the
    /// control plane's client certificate).
    pub(crate) fn new(id: &HostId, endpoint: SocketAddr, identity: &Identity) -> Result<Self, AgentError> {
        let name = host_server_name(id);
        let client =
            crate::agent::client_builder(Some(&identity.ca_pem), Some((&identity.cert_pem, &identity.key_pem)))
                .map_err(|e| AgentError::Failed(format!("the control plane's TLS client: {e:#}")))?
                // The host's name is what its certificate must show; its address is where
                // it said it serves.
                .resolve(&name, endpoint)
                .connect_timeout(Duration::from_secs(5))
                // Every call answers in seconds (a layer fetch goes on in the background).
                .timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| AgentError::Failed(format!("the control plane's TLS client: {e}")))?;
        Ok(Self { id: id.clone(), endpoint, url: format!("https://{name}:{}/v1/call", endpoint.port()), client })
    }

    /// Makes `call` on the host and decodes its answer as `T` (for the trait's
    /// fallible methods, `Result<_, AgentError>`). A host that does not answer, or
    /// answers with an error status, is `AgentError::Failed` saying which and why.
    pub(crate) fn call<T: DeserializeOwned>(&self, call: &HostCall) -> Result<T, AgentError> {
        let (id, endpoint) = (&self.id, self.endpoint);
        let r = self.client.post(&self.url).json(call).send().map_err(|e| {
            AgentError::Failed(format!(
                "host {id} did not answer at {endpoint}: {} (is `kiln agent --listen {endpoint}` running there?)",
                error_chain(&e)
            ))
        })?;
        let status = r.status();
        let body =
            r.text().map_err(|e| AgentError::Failed(format!("host {id}'s answer was cut off: {}", error_chain(&e))))?;
        if !status.is_success() {
            return Err(AgentError::Failed(format!("host {id} refused the call ({status}): {body}")));
        }
        serde_json::from_str(&body)
            .map_err(|e| AgentError::Failed(format!("host {id} answered with what this kiln cannot read: {e}")))
    }
}

/// How the control plane reaches joined hosts' agents.
pub(crate) fn dialer() -> kiln_control::placement::HostDialer {
    std::sync::Arc::new(|id, endpoint, identity| {
        Ok(std::sync::Arc::new(RemoteHost::new(id, endpoint, identity)?) as std::sync::Arc<dyn HostAgent>)
    })
}

/// `id` as the typed ID a call carries; one that does not parse is refused here, as
/// the host would refuse it.
fn typed<T: std::str::FromStr>(id: &str) -> Result<T, AgentError> {
    id.parse().map_err(|_| AgentError::Refused(format!("'{id}' is not an ID a host call can carry")))
}

impl RemoteHost {
    /// A fallible method's answer: the host's own error, or why it did not answer.
    fn ask<T: DeserializeOwned>(&self, call: HostCall) -> Result<T, AgentError> {
        self.call::<Result<T, AgentError>>(&call)?
    }
}

/// The host interface over the network: every method is one `HostCall`, and a host
/// that does not answer is an error, never a "no".
impl HostAgent for RemoteHost {
    fn info(&self) -> Result<HostInfo, AgentError> {
        self.ask(HostCall::Info)
    }

    fn create_volume(&self, file: &StorePath, backing: Option<&StorePath>, size_gib: u64) -> Result<(), AgentError> {
        self.ask(HostCall::CreateVolume { file: file.clone(), backing: backing.cloned(), size_gib })
    }

    fn fetch_layers(&self, layers: &[Layer]) -> Result<LayersReady, AgentError> {
        self.ask(HostCall::FetchLayers { layers: layers.to_vec() })
    }

    fn delete_volume(&self, file: &StorePath) -> Result<(), AgentError> {
        self.ask(HostCall::DeleteVolume { file: file.clone() })
    }

    fn volume_exists(&self, file: &StorePath) -> Result<bool, AgentError> {
        self.ask(HostCall::VolumeExists { file: file.clone() })
    }

    fn start(&self, spec: &VmSpec) -> Result<(), AgentError> {
        self.ask(HostCall::Start { spec: spec.clone() })
    }

    fn is_running(&self, instance_id: &str) -> Result<bool, AgentError> {
        self.ask(HostCall::IsRunning { instance_id: typed::<InstanceId>(instance_id)? })
    }

    fn powerdown(&self, instance_id: &str) -> Result<(), AgentError> {
        self.ask(HostCall::Powerdown { instance_id: typed(instance_id)? })
    }

    fn reset(&self, instance_id: &str) -> Result<(), AgentError> {
        self.ask(HostCall::Reset { instance_id: typed(instance_id)? })
    }

    fn kill(&self, instance_id: &str) -> Result<(), AgentError> {
        self.ask(HostCall::Kill { instance_id: typed(instance_id)? })
    }

    fn live_snapshot(&self, instance_id: &str, switches: &[(StorePath, StorePath)]) -> Result<(), AgentError> {
        self.ask(HostCall::LiveSnapshot { instance_id: typed(instance_id)?, switches: switches.to_vec() })
    }

    fn switch_served(&self, instance_id: &str, disks: &[Disk]) -> Result<(), AgentError> {
        self.ask(HostCall::SwitchServed { instance_id: typed(instance_id)?, disks: disks.to_vec() })
    }

    fn set_disks(&self, instance_id: &str, disks: &[Disk], force: &[VolumeId]) -> Result<bool, AgentError> {
        self.ask(HostCall::SetDisks { instance_id: typed(instance_id)?, disks: disks.to_vec(), force: force.to_vec() })
    }

    fn drives_on(&self, instance_id: &str, disks: &[Disk]) -> Result<Vec<bool>, AgentError> {
        self.ask(HostCall::DrivesOn { instance_id: typed(instance_id)?, disks: disks.to_vec() })
    }

    fn grow_volume(
        &self,
        volume: &VolumeId,
        file: &StorePath,
        size_gib: u64,
        instance_id: Option<&str>,
    ) -> Result<(), AgentError> {
        let instance_id = instance_id.map(typed).transpose()?;
        self.ask(HostCall::GrowVolume { volume_id: volume.clone(), file: file.clone(), size_gib, instance_id })
    }

    fn console(&self, instance_id: &str, max: usize) -> Result<Vec<u8>, AgentError> {
        self.ask(HostCall::Console { instance_id: typed(instance_id)?, max })
    }

    fn forget(&self, instance_id: &str) -> Result<(), AgentError> {
        self.ask(HostCall::Forget { instance_id: typed(instance_id)? })
    }

    fn running(&self) -> Result<Vec<String>, AgentError> {
        self.ask(HostCall::Running)
    }

    fn vpc_networking(&self) -> Result<bool, AgentError> {
        self.ask(HostCall::VpcNetworking)
    }

    fn apply_network(&self, net: &VpcNetwork) -> Result<(), AgentError> {
        self.ask(HostCall::ApplyNetwork { net: net.clone() })
    }

    fn remove_network(&self, vpc_id: &str) -> Result<(), AgentError> {
        self.ask(HostCall::RemoveNetwork { vpc_id: typed(vpc_id)? })
    }

    fn networks(&self) -> Result<Vec<String>, AgentError> {
        self.ask(HostCall::Networks)
    }

    /// Asked by guest services, which run beside their own host's agent; over the
    /// network a host that does not answer is "not now".
    fn network_id(&self, vpc_id: &str) -> Option<u64> {
        let vpc_id: VpcId = typed(vpc_id).ok()?;
        self.call(&HostCall::NetworkId { vpc_id }).ok()?
    }

    fn tap_id(&self, vpc_id: &str, interface_id: &str) -> Option<TapId> {
        let (vpc_id, interface_id): (VpcId, NetworkInterfaceId) = (typed(vpc_id).ok()?, typed(interface_id).ok()?);
        self.call(&HostCall::TapId { vpc_id, interface_id }).ok()?
    }

    fn set_nics(&self, instance_id: &str, nics: &[Nic]) -> Result<bool, AgentError> {
        self.ask(HostCall::SetNics { instance_id: typed(instance_id)?, nics: nics.to_vec() })
    }
}

/// An error and its causes on one line (reqwest's own message names only the URL).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
