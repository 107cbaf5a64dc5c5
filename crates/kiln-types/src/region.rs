//! Regions and availability zones that a Kiln installation serves.

/// One availability zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub id: String,
}

/// One region with its zones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionConfig {
    pub name: String,
    pub zones: Vec<Zone>,
}

/// The regions served when the operator names none.
pub const DEFAULT_REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];

impl RegionConfig {
    /// A region with three zones `a`, `b`, `c`, whose zone ids follow EC2's
    /// `use1-az1` pattern.
    pub fn with_three_zones(name: &str) -> Self {
        let short = short_name(name);
        let zones = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, letter)| Zone { name: format!("{name}{letter}"), id: format!("{short}-az{}", i + 1) })
            .collect();
        Self { name: name.to_owned(), zones }
    }

    pub fn defaults() -> Vec<RegionConfig> {
        DEFAULT_REGIONS.iter().map(|r| Self::with_three_zones(r)).collect()
    }

    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }
}

/// `us-east-1` → `use1`, `ap-southeast-2` → `apse2`, as EC2's zone ids spell them.
fn short_name(region: &str) -> String {
    let mut out = String::new();
    for part in region.split('-') {
        match part {
            "north" => out.push('n'),
            "south" => out.push('s'),
            "east" => out.push('e'),
            "west" => out.push('w'),
            "central" => out.push('c'),
            "northeast" => out.push_str("ne"),
            "northwest" => out.push_str("nw"),
            "southeast" => out.push_str("se"),
            "southwest" => out.push_str("sw"),
            other => out.push_str(other),
        }
    }
    out
}

/// Whether `name` looks like a region name (`xx-word-N`).
pub fn is_valid_region_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// EC2's host name for a private address: `ip-10-0-0-5`.
pub fn private_host(ip: &str) -> String {
    format!("ip-{}", ip.replace('.', "-"))
}

/// EC2's internal DNS domain of a region.
pub fn internal_domain(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_owned()
    } else {
        format!("{region}.compute.internal")
    }
}

/// EC2's public DNS domain of a region.
pub fn public_domain(region: &str) -> String {
    if region == "us-east-1" {
        "compute-1.amazonaws.com".to_owned()
    } else {
        format!("{region}.compute.amazonaws.com")
    }
}

/// EC2's public DNS name for a public address: `ec2-100-64-0-1.compute-1.amazonaws.com`.
pub fn public_dns(region: &str, ip: &str) -> String {
    format!("ec2-{}.{}", ip.replace('.', "-"), public_domain(region))
}

/// EC2's private DNS name for an address: `ip-10-0-0-5.ec2.internal`.
pub fn private_dns(region: &str, ip: &str) -> String {
    format!("{}.{}", private_host(ip), internal_domain(region))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_follow_ec2() {
        let r = RegionConfig::with_three_zones("us-east-1");
        assert_eq!(r.zones[0].name, "us-east-1a");
        assert_eq!(r.zones[0].id, "use1-az1");
        assert_eq!(RegionConfig::with_three_zones("ap-southeast-2").zones[2].id, "apse2-az3");
        assert!(is_valid_region_name("eu-west-1"));
        assert!(!is_valid_region_name("../etc"));
    }
}
