//! Placement groups with EC2's rules: a cluster group keeps its instances in one zone,
//! a spread group holds at most seven running instances per zone, a partition group
//! has 1 to 7 partitions and spreads new instances over the emptiest ones unless one
//! is named. On one host every instance shares the hardware anyway; with many hosts
//! the scheduler will also spread over hosts (docs/hosts.md).

use std::collections::HashMap;

use kiln_store::placement_groups::{self as store, Live, Member, PlacementGroup};
use kiln_store::{Connection, Scope};
use kiln_types::{PlacementGroupId, PlacementStrategy, ResourceKind, SpreadLevel};

use crate::{tags, Cloud, Error, Result};

/// EC2's limits: partitions per group, and running instances per zone in a spread group.
pub const MAX_PARTITIONS: i64 = 7;
pub const SPREAD_PER_ZONE: usize = 7;

/// A group as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupRef {
    Name(String),
    Id(PlacementGroupId),
}

/// What CreatePlacementGroup asks for.
#[derive(Debug, Clone, Default)]
pub struct NewGroup {
    pub name: Option<String>,
    pub strategy: Option<PlacementStrategy>,
    pub partition_count: Option<i64>,
    pub spread_level: Option<SpreadLevel>,
    pub tags: Vec<(String, String)>,
}

/// Where a launch into a group may go: the zone it must use (a cluster group's), and
/// each new instance's partition.
#[derive(Debug, Clone)]
pub(crate) struct Seats {
    pub zone: Option<String>,
    group: PlacementGroup,
    live: Vec<Live>,
}

fn find(conn: &Connection, scope: &Scope, r: &GroupRef) -> Result<PlacementGroup> {
    let all = store::list(conn, scope)?;
    let found = match r {
        GroupRef::Name(n) => all.into_iter().find(|g| &g.name == n),
        GroupRef::Id(id) => all.into_iter().find(|g| g.id == id.as_str()),
    };
    found.ok_or_else(|| {
        Error::not_found(
            ResourceKind::PlacementGroup,
            match r {
                GroupRef::Name(n) => n.clone(),
                GroupRef::Id(id) => id.to_string(),
            },
        )
    })
}

/// The host rule for `instance_id` placed again (StartInstances of an instance whose
/// host is away or full): its group's rule from where the group's other instances
/// are on hosts that take instances (a cluster group whose host is gone goes on a
/// host of its own choosing), as for a launch into it, with its own partition; `Any`
/// outside a group.
pub(crate) fn rule_for(conn: &Connection, scope: &Scope, instance_id: &str) -> Result<crate::placement::HostRule> {
    let Some(m) = store::members(conn, scope)?.remove(instance_id) else {
        return Ok(crate::placement::HostRule::Any);
    };
    let Some(group) = store::list(conn, scope)?.into_iter().find(|g| g.id == m.group_id) else {
        return Ok(crate::placement::HostRule::Any);
    };
    let now = crate::leases::now_ms();
    let open: Vec<String> = kiln_store::hosts::all(conn)?
        .into_iter()
        .filter(|h| crate::placement::takes_instances(h, now))
        .map(|h| h.host_id.to_string())
        .collect();
    let live = store::live_members(conn, &group.id)?
        .into_iter()
        .filter(|l| l.instance_id != instance_id && l.host_id.as_ref().is_some_and(|h| open.contains(h)))
        .collect();
    Ok(Seats { zone: None, group, live }.host_rule(&[m.partition_number]))
}

impl Seats {
    /// Reads `r`'s group and its live members for a launch.
    pub(crate) fn of(conn: &Connection, scope: &Scope, r: &GroupRef) -> Result<Self> {
        let group = find(conn, scope, r)?;
        let live = store::live_members(conn, &group.id)?;
        let zone = match group.strategy {
            PlacementStrategy::Cluster => live.first().map(|m| m.availability_zone.clone()),
            _ => None,
        };
        Ok(Self { zone, group, live })
    }

