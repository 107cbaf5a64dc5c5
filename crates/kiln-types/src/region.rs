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
    /// Whether EC2 asks accounts to opt in to this region (those launched since 2019).
    pub opt_in: bool,
}

/// The first region: where the CLI and the operator's profile point by default.
pub const FIRST_REGION: &str = "us-east-1";

/// EC2's public regions: name, zone letters with their zone id numbers, and whether
/// the region needs opting in. Most regions number their zones in letter order; the
/// exceptions (us-west-1, ap-northeast-1, ca-central-1) are written as EC2 shows them.
type CatalogEntry = (&'static str, &'static [(char, u8)], bool);

const CATALOG: &[CatalogEntry] = &[
    ("us-east-1", &[('a', 1), ('b', 2), ('c', 3), ('d', 4), ('e', 5), ('f', 6)], false),
    ("us-east-2", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("us-west-1", &[('b', 1), ('c', 3)], false),
    ("us-west-2", &[('a', 1), ('b', 2), ('c', 3), ('d', 4)], false),
    ("af-south-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-east-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-east-2", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-south-1", &[('a', 1), ('b', 3), ('c', 2)], false),
    ("ap-south-2", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-southeast-1", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("ap-southeast-2", &[('a', 1), ('b', 3), ('c', 2)], false),
    ("ap-southeast-3", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-southeast-4", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-southeast-5", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-southeast-7", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("ap-northeast-1", &[('a', 4), ('c', 1), ('d', 2)], false),
    ("ap-northeast-2", &[('a', 1), ('b', 2), ('c', 3), ('d', 4)], false),
    ("ap-northeast-3", &[('a', 3), ('b', 1), ('c', 2)], false),
    ("ca-central-1", &[('a', 1), ('b', 2), ('d', 4)], false),
    ("ca-west-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("eu-central-1", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("eu-central-2", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("eu-west-1", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("eu-west-2", &[('a', 2), ('b', 3), ('c', 1)], false),
    ("eu-west-3", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("eu-south-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("eu-south-2", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("eu-north-1", &[('a', 1), ('b', 2), ('c', 3)], false),
    ("il-central-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("me-south-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("me-central-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("mx-central-1", &[('a', 1), ('b', 2), ('c', 3)], true),
    ("sa-east-1", &[('a', 1), ('b', 2), ('c', 3)], false),
];

impl RegionConfig {
    /// Every public EC2 region, with its real zones and zone ids.
    pub fn catalog() -> Vec<RegionConfig> {
        CATALOG
            .iter()
            .map(|(name, zones, opt_in)| {
                let short = short_name(name);
                let zones = zones
                    .iter()
                    .map(|(letter, n)| Zone { name: format!("{name}{letter}"), id: format!("{short}-az{n}") })
                    .collect();
                RegionConfig { name: (*name).to_owned(), zones, opt_in: *opt_in }
            })
            .collect()
    }

    /// A region by name: EC2's own from the catalog, or a private one (any name shaped
    /// like a region's) with zones `a`, `b` and `c`. `None` for a malformed name.
    pub fn named(name: &str) -> Option<RegionConfig> {
        if let Some(known) = Self::catalog().into_iter().find(|r| r.name == name) {
            return Some(known);
        }
        is_valid_region_name(name).then(|| Self::with_three_zones(name))
    }

    /// A region with three zones `a`, `b`, `c`, whose zone ids follow EC2's
    /// `use1-az1` pattern.
    pub fn with_three_zones(name: &str) -> Self {
        let short = short_name(name);
        let zones = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, letter)| Zone { name: format!("{name}{letter}"), id: format!("{short}-az{}", i + 1) })
            .collect();
        Self { name: name.to_owned(), zones, opt_in: false }
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

    #[test]
    fn the_catalog_is_ec2s() {
        let all = RegionConfig::catalog();
        assert!(all.len() >= 30);
        let mut names: Vec<_> = all.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a region is listed twice");
        assert!(all.iter().all(|r| is_valid_region_name(&r.name) && !r.zones.is_empty()));
        let named = |n: &str| RegionConfig::named(n).expect("a catalog region");
        let west1 = named("us-west-1");
        assert_eq!(
            west1.zones,
            vec![
                Zone { name: "us-west-1b".into(), id: "usw1-az1".into() },
                Zone { name: "us-west-1c".into(), id: "usw1-az3".into() }
            ]
        );
        assert_eq!(named("ap-northeast-1").zones[0].id, "apne1-az4");
        assert!(named("af-south-1").opt_in);
        assert_eq!(named("il-central-1").zones[0].id, "ilc1-az1");
        let private = named("lab-north-1");
        assert_eq!(private.zones.len(), 3);
        assert!(!private.opt_in);
        assert!(RegionConfig::named("nope").is_none());
    }
}
