//! DHCP options sets: what a VPC's DHCP tells its instances (domain name, name
//! servers, NTP servers), associated with VPCs (or `default`, no set), and checked as
//! EC2 checks them.

use std::net::Ipv4Addr;

use kiln_store::vpcs::{self, DhcpOptions};
use kiln_store::Scope;
use kiln_types::ResourceKind;

use crate::{narrow, tags, Cloud, Error, Result};

/// The keys EC2 takes, and how many values each may have.
const KEYS: [(&str, usize); 6] = [
    ("domain-name", 1),
    ("domain-name-servers", 4),
    ("ntp-servers", 4),
    ("netbios-name-servers", 4),
    ("netbios-node-type", 1),
    ("ipv6-address-preferred-lease-time", 1),
];

/// The name servers' value that means the VPC's own resolver.
pub const AMAZON_PROVIDED_DNS: &str = "AmazonProvidedDNS";

fn invalid(key: &str, value: &str) -> Error {
    Error::InvalidParameterValue(format!("Value ({value}) for parameter {key} is invalid."))
}

fn check(values: &[(String, Vec<String>)]) -> Result<()> {
    if values.is_empty() {
        return Err(Error::InvalidParameterValue("A DHCP options set needs at least one option".into()));
    }
    for (key, vals) in values {
        let Some((_, max)) = KEYS.iter().find(|(k, _)| k == key) else {
            return Err(Error::InvalidParameterValue(format!(
                "Value ({key}) for parameter key is invalid. Valid keys: {}",
                KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )));
        };
        if vals.is_empty() || vals.len() > *max {
            return Err(Error::InvalidParameterValue(format!("{key} takes 1 to {max} values")));
        }
        for v in vals {
            let ok = match key.as_str() {
                "domain-name" => {
                    !v.is_empty()
                        && v.split(' ').all(|d| d.split('.').all(|l| !l.is_empty() && l.len() <= 63))
                        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-. ".contains(&b))
                }
                "domain-name-servers" => v == AMAZON_PROVIDED_DNS || v.parse::<Ipv4Addr>().is_ok(),
                "ntp-servers" | "netbios-name-servers" => v.parse::<Ipv4Addr>().is_ok(),
                "netbios-node-type" => ["1", "2", "4", "8"].contains(&v.as_str()),
                _ => v.parse::<u32>().is_ok(),
            };
            if !ok {
                return Err(invalid(key, v));
            }
        }
    }
    Ok(())
}

/// What DHCP hands out from a set: the domain name, and the name servers with
/// AmazonProvidedDNS as the VPC's resolver address.
pub fn lease_values(set: &DhcpOptions, vpc_dns: Option<Ipv4Addr>) -> (Option<String>, Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
    let get = |k: &str| set.values.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let domain = get("domain-name").into_iter().next();
    let servers = get("domain-name-servers")
        .iter()
        .filter_map(|v| if v == AMAZON_PROVIDED_DNS { vpc_dns } else { v.parse().ok() })
        .collect();
    let ntp = get("ntp-servers").iter().filter_map(|v| v.parse().ok()).collect();
    (domain, servers, ntp)
}

impl Cloud {
    pub fn create_dhcp_options(
        &self,
        scope: &Scope,
        values: Vec<(String, Vec<String>)>,
        tags: &[(String, String)],
    ) -> Result<DhcpOptions> {
        check(&values)?;
        let set = DhcpOptions { id: ResourceKind::DhcpOptions.generate(), values, created_at: kiln_store::now() };
        self.store.write(|tx| {
            vpcs::insert_dhcp_options(tx, scope, &set)?;
            tags::put_all(tx, scope, ResourceKind::DhcpOptions, &set.id, tags)?;
            Ok(set)
        })
    }

    pub fn dhcp_options(&self, scope: &Scope, ids: &[impl AsRef<str>]) -> Result<Vec<DhcpOptions>> {
        let all = self.store.read(|c| Ok::<_, Error>(vpcs::dhcp_options(c, scope)?))?;
        narrow(all, ids, ResourceKind::DhcpOptions, |d| &d.id)
    }

    pub fn delete_dhcp_options(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            if !vpcs::dhcp_options(tx, scope)?.iter().any(|d| d.id == id) {
                return Err(Error::not_found(ResourceKind::DhcpOptions, id));
            }
            if let Some(v) = vpcs::list_vpcs(tx, scope)?.iter().find(|v| v.dhcp_options_id.as_deref() == Some(id)) {
                return Err(Error::DependencyViolation(format!(
                    "The dhcpOptions '{id}' has dependencies and cannot be deleted: {} uses it.",
                    v.id
                )));
            }
            vpcs::delete_dhcp_options(tx, id)?;
            Ok(())
        })
    }

    /// Associates a set with a VPC (`None`: EC2's `default`, no set). Instances see
    /// it when they renew their lease.
    pub fn associate_dhcp_options(&self, scope: &Scope, id: Option<&str>, vpc_id: &str) -> Result<()> {
        self.store.write(|tx| {
            if let Some(id) = id {
                if !vpcs::dhcp_options(tx, scope)?.iter().any(|d| d.id == id) {
                    return Err(Error::not_found(ResourceKind::DhcpOptions, id));
                }
            }
            crate::vpcs::find_vpc(tx, scope, vpc_id)?;
            vpcs::set_dhcp_options(tx, vpc_id, id)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        values.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect()
    }

    #[test]
    fn options_are_checked_as_ec2_does() {
        assert!(
            check(&set(&[("domain-name", &["corp.example"]), ("domain-name-servers", &["AmazonProvidedDNS"])])).is_ok()
        );
        assert!(check(&set(&[("domain-name-servers", &["10.0.0.2", "banana"])])).is_err());
        assert!(check(&set(&[("colour", &["blue"])])).is_err());
        assert!(check(&set(&[("netbios-node-type", &["3"])])).is_err());
        assert!(check(&set(&[("ntp-servers", &["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5"])])).is_err());
        assert!(check(&[]).is_err());
    }

    #[test]
    fn amazon_provided_dns_is_the_vpc_resolver() {
        let d = DhcpOptions {
            id: "dopt-1".into(),
            values: set(&[
                ("domain-name", &["corp.example"]),
                ("domain-name-servers", &["AmazonProvidedDNS", "9.9.9.9"]),
            ]),
            created_at: String::new(),
        };
        let (domain, servers, ntp) = lease_values(&d, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(domain.as_deref(), Some("corp.example"));
        assert_eq!(servers, [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(9, 9, 9, 9)]);
        assert!(ntp.is_empty());
    }
}