    /// Checks that `count` instances fit in `zone` and gives each its partition
    /// (`requested`, or the emptiest).
    pub(crate) fn seat(&self, zone: &str, count: i64, requested: Option<i64>) -> Result<Vec<Option<i64>>> {
        let g = &self.group;
        if requested.is_some() && g.strategy != PlacementStrategy::Partition {
            return Err(Error::InvalidParameterValue(format!(
                "Placement.PartitionNumber is only for partition placement groups; '{}' is a {} group",
                g.name,
                g.strategy.as_str()
            )));
        }
        match g.strategy {
            PlacementStrategy::Cluster => {
                if let Some(z) = self.zone.as_deref().filter(|z| *z != zone) {
                    return Err(Error::InvalidParameterValue(format!(
                        "The cluster placement group '{}' has its instances in {z}: launch into {z}, not {zone}",
                        g.name
                    )));
                }
                Ok(vec![None; count as usize])
            }
            PlacementStrategy::Spread => {
                let here = self.live.iter().filter(|m| m.availability_zone == zone).count();
                if here + count as usize > SPREAD_PER_ZONE {
                    return Err(Error::InsufficientCapacity(format!(
                        "A spread placement group holds at most {SPREAD_PER_ZONE} running instances per Availability Zone; '{}' has {here} in {zone}. Launch fewer, or into another zone.",
                        g.name
                    )));
                }
                Ok(vec![None; count as usize])
            }
            PlacementStrategy::Partition => {
                let partitions = g.partition_count.unwrap_or(1);
                if let Some(p) = requested {
                    if !(1..=partitions).contains(&p) {
                        return Err(Error::InvalidParameterValue(format!(
                            "Placement.PartitionNumber must be between 1 and {partitions} for the placement group '{}'",
                            g.name
                        )));
                    }
                    return Ok(vec![Some(p); count as usize]);
                }
                let mut load: Vec<i64> = (1..=partitions)
                    .map(|p| self.live.iter().filter(|m| m.partition_number == Some(p)).count() as i64)
                    .collect();
                Ok((0..count)
                    .map(|_| {
                        let (i, _) = load.iter().enumerate().min_by_key(|(_, n)| **n).unwrap_or((0, &0));
                        load[i] += 1;
                        Some(i as i64 + 1)
                    })
                    .collect())
            }
        }
    }

    /// Which joined hosts the group's new instances may go to: a spread group's each
    /// on a host none of its instances is on, a cluster group's all on one host (its
    /// instances' host, if it has any there), a partition group's each on a host no
    /// other partition of the group is on (`partitions`: each new instance's, from
    /// `seat`).
    pub(crate) fn host_rule(&self, partitions: &[Option<i64>]) -> crate::placement::HostRule {
        use crate::placement::HostRule;
        let hosts = self.live.iter().filter_map(|m| m.host_id.clone());
        match self.group.strategy {
            PlacementStrategy::Spread => HostRule::Apart(hosts.collect()),
            PlacementStrategy::Cluster => HostRule::Together(hosts.into_iter().next()),
            PlacementStrategy::Partition => HostRule::Partitioned {
                partitions: partitions.to_vec(),
                held: self.live.iter().filter_map(|m| Some((m.host_id.clone()?, m.partition_number?))).collect(),
            },
        }
    }

    /// Whether each new instance's partition is chosen before its host (a partition
    /// group: its partitions are kept to separate hosts).
    pub(crate) fn partitioned(&self) -> bool {
        self.group.strategy == PlacementStrategy::Partition
    }

    /// Records the new instance as the group's.
    pub(crate) fn join(&self, conn: &Connection, instance_id: &str, partition: Option<i64>) -> Result<()> {
        store::add_member(
            conn,
            &Member {
                instance_id: instance_id.to_owned(),
                group_id: self.group.id.clone(),
                partition_number: partition,
            },
        )?;
        Ok(())
    }
}

