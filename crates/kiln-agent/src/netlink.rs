//! Links, addresses, routes and neighbours over rtnetlink, in the network namespace of
//! the thread that opens the connection: what every reconciler pass asks of each VPC
//! (ports up, host routes, permanent neighbour entries, public routes) without forking
//! `ip` or parsing its text. Making a tap and a namespace stay with `ip` (a tap is an
//! ioctl on /dev/net/tun, which netlink cannot do, and a namespace is a bind mount);
//! they happen once per port and VPC.
//!
//! rtnetlink is asynchronous; the agent is not. Each `Netlink` owns a current-thread
//! runtime on the thread that made it, which must be a plain thread (never a runtime's
//! worker): `in_netns` and `on_host` give it one.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt as _;
use kiln_agent_api::AgentError;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

fn fail(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::Failed(format!("netlink: {what}: {e}"))
}

/// A netlink connection in the calling thread's namespace.
pub(crate) struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

/// One link as netlink lists it.
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
}

/// A host route: destination/prefix on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostRoute {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub oif: u32,
}

impl Netlink {
    pub fn here() -> Result<Self, AgentError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| fail("starting its runtime", e))?;
        let handle = rt.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| fail("opening a socket", e))?;
            tokio::spawn(connection);
            Ok::<_, AgentError>(handle)
        })?;
        Ok(Self { rt, handle })
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<Link>, AgentError> {
        self.rt.block_on(async {
            let mut stream = self.handle.link().get().execute();
            let mut out = Vec::new();
            while let Some(msg) = stream.try_next().await.map_err(|e| fail("listing links", e))? {
                let name = msg.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                });
                if let Some(name) = name {
                    out.push(Link { index: msg.header.index, name, up: msg.header.flags.contains(LinkFlags::Up) });
                }
            }
            Ok(out)
        })
    }

    pub fn index(&self, name: &str) -> Result<Option<u32>, AgentError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name).map(|l| l.index))
    }

    pub fn set_up(&self, index: u32) -> Result<(), AgentError> {
        self.rt.block_on(async {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(|e| fail("bringing a link up", e))
        })
    }

    pub fn set_mac(&self, index: u32, mac: [u8; 6]) -> Result<(), AgentError> {
        self.rt.block_on(async {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).address(mac.to_vec()).build())
                .execute()
                .await
                .map_err(|e| fail("setting a MAC address", e))
        })
    }

    pub fn delete_link(&self, index: u32) -> Result<(), AgentError> {
        self.rt
            .block_on(async { self.handle.link().del(index).execute().await.map_err(|e| fail("deleting a link", e)) })
    }

    /// Puts `addr/prefix` on a link (already there is fine).
    pub fn replace_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), AgentError> {
        self.rt.block_on(async {
            self.handle
                .address()
                .add(index, IpAddr::V4(addr), prefix)
                .replace()
                .execute()
                .await
                .map_err(|e| fail("adding an address", e))
        })
    }

    /// `dst/prefix dev oif`, with `src` as the source the host prefers, or through
    /// `via` taken as on the link; replaces a route to the same place.
    pub fn replace_route(
        &self,
        route: HostRoute,
        src: Option<Ipv4Addr>,
        via: Option<Ipv4Addr>,
    ) -> Result<(), AgentError> {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.dst, route.prefix)
            .output_interface(route.oif);
        b = match via {
            Some(gw) => b.gateway(gw).onlink(),
            None => b.scope(RouteScope::Link),
        };
        if let Some(src) = src {
            b = b.pref_source(src);
        }
        self.rt.block_on(async {
            self.handle.route().add(b.build()).replace().execute().await.map_err(|e| fail("setting a route", e))
        })
    }

    /// An `unreachable` route for `dst/prefix`: nothing under it leaves by the default
    /// route (more specific routes still win). `present` false removes it.
    pub fn unreachable(&self, dst: Ipv4Addr, prefix: u8, present: bool) -> Result<(), AgentError> {
        let msg =
            RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst, prefix).kind(RouteType::Unreachable).build();
        self.rt.block_on(async {
            if present {
                self.handle.route().add(msg).replace().execute().await.map_err(|e| fail("setting a route", e))
            } else {
                match self.handle.route().del(msg).execute().await {
                    Ok(()) => Ok(()),
                    // Already gone.
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_esrch() => Ok(()),
                    Err(e) => Err(fail("deleting a route", e)),
                }
            }
        })
    }

    /// The main table's IPv4 routes out of `oif` with a destination (not the default).
    pub fn routes_on(&self, oif: u32) -> Result<Vec<(HostRoute, RouteMessage)>, AgentError> {
        self.rt.block_on(async {
            let mut stream = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
            let mut out = Vec::new();
            while let Some(msg) = stream.try_next().await.map_err(|e| fail("listing routes", e))? {
                // Only the main table's unicast routes: a dump holds the local table too,
                // whose routes for the link's own address must never be touched.
                if msg.header.table != RouteHeader::RT_TABLE_MAIN || msg.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut dst = None;
                let mut out_if = None;
                for a in &msg.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some(*d),
                        RouteAttribute::Oif(i) => out_if = Some(*i),
                        _ => {}
                    }
                }
                if let (Some(dst), Some(i)) = (dst, out_if) {
                    if i == oif {
                        let prefix = msg.header.destination_prefix_length;
                        out.push((HostRoute { dst, prefix, oif }, msg));
                    }
                }
            }
            Ok(out)
        })
    }

    pub fn delete_route(&self, route: RouteMessage) -> Result<(), AgentError> {
        self.rt
            .block_on(async { self.handle.route().del(route).execute().await.map_err(|e| fail("deleting a route", e)) })
    }

    /// A permanent neighbour entry: `ip` is at `mac` on the link.
    pub fn replace_neighbour(&self, index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), AgentError> {
        self.rt.block_on(async {
            self.handle
                .neighbours()
                .add(index, IpAddr::V4(ip))
                .link_layer_address(&mac)
                .replace()
                .execute()
                .await
                .map_err(|e| fail("setting a neighbour", e))
        })
    }
}

/// Runs `f` on a plain thread in the host's namespace (a netlink runtime may not be
/// started on a thread that already runs one).
/// ESRCH, what the kernel answers for a route that is not there.
const fn libc_esrch() -> i32 {
    3
}

pub(crate) fn on_host<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}
