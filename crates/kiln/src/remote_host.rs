//! The control plane's end of the channel to a joined host's agent: `HostCall`s sent
//! over HTTP/2 and mutual TLS to the address the host reported, presenting the control
//! plane's certificate and trusting only a certificate of the hosts' CA that names
//! this host (`host_server_name`), so another host at that address cannot answer.

use std::net::SocketAddr;
use std::time::Duration;

use kiln_agent_api::{AgentError, HostCall, HostId};
use kiln_control::hosts::{host_server_name, Identity};
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
                .timeout(Duration::from_secs(120))
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
