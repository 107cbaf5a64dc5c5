//! Per-instance rate limits for the services guests talk to (DNS, DHCP, metadata), so
//! a guest that floods one of them is slowed alone and the API, the reconciler and
//! other guests go on. One token bucket per instance and service (governor's keyed
//! limiter), sized after EC2's own: 1024 packets a second per interface for DNS and
//! the metadata service, and a few a second for DHCP, which a guest needs once.

use std::num::NonZeroU32;

use governor::{Quota, RateLimiter};

type Keyed = governor::RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    governor::clock::DefaultClock,
    governor::middleware::NoOpMiddleware,
>;

/// A guest-facing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Dns,
    Dhcp,
    Metadata,
}

/// The limiters of every guest-facing service.
pub struct GuestLimits {
    dns: Keyed,
    dhcp: Keyed,
    metadata: Keyed,
}

fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Default for GuestLimits {
    fn default() -> Self {
        Self::new(1024, 10, 1024)
    }
}

impl GuestLimits {
    /// Limits of `dns`, `dhcp` and `metadata` requests a second per instance (each
    /// also the burst allowed).
    pub fn new(dns: u32, dhcp: u32, metadata: u32) -> Self {
        Self {
            dns: RateLimiter::hashmap(per_second(dns)),
            dhcp: RateLimiter::hashmap(per_second(dhcp)),
            metadata: RateLimiter::hashmap(per_second(metadata)),
        }
    }

    /// Whether `key` (an instance, or a VPC's peer address for DNS) may be answered now.
    pub fn allow(&self, service: Service, key: &str) -> bool {
        let limiter = match service {
            Service::Dns => &self.dns,
            Service::Dhcp => &self.dhcp,
            Service::Metadata => &self.metadata,
        };
        let ok = limiter.check_key(&key.to_owned()).is_ok();
        if limiter.len() > 4096 {
            // Keys of instances gone: forget the full buckets.
            limiter.retain_recent();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_guest_is_limited_alone() {
        let l = GuestLimits::new(5, 1, 5);
        let allowed = (0..100).filter(|_| l.allow(Service::Dns, "i-flood")).count();
        assert_eq!(allowed, 5, "the burst, then nothing until tokens come back");
        assert!(l.allow(Service::Dns, "i-quiet"), "another guest is untouched");
        assert!(l.allow(Service::Metadata, "i-flood"), "each service has its own bucket");
        assert!(l.allow(Service::Dhcp, "i-flood"));
        assert!(!l.allow(Service::Dhcp, "i-flood"));
    }
}
