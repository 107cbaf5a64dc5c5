//! Which server does this host's work: the holder of the host-work lease in the shared
//! database. Every server answers the API; only the holder runs the reconciler (and so
//! every workflow step), imports, Quick Start builds and the guests' services. The
//! holder renews the lease every `RENEW`; when it stops (it died or hangs), another
//! takes the lease once it lapses, after `TTL`. A server restarted on the machine of a
//! holder whose process is gone takes its lease at once: on SQLite that is always the
//! case (one server has the data directory by construction), on a shared store it
//! spares the guests a lapse's wait without DHCP and metadata answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_control::leases::HOST_WORK;
use kiln_control::Cloud;

/// A lease lasts this long unless renewed.
const TTL: Duration = Duration::from_secs(10);
/// How often the holder renews it (and a standby tries for it).
const RENEW: Duration = Duration::from_secs(2);

/// This server's standing.
pub(crate) struct Lead {
    /// `MACHINE:PID:LISTEN`: the process, where to find it, and how to tell it died.
    me: String,
    /// Leading until this many milliseconds after `epoch` (0: not leading). A lease
    /// renewal that fails leaves it to run out on its own, a little before the lease does.
    until_ms: AtomicU64,
    epoch: Instant,
    said: AtomicBool,
    /// Whether the clean-up a new holder owes (`serve::take_over`) is done for the
    /// lease held now: the host's work waits for it. A renewal that keeps the lease
    /// without a gap keeps it done (the clean-up would remove this server's own work
    /// in progress).
    settled: AtomicBool,
}

/// This machine, as the lease's holder names it: `KILN_MACHINE_ID` if set (machines
/// cloned with one machine ID and one hostname must set it), else its hostname and its
/// systemd/D-Bus machine ID (two machines may share a hostname; a cloned machine that
/// kept its image's machine ID usually has another hostname). Servers that find the same
/// name see one another's processes in `/proc`.
fn machine() -> String {
    if let Some(id) = std::env::var("KILN_MACHINE_ID").ok().filter(|id| !id.trim().is_empty()) {
        return id.trim().replace(':', "");
    }
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|id| id.trim().to_owned())
        .find(|id| !id.is_empty())
        .unwrap_or_default();
    format!("{host}/{id}").replace(':', "")
}

impl Lead {
    pub(crate) fn new(listen: std::net::SocketAddr) -> Self {
        Self {
            me: format!("{}:{}:{listen}", machine(), std::process::id()),
            until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            said: AtomicBool::new(false),
            settled: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether this server holds the lease now.
    pub(crate) fn holds(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Acquire)
    }

    /// Whether this server does the host's work now: it holds the lease and has
    /// cleaned up after the previous holder.
    pub(crate) fn leads(&self) -> bool {
        self.holds() && self.settled.load(Ordering::Acquire)
    }

    /// Whether the lease is held but the previous holder's leftovers are not yet
    /// cleaned up (then `settle` must run before the host's work starts).
    pub(crate) fn unsettled(&self) -> bool {
        self.holds() && !self.settled.load(Ordering::Acquire)
    }

    /// Marks the clean-up done: the host's work may start.
    pub(crate) fn settle(&self) {
        self.settled.store(true, Ordering::Release);
    }

    /// Takes or renews the lease; takes it from a holder on this machine whose process
    /// is gone without waiting for it to lapse.
    pub(crate) fn renew(&self, cloud: &Cloud) {
        let asked = self.now_ms();
        let held = match cloud.hold_lease(HOST_WORK, &self.me, TTL) {
            Ok(true) => true,
            Ok(false) => self.take_from_the_dead(cloud),
            Err(e) => {
                // Not known to be lost: leading runs out on its own unless a renewal
                // succeeds first, and a renewal in time keeps the clean-up done.
                tracing::warn!(error = %e, "cannot renew the host-work lease");
                kiln_control::metrics::leading(self.holds());
                return;
            }
        };
        kiln_control::metrics::leading(held);
        if held && !self.holds() {
            // Held again after a gap, or for the first time: another server may have
            // had it meanwhile, so its leftovers are cleaned up before the work starts.
            self.settled.store(false, Ordering::Release);
        }
        if held {
            // Counted from before the renewal was asked, and a second short of the
            // lease, so this server stops before another may start.
            self.until_ms.store(asked + (TTL - Duration::from_secs(1)).as_millis() as u64, Ordering::Release);
            if !self.said.swap(true, Ordering::AcqRel) {
                tracing::info!(holder = %self.me, "this server does the host's work");
            }
        } else {
            self.until_ms.store(0, Ordering::Release);
            self.settled.store(false, Ordering::Release);
            if self.said.swap(false, Ordering::AcqRel) {
                tracing::warn!(holder = %self.me, "another server has the host's work now");
            }
        }
    }

    fn take_from_the_dead(&self, cloud: &Cloud) -> bool {
        let Ok((leases, _)) = cloud.leases() else { return false };
        let Some(lease) = leases.into_iter().find(|l| l.name == HOST_WORK) else { return false };
        let mut parts = lease.holder.splitn(3, ':');
        let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else {
            return false;
        };
        // `me` starts with this machine's name, worked out once in `new`.
        let mine = self.me.split(':').next().unwrap_or_default();
        if host != mine || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return false;
        }
        tracing::info!(previous = %lease.holder, "the host-work lease's holder on this machine is gone");
        cloud.take_lease_from(HOST_WORK, &lease.holder, &self.me, TTL).unwrap_or(false)
    }

    /// Sleeps until the next renewal (or until the server stops), then renews.
    pub(crate) fn sleep_renewing(&self, cloud: &Cloud, stop: &AtomicBool) {
        let until = Instant::now() + RENEW;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !stop.load(Ordering::Relaxed) {
            self.renew(cloud);
        }
    }

    /// Gives the lease up (a clean stop), so another server takes it at once.
    pub(crate) fn release(&self, cloud: &Cloud) {
        self.until_ms.store(0, Ordering::Release);
        self.settled.store(false, Ordering::Release);
        if let Err(e) = cloud.release_lease(HOST_WORK, &self.me) {
            tracing::warn!(error = %e, "cannot release the host-work lease; it will lapse");
        }
    }
}

/// Runs the guests' services (DHCP, DNS, metadata) while this server leads, and stops
/// them when it no longer does or the server stops.
pub(crate) async fn guest_services(cloud: Arc<Cloud>, lead: Arc<Lead>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        while !lead.leads() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(kiln_server::guests::run(cloud.clone(), rx));
        let stopping = loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if !lead.leads() {
                        break false;
                    }
                }
                _ = stop.changed() => break true,
            }
        };
        let _ = tx.send(true);
        let _ = task.await;
        if stopping || *stop.borrow() {
            return;
        }
    }
}