impl Cloud {
    pub fn create_placement_group(&self, scope: &Scope, r: &NewGroup) -> Result<PlacementGroup> {
        let strategy = r
            .strategy
            .ok_or_else(|| Error::MissingParameter("The request must contain the parameter Strategy".into()))?;
        if r.partition_count.is_some() && strategy != PlacementStrategy::Partition {
            return Err(Error::ParameterCombination("PartitionCount is only valid with the partition strategy".into()));
        }
        if r.spread_level.is_some() && strategy != PlacementStrategy::Spread {
            return Err(Error::ParameterCombination("SpreadLevel is only valid with the spread strategy".into()));
        }
        let partition_count = match strategy {
            PlacementStrategy::Partition => {
                let n = r.partition_count.unwrap_or(2);
                if !(1..=MAX_PARTITIONS).contains(&n) {
                    return Err(Error::InvalidParameterValue(format!(
                        "PartitionCount must be between 1 and {MAX_PARTITIONS}, not {n}"
                    )));
                }
                Some(n)
            }
            _ => None,
        };
        let id = ResourceKind::PlacementGroup.generate();
        let name = r.name.clone().unwrap_or_else(|| id.clone());
        if name.is_empty() || name.len() > 255 || !name.is_ascii() {
            return Err(Error::InvalidParameterValue(format!(
                "Value ({name}) for parameter GroupName is invalid. Names are 1 to 255 ASCII characters."
            )));
        }
        let group = PlacementGroup {
            id: id.clone(),
            name: name.clone(),
            strategy,
            partition_count,
            spread_level: match strategy {
                PlacementStrategy::Spread => Some(r.spread_level.unwrap_or(SpreadLevel::Rack)),
                _ => None,
            },
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| {
            if !store::insert(tx, scope, &group)? {
                return Err(Error::Duplicate { kind: ResourceKind::PlacementGroup, name: name.clone() });
            }
            tags::put_all(tx, scope, ResourceKind::PlacementGroup, &id, &r.tags)?;
            Ok(group.clone())
        })
    }

    /// The scope's groups, or those named (each must exist).
    pub fn placement_groups(
        &self,
        scope: &Scope,
        names: &[String],
        ids: &[PlacementGroupId],
    ) -> Result<Vec<PlacementGroup>> {
        let all = self.store.read(|c| store::list(c, scope))?;
        for n in names {
            if !all.iter().any(|g| &g.name == n) {
                return Err(Error::not_found(ResourceKind::PlacementGroup, n.clone()));
            }
        }
        crate::missing(ids, ResourceKind::PlacementGroup, |i| all.iter().any(|g| g.id == i))?;
        if names.is_empty() && ids.is_empty() {
            return Ok(all);
        }
        Ok(all.into_iter().filter(|g| names.contains(&g.name) || ids.iter().any(|i| i.as_str() == g.id)).collect())
    }

    /// DeletePlacementGroup: refused while an instance that is not terminated is in it.
    pub fn delete_placement_group(&self, scope: &Scope, r: &GroupRef) -> Result<()> {
        self.store.write(|tx| {
            let g = find(tx, scope, r)?;
            let live = store::live_members(tx, &g.id)?;
            if let Some(m) = live.first() {
                return Err(Error::PlacementGroupInUse(format!(
                    "The placement group '{}' is in use by {} and may not be deleted.",
                    g.name, m.instance_id
                )));
            }
            store::delete(tx, scope, &g.id)?;
            Ok(())
        })
    }

    /// Each instance's place in a group, with the group's name, by instance ID.
    pub fn placements(&self, scope: &Scope) -> Result<HashMap<String, (Member, String)>> {
        self.store.read(|c| {
            let names: HashMap<String, String> = store::list(c, scope)?.into_iter().map(|g| (g.id, g.name)).collect();
            Ok(store::members(c, scope)?
                .into_iter()
                .map(|(i, m)| {
                    let name = names.get(&m.group_id).cloned().unwrap_or_default();
                    (i, (m, name))
                })
                .collect())
        })
    }
}
