//! Instances: launch (validation, placement, addresses, capacity and quota,
//! idempotency) and EC2's lifecycle requests. Requests only record what should be;
//! the reconciler (`reconcile.rs`) makes the VMs so.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kiln_store::instances::{self, Instance};
use kiln_store::volumes::{self, Volume};
use kiln_store::{client_tokens, key_pairs, security_groups, vpcs, Connection, Scope};
use kiln_types::instance_types::{self, InstanceTypeInfo};
use kiln_types::{
    Architecture, HttpEndpoint, HttpTokens, ImageId, InstanceId, InstanceState, ResourceKind, SecurityGroupId,
    ShutdownBehavior, SubnetId,
};
use sha2::{Digest, Sha256};

use crate::{tags, Cloud, Error, Result};

pub use crate::block_devices::VolumeRequest;

/// What RunInstances asks for.
#[derive(Debug, Clone, Hash)]
pub struct RunRequest {
    pub image_id: ImageId,
    pub instance_type: String,
    pub min_count: i64,
    pub max_count: i64,
    pub key_name: Option<String>,
    pub group_ids: Vec<SecurityGroupId>,
    pub group_names: Vec<String>,
    pub subnet_id: Option<SubnetId>,
    pub private_ip: Option<String>,
    /// Whether to give a public address (`None`: as the subnet's MapPublicIpOnLaunch).
    pub associate_public_ip: Option<bool>,
    pub user_data: Option<Vec<u8>>,
    pub volumes: Vec<VolumeRequest>,
    pub availability_zone: Option<String>,
    /// The placement group to launch into, and the partition (partition groups).
    pub placement_group: Option<crate::placement_groups::GroupRef>,
    pub partition_number: Option<i64>,
    pub instance_tags: Vec<(String, String)>,
    pub volume_tags: Vec<(String, String)>,
    pub client_token: Option<String>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<HttpEndpoint>,
    pub hop_limit: Option<i64>,
    pub disable_api_termination: bool,
    pub shutdown_behavior: Option<ShutdownBehavior>,
    /// Stop protection, monitoring, EBS optimisation and CPU credits (`None`
    /// credits: the type's default).
    pub options: kiln_types::InstanceOptions,
}

impl RunRequest {
    /// One `t3.micro` of `image_id`, everything else as EC2's defaults.
    pub fn new(image_id: ImageId) -> Self {
        Self {
            image_id,
            instance_type: "t3.micro".into(),
            min_count: 1,
            max_count: 1,
            key_name: None,
            group_ids: Vec::new(),
            group_names: Vec::new(),
            subnet_id: None,
            private_ip: None,
            associate_public_ip: None,
            user_data: None,
            volumes: Vec::new(),
            availability_zone: None,
            placement_group: None,
            partition_number: None,
            instance_tags: Vec::new(),
            volume_tags: Vec::new(),
            client_token: None,
            http_tokens: None,
            http_endpoint: None,
            hop_limit: None,
            disable_api_termination: false,
            shutdown_behavior: None,
            options: kiln_types::InstanceOptions::default(),
        }
    }
}

/// A state change as the Start/Stop/Terminate responses show it.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub instance_id: String,
    pub previous: InstanceState,
    pub current: InstanceState,
}

/// EC2's transition reason for a user's request.
fn user_reason() -> String {
    format!("User initiated ({} GMT)", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"))
}

/// EC2's rule for MetadataOptions' hop limit (RunInstances,
/// ModifyInstanceMetadataOptions); the enums are checked by parsing.
fn check_hop_limit(hop_limit: Option<i64>) -> Result<()> {
    if hop_limit.is_some_and(|h| !(1..=64).contains(&h)) {
        return Err(Error::InvalidParameterValue("HttpPutResponseHopLimit must be 1 to 64".into()));
    }
    Ok(())
}

/// The request's identity for ClientToken idempotency.
fn request_hash(r: &RunRequest) -> String {
    let mut clone = r.clone();
    clone.client_token = None;
    let text = format!("{clone:?}");
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// The addresses EC2 reserves in a subnet: network, +1 router, +2 DNS, +3, broadcast.
fn reserved(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    let base = u32::from(net.network());
    let n = u32::from(ip);
    n < base + 4 || ip == net.broadcast()
}

pub(crate) fn check_address(net: &Ipv4Net, ip: &str, taken: &[String]) -> Result<Ipv4Addr> {
    let addr: Ipv4Addr = ip.parse().map_err(|_| Error::InvalidParameterValue(format!("Invalid IPv4 address: {ip}")))?;
    if !net.contains(&addr) {
        return Err(Error::InvalidParameterValue(format!(
            "Address {ip} does not fall within the subnet's address range {net}"
        )));
    }
    if reserved(net, addr) {
        return Err(Error::InvalidParameterValue(format!("Address {ip} is reserved in subnet {net}")));
    }
    if taken.iter().any(|t| t == ip) {
        return Err(Error::AddressInUse(format!("Address {ip} is in use.")));
    }
    Ok(addr)
}

pub(crate) fn next_address(net: &Ipv4Net, taken: &[String]) -> Option<String> {
    net.hosts().filter(|a| !reserved(net, *a)).map(|a| a.to_string()).find(|a| !taken.contains(a))
}

/// An account's use of its vCPU quota in one region, and the host's when it may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub vcpu_limit: i64,
    pub vcpus_in_use: i64,
    /// Only for the operator account.
    pub host: Option<HostCapacity>,
}

/// What the host offers (its CPUs, and its memory less the host's reserve, times the
/// overcommit ratios) and what instances other than stopped and terminated ones hold of
/// it across all accounts (each type's memory plus QEMU's overhead per instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCapacity {
    pub vcpus: i64,
    pub memory_mib: i64,
    pub vcpus_in_use: i64,
    pub memory_mib_in_use: i64,
    pub instances: i64,
}

impl Cloud {
    fn find_instance(&self, conn: &Connection, scope: &Scope, id: &str) -> Result<Instance> {
        instances::get(conn, id)?
            .filter(|i| i.account_id == scope.account && i.region == scope.region)
            .ok_or_else(|| Error::not_found(ResourceKind::Instance, id))
    }

    /// The scope's instances with these ids, read by key; NotFound names every missing
    /// one, as EC2's message does.
    fn find_all(&self, conn: &Connection, scope: &Scope, ids: &[InstanceId]) -> Result<Vec<Instance>> {
        let mut found = Vec::new();
        for id in ids {
            if let Some(i) =
                instances::get(conn, id)?.filter(|i| i.account_id == scope.account && i.region == scope.region)
            {
                found.push(i);
            }
        }
        crate::missing(ids, ResourceKind::Instance, |id| found.iter().any(|i: &Instance| i.id == id))?;
        Ok(found)
    }

    /// Instances by id (all must exist; read by primary key), or all of the scope's.
    pub fn instances(&self, scope: &Scope, ids: &[InstanceId]) -> Result<Vec<Instance>> {
        if ids.is_empty() {
            return self.store.read(|c| Ok::<_, Error>(instances::list(c, scope)?));
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        self.store.read(|c| {
            for id in ids {
                match instances::get(c, id)?.filter(|i| i.account_id == scope.account && i.region == scope.region) {
                    Some(i) if !found.iter().any(|f: &Instance| f.id == i.id) => found.push(i),
                    Some(_) => {}
                    None => missing.push(id.to_string()),
                }
            }
            Ok::<_, Error>(())
        })?;
        if !missing.is_empty() {
            return Err(Error::NotFound { kind: ResourceKind::Instance, ids: missing });
        }
        found.sort_by(|a, b| (&a.launch_time, a.launch_index, &a.id).cmp(&(&b.launch_time, b.launch_index, &b.id)));
        Ok(found)
    }

    /// One instance, whatever its account, with its user data: for its own metadata
    /// service, whose socket already says which instance asks.
    pub fn instance_for_guest(&self, id: &str) -> Result<Option<Instance>> {
        self.store.read(|c| Ok(instances::get(c, id)?))
    }

    pub fn instance_volumes(&self, instance_id: &str) -> Result<Vec<Volume>> {
        self.store.read(|c| Ok(volumes::of_instance(c, instance_id)?))
    }

    /// What the caller's account runs in its region against its vCPU quota, and, for the
    /// operator account only, this server's own host's offer and use (joined hosts
    /// report theirs in `kiln host list`): other tenants' load is not theirs to see.
    pub fn capacity(&self, scope: &Scope) -> Result<Capacity> {
        let operator = self.is_operator(&scope.account)?;
        let agent = if operator { Some(self.agent()?) } else { None };
        let live = self.store.read(crate::placement::live_instances)?;
        let mine = live.iter().filter(|i| i.account_id == scope.account && i.region == scope.region);
        let here: Vec<&Instance> = live.iter().filter(|i| i.host_id.is_none()).collect();
        let host = agent
            .map(|a| a.info().map_err(|e| Error::host("asking the host its capacity", e)))
            .transpose()?
            .map(|info| HostCapacity {
                vcpus: (info.cpus as f64 * self.limits.cpu_overcommit) as i64,
                memory_mib: self.limits.memory_offered_mib(info.memory_mib),
                vcpus_in_use: here.iter().map(|i| i.vcpus).sum(),
                memory_mib_in_use: here.iter().map(|i| self.limits.memory_cost_mib(i.memory_mib)).sum(),
                instances: here.len() as i64,
            });
        Ok(Capacity { vcpu_limit: i64::from(self.limits.vcpu_quota), vcpus_in_use: mine.map(|i| i.vcpus).sum(), host })
    }

    /// How many instances of `t` the account's vCPU quota still has room for.
    fn quota_fit(&self, conn: &Connection, scope: &Scope, t: &InstanceTypeInfo, want: i64) -> Result<i64> {
        let live = crate::placement::live_instances(conn)?;
        let mine: i64 =
            live.iter().filter(|i| i.account_id == scope.account && i.region == scope.region).map(|i| i.vcpus).sum();
        Ok(((self.limits.vcpu_quota as i64 - mine) / t.vcpus as i64).clamp(0, want))
    }

    /// The instances a ClientToken already launched, or IdempotentParameterMismatch when
    /// the token came with other arguments.
    fn token_reservation(conn: &Connection, scope: &Scope, token: &str, hash: &str) -> Result<Option<Vec<Instance>>> {
        let Some((reservation, first_hash)) = client_tokens::get(conn, scope, token)? else { return Ok(None) };
        if first_hash != hash {
            return Err(Error::IdempotentMismatch(format!(
                "Arguments on this idempotent request are inconsistent with arguments used in previous request(s) with ClientToken {token}"
            )));
        }
        Ok(Some(instances::of_reservation(conn, &reservation)?))
    }

    /// Launches between `min_count` and `max_count` instances, or none.
    pub fn run_instances(&self, scope: &Scope, r: RunRequest) -> Result<Vec<Instance>> {
        if r.min_count < 1 || r.max_count < 1 {
            return Err(Error::InvalidParameterValue("MinCount and MaxCount must be at least 1".into()));
        }
        if r.min_count > r.max_count {
            return Err(Error::InvalidParameterValue("MinCount must not exceed MaxCount".into()));
        }
        if r.private_ip.is_some() && r.max_count > 1 {
            return Err(Error::ParameterCombination(
                "PrivateIpAddress can only be given when launching one instance".into(),
            ));
        }
        let hash = request_hash(&r);
        // A retry answers with the first launch, whatever has changed since (checked
        // again, authoritatively, inside the launch's transaction).
        if let Some(token) = &r.client_token {
            if let Some(first) = self.store.read(|c| Self::token_reservation(c, scope, token, &hash))? {
                return Ok(first);
            }
        }
        let t = instance_types::lookup(&r.instance_type).ok_or_else(|| {
            Error::InvalidParameterValue(format!("Invalid value '{}' for InstanceType.", r.instance_type))
        })?;
        let image = self.launchable_image(scope, &r.image_id)?;
        if image.image.state != "available" {
            return Err(Error::ImageUnavailable(format!(
                "Image {} is not available (it is {})",
                r.image_id, image.image.state
            )));
        }
        let arch: Architecture =
            image.image.architecture.parse().map_err(|_| {
                Error::InvalidParameterValue(format!("Image {} has an unknown architecture", r.image_id))
            })?;
        if !t.supports(arch) {
            let supported: Vec<&str> = t.architectures.iter().map(|a| a.as_str()).collect();
            return Err(Error::InvalidParameterValue(format!(
                "The architecture '{}' of the specified instance type does not match the architecture '{arch}' of the specified AMI. Specify an instance type and an AMI that have matching architectures, and try again. You can use 'describe-instance-types' or 'describe-images' to discover the architecture of the instance type or AMI.",
                supported.join(", ")
            )));
        }
        let http_tokens = r.http_tokens.unwrap_or(HttpTokens::Optional);
        let http_endpoint = r.http_endpoint.unwrap_or(HttpEndpoint::Enabled);
        let hop_limit = r.hop_limit.unwrap_or(1);
        check_hop_limit(Some(hop_limit))?;
        let shutdown_behavior = r.shutdown_behavior.unwrap_or(ShutdownBehavior::Stop);
        if r.user_data.as_ref().is_some_and(|u| u.len() > 16 * 1024) {
            return Err(Error::InvalidParameterValue("User data is limited to 16384 bytes".into()));
        }
        // The image's devices with the request's changes (the root resized, others
        // added or excluded).
        let root_name = image.image.root_device_name.clone();
        if !image.devices.iter().any(|d| d.device_name == root_name) {
            return Err(Error::InvalidParameterValue(format!("Image {} has no root volume", r.image_id)));
        }
        let plan: Vec<(String, Option<String>, i64, kiln_types::VolumeType, bool)> =
            crate::block_devices::apply(image.devices.clone(), &root_name, &r.volumes, |s| {
                self.usable_snapshot(scope, s).map(|s| s.volume_size)
            })?
            .into_iter()
            .map(|d| (d.device_name, d.snapshot_id, d.volume_size, d.volume_type, d.delete_on_termination))
            .collect();
        // The root volume is the VM's first disk.
        let mut plan = plan;
        plan.sort_by_key(|p| p.0 != root_name);

        let now = kiln_store::now();
        let reservation_id = ResourceKind::Reservation.generate();
        self.store.write(|tx| {
            if let Some(token) = &r.client_token {
                if let Some(first) = Self::token_reservation(tx, scope, token, &hash)? {
                    return Ok(first);
                }
                // The token's primary key makes a concurrent retry wait for this
                // transaction and then find the reservation above.
                client_tokens::insert(tx, scope, token, &reservation_id, &hash)?;
            }
            // A placement group first: a cluster group's zone is where its instances go.
            let seats = match &r.placement_group {
                Some(g) => Some(crate::placement_groups::Seats::of(tx, scope, g)?),
                None if r.partition_number.is_some() => {
                    return Err(Error::ParameterDependency(
                        "Placement.PartitionNumber needs Placement.GroupName or Placement.GroupId".into(),
                    ))
                }
                None => None,
            };
            let wanted_zone = match (&r.availability_zone, &r.subnet_id) {
                (None, None) => seats.as_ref().and_then(|s| s.zone.clone()),
                _ => r.availability_zone.clone(),
            };
            // Placement: the subnet given, else the default subnet of the zone asked (or the first).
            let subnets = vpcs::list_subnets(tx, scope)?;
            let subnet = match &r.subnet_id {
                Some(id) => subnets.iter().find(|s| &s.id == id).ok_or_else(|| Error::not_found(ResourceKind::Subnet, id.clone()))?,
                None => subnets
                    .iter()
                    .filter(|s| s.default_for_az)
                    .find(|s| wanted_zone.as_ref().is_none_or(|z| &s.availability_zone == z))
                    .ok_or_else(|| match &wanted_zone {
                        Some(z) => Error::InvalidParameterValue(format!("Invalid availability zone: [{z}]")),
                        None => Error::InvalidParameterValue("No default subnet: give SubnetId".into()),
                    })?,
            };
            if let Some(z) = &r.availability_zone {
                if z != &subnet.availability_zone {
                    return Err(Error::ParameterCombination(format!(
                        "The subnet {} is in {}, not in the requested zone {z}",
                        subnet.id, subnet.availability_zone
                    )));
                }
            }
            // CPU credits only for burstable types, as EC2 has them; the type's default otherwise.
            let default_credits = kiln_types::CpuCredits::default_for(t.name);
            if r.options.cpu_credits.is_some() && default_credits.is_none() {
                return Err(Error::ParameterCombination(format!(
                    "The 'CreditSpecification' parameter is not supported for instance type {}",
                    t.name
                )));
            }
            let options = kiln_types::InstanceOptions {
                cpu_credits: r.options.cpu_credits.or(default_credits),
                ..r.options.clone()
            };
            // Security groups: of the subnet's VPC; its default group when none is named.
            let all_groups = security_groups::list(tx, scope)?;
            let groups_here: Vec<_> = all_groups.iter().filter(|g| g.vpc_id == subnet.vpc_id).collect();
            let mut groups = Vec::new();
            for id in &r.group_ids {
                let g = all_groups.iter().find(|g| &g.id == id).ok_or_else(|| Error::not_found(ResourceKind::SecurityGroup, id.clone()))?;
                if g.vpc_id != subnet.vpc_id {
                    return Err(Error::InvalidParameterValue(format!(
                        "Security group {id} and subnet {} belong to different networks.",
                        subnet.id
                    )));
                }
                groups.push(g.id.clone());
            }
            for name in &r.group_names {
                let g = groups_here
                    .iter()
                    .find(|g| g.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| Error::not_found(ResourceKind::SecurityGroup, name.clone()))?;
                groups.push(g.id.clone());
            }
            if groups.is_empty() {
                let d = groups_here.iter().find(|g| g.name == "default").ok_or_else(|| Error::not_found(ResourceKind::SecurityGroup, "default"))?;
                groups.push(d.id.clone());
            }
            groups.dedup();
            let public_key = match &r.key_name {
                Some(name) => Some(
                    key_pairs::list(tx, scope)?
                        .into_iter()
                        .find(|k| &k.name == name)
                        .ok_or_else(|| Error::not_found(ResourceKind::KeyPair, name.clone()))?
                        .public_key,
                ),
                None => None,
            };
            let quota_fit = self.quota_fit(tx, scope, t, r.max_count)?;
            if quota_fit < r.min_count {
                return Err(Error::VcpuLimitExceeded(format!(
                    "You have requested more vCPU capacity than your current vCPU limit of {} allows for the instance bucket that the specified instance type belongs to.",
                    self.limits.vcpu_quota
                )));
            }
            // A partition group's instances get their partitions first, then hosts that
            // keep the group's partitions apart.
            let chosen = match &seats {
                Some(s) if s.partitioned() => Some(s.seat(&subnet.availability_zone, quota_fit, r.partition_number)?),
                _ => None,
            };
            let rule = seats
                .as_ref()
                .map_or(crate::placement::HostRule::Any, |s| s.host_rule(chosen.as_deref().unwrap_or_default()));
            let hosts = self.place(tx, &subnet.availability_zone, arch.as_str(), t, quota_fit, rule)?;
            if (hosts.len() as i64) < r.min_count {
                return Err(Error::InsufficientCapacity(format!(
                    "We currently do not have sufficient {} capacity in the Availability Zone you requested ({}). Our system will be working on provisioning additional capacity. You can currently get {} capacity by not specifying an Availability Zone in your request or choosing a different instance type.",
                    t.name, subnet.availability_zone, t.name
                )));
            }
            let count = hosts.len() as i64;
            let partitions = match (chosen, &seats) {
                (Some(mut chosen), _) => {
                    chosen.truncate(count as usize);
                    chosen
                }
                (None, Some(s)) => s.seat(&subnet.availability_zone, count, r.partition_number)?,
                (None, None) => vec![None; count as usize],
            };
            let net: Ipv4Net = subnet.cidr.parse().map_err(|_| kiln_store::StoreError::Corrupt(format!("subnet CIDR {}", subnet.cidr)))?;
            let mut taken = instances::addresses_in_subnet(tx, &subnet.id)?;
            let mut made = Vec::new();
            for n in 0..count {
                let ip = match &r.private_ip {
                    Some(ip) => check_address(&net, ip, &taken)?.to_string(),
                    None => next_address(&net, &taken).ok_or_else(|| {
                        Error::InsufficientCapacity(format!("Subnet {} has no free addresses", subnet.id))
                    })?,
                };
                taken.push(ip.clone());
                let id = ResourceKind::Instance.generate();
                let inst = Instance {
                    id: id.clone(),
                    account_id: scope.account.clone(),
                    region: scope.region.clone(),
                    reservation_id: reservation_id.clone(),
                    image_id: r.image_id.to_string(),
                    instance_type: t.name.to_owned(),
                    architecture: arch.as_str().to_owned(),
                    vcpus: t.vcpus as i64,
                    memory_mib: t.memory_mib as i64,
                    state: InstanceState::Pending,
                    transition_reason: String::new(),
                    state_reason_code: Some("pending".into()),
                    state_reason_message: Some("pending".into()),
                    key_name: r.key_name.clone(),
                    public_key: public_key.clone(),
                    subnet_id: subnet.id.clone(),
                    vpc_id: subnet.vpc_id.clone(),
                    availability_zone: subnet.availability_zone.clone(),
                    private_ip: ip,
                    user_data: r.user_data.clone(),
                    client_token: r.client_token.clone(),
                    launch_index: n,
                    http_tokens,
                    http_endpoint,
                    hop_limit,
                    disable_api_termination: r.disable_api_termination,
                    options: options.clone(),
                    shutdown_behavior,
                    root_device_name: image.image.root_device_name.clone(),
                    kernel_file: image.image.kernel_file.clone(),
                    ramdisk_file: image.image.ramdisk_file.clone(),
                    kernel_cmdline: image.image.kernel_cmdline.clone(),
                    tcg_tb_size_mib: image.image.tcg_tb_size_mib,
                    launch_time: now.clone(),
                    ready_at: None,
                    terminated_at: None,
                    request_hash: Some(hash.clone()),
                    wants_public_ip: r.associate_public_ip.unwrap_or(subnet.map_public_ip),
                    elastic_ip: false,
                    public_ip: None,
                    groups: groups.clone(),
                    host_id: hosts[n as usize].clone(),
                };
                instances::insert(tx, &inst)?;
                tags::put_all(tx, scope, ResourceKind::Instance, &id, &r.instance_tags)?;
                if let Some(s) = &seats {
                    s.join(tx, &id, partitions[n as usize])?;
                }
                for (device, snap, size, vtype, dot) in &plan {
                    let vid = ResourceKind::Volume.generate();
                    volumes::insert(
                        tx,
                        &Volume {
                            instance_id: Some(id.clone()),
                            device_name: Some(device.clone()),
                            delete_on_termination: *dot,
                            created_at: now.clone(),
                            attach_state: Some(kiln_types::VolumeAttachState::Attached),
                            attach_time: Some(now.clone()),
                            ..Volume::new(
                                vid.clone(),
                                scope,
                                subnet.availability_zone.clone(),
                                *size,
                                *vtype,
                                snap.clone(),
                                format!("volumes/{vid}.qcow2"),
                            )
                        },
                    )?;
                    tags::put_all(tx, scope, ResourceKind::Volume, &vid, &r.volume_tags)?;
                }
                made.push(inst);
            }
            Ok(made)
        })
    }

    /// Moves each instance as `f` decides (`None`: it stays), all or none, each move a
    /// compare-and-set from the state just read.
    fn transition(
        &self,
        scope: &Scope,
        ids: &[InstanceId],
        f: impl Fn(&Connection, &Instance) -> Result<Option<(InstanceState, String, Option<(&'static str, &'static str)>)>>,
    ) -> Result<Vec<StateChange>> {
        self.store.write(|tx| {
            let mut out = Vec::new();
            let all = self.find_all(tx, scope, ids)?;
            for i in &all {
                let current = match f(tx, i)? {
                    Some((to, reason, sr)) => {
                        if !instances::transition(tx, &i.id, i.state, to, Some(&reason), sr)? {
                            return Err(Error::IncorrectInstanceState(format!(
                                "The instance '{}' changed state meanwhile; try again.",
                                i.id
                            )));
                        }
                        to
                    }
                    None => i.state,
                };
                out.push(StateChange { instance_id: i.id.clone(), previous: i.state, current });
            }
            Ok(out)
        })
    }

    /// StopInstances. With `force` the VM is ended at once rather than asked to power
    /// off: recorded as a workflow in the same transaction, carried out by the
    /// reconciler.
    pub fn stop_instances(&self, scope: &Scope, ids: &[InstanceId], force: bool) -> Result<Vec<StateChange>> {
        use InstanceState::*;
        self.transition(scope, ids, |tx, i| {
            if i.options.disable_api_stop && matches!(i.state, Running | Pending) {
                return Err(Error::OperationNotPermitted(format!(
                    "The instance '{}' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.",
                    i.id
                )));
            }
            let next = match i.state {
                Running | Pending => Some((
                    Stopping,
                    user_reason(),
                    Some(("Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown")),
                )),
                Stopping | Stopped => None,
                other => {
                    return Err(Error::IncorrectInstanceState(format!(
                        "This instance '{}' is not in a state from which it can be stopped: it is {other}.",
                        i.id
                    )))
                }
            };
            if force && i.state != Stopped && !crate::workflows::pending(tx, &i.id, crate::workflows::FORCE_STOP)? {
                // Behind any workflow already on the VM (a CreateImage finishes first).
                crate::workflows::record(tx, crate::workflows::Work::ForceStop { instance_id: i.id.clone() })?;
            }
            Ok(next)
        })
    }

    pub fn start_instances(&self, scope: &Scope, ids: &[InstanceId]) -> Result<Vec<StateChange>> {
        use InstanceState::*;
        self.transition(scope, ids, |tx, i| match i.state {
            Stopped => {
                let t = instance_types::lookup(&i.instance_type)
                    .ok_or_else(|| Error::InvalidParameterValue("unknown type".into()))?;
                let quota_fit =
                    self.quota_fit(tx, &Scope { account: i.account_id.clone(), region: i.region.clone() }, t, 1)?;
                if quota_fit < 1 {
                    return Err(Error::VcpuLimitExceeded(format!(
                        "Starting {} would exceed your vCPU limit of {}",
                        i.id, self.limits.vcpu_quota
                    )));
                }
                if !self.fits_on(tx, i.host_id.as_deref(), t)? {
                    // Its volumes are in the store: on a joined host that is away or
                    // full, it starts on another host of its zone with room, as its
                    // placement group allows.
                    let elsewhere = match &i.host_id {
                        Some(_) => {
                            let scope = Scope { account: i.account_id.clone(), region: i.region.clone() };
                            let rule = crate::placement_groups::rule_for(tx, &scope, &i.id)?;
                            self.place(tx, &i.availability_zone, &i.architecture, t, 1, rule)?.into_iter().next().flatten()
                        }
                        None => None,
                    };
                    let Some(to) = elsewhere else {
                        return Err(Error::InsufficientCapacity(format!(
                            "Insufficient capacity to start {} ({}) in {}",
                            i.id, t.name, i.availability_zone
                        )));
                    };
                    tracing::info!(instance = %i.id, from = ?i.host_id, to = %to, "starting on another host of its zone");
                    instances::set_host(tx, &i.id, Some(&to))?;
                }
                Ok(Some((Pending, String::new(), None)))
            }
            Pending | Running => Ok(None),
            other => Err(Error::IncorrectInstanceState(format!(
                "The instance '{}' is not in a state from which it can be started: it is {other}.",
                i.id
            ))),
        })
    }

    pub fn terminate_instances(&self, scope: &Scope, ids: &[InstanceId]) -> Result<Vec<StateChange>> {
        use InstanceState::*;
        self.transition(scope, ids, |_, i| {
            if i.disable_api_termination {
                return Err(Error::OperationNotPermitted(format!(
                    "The instance '{}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.",
                    i.id
                )));
            }
            match i.state {
                ShuttingDown | Terminated => Ok(None),
                _ => Ok(Some((ShuttingDown, user_reason(), Some(("Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"))))),
            }
        })
    }

    /// Reboots running instances (a reset, done by the reconciler from the workflow
    /// recorded here); terminated ones are ignored, as on EC2.
    pub fn reboot_instances(&self, scope: &Scope, ids: &[InstanceId]) -> Result<()> {
        use InstanceState::*;
        self.store.write(|tx| {
            let all = self.find_all(tx, scope, ids)?;
            if let Some(i) = all.iter().find(|i| matches!(i.state, Stopped | Stopping)) {
                return Err(Error::IncorrectInstanceState(format!(
                    "The instance '{}' is not in a state from which it can be rebooted: it is {}.",
                    i.id, i.state
                )));
            }
            for i in all.iter().filter(|i| matches!(i.state, Running | Pending)) {
                // Reboots asked while one is waiting are the same reboot.
                if !crate::workflows::pending(tx, &i.id, crate::workflows::REBOOT)? {
                    crate::workflows::record(tx, crate::workflows::Work::Reboot { instance_id: i.id.clone() })?;
                }
            }
            Ok(())
        })
    }

    /// The serial console, for GetConsoleOutput.
    pub fn console_output(&self, scope: &Scope, id: &str, max: usize) -> Result<Vec<u8>> {
        let i = self.store.read(|c| self.find_instance(c, scope, id))?;
        self.agent_for(&i)?.console(id, max).map_err(|e| Error::host(format!("reading {id}'s console"), e))
    }

    pub fn modify_instance(&self, scope: &Scope, id: &str, change: InstanceChange) -> Result<()> {
        use kiln_store::instances::Attribute as A;
        use kiln_store::Value;
        self.store.write(|tx| {
            let i = self.find_instance(tx, scope, id)?;
            let must_be_stopped = |what: &str| -> Result<()> {
                if i.state != InstanceState::Stopped {
                    return Err(Error::IncorrectInstanceState(format!(
                        "The instance '{id}' is not in the 'stopped' state, so its {what} cannot be changed."
                    )));
                }
                Ok(())
            };
            match change {
                InstanceChange::InstanceType(name) => {
                    must_be_stopped("instance type")?;
                    let t = instance_types::lookup(&name).ok_or_else(|| {
                        Error::InvalidParameterValue(format!("Invalid value '{name}' for InstanceType."))
                    })?;
                    let arch: Architecture =
                        i.architecture.parse().map_err(|_| Error::InvalidParameterValue("architecture".into()))?;
                    if !t.supports(arch) {
                        return Err(Error::InvalidParameterValue(format!(
                            "The instance type {name} does not support the instance's architecture {arch}"
                        )));
                    }
                    instances::set_attribute(tx, id, A::InstanceType, &Value::Text(name.clone()))?;
                    instances::set_attribute(tx, id, A::Vcpus, &Value::Integer(t.vcpus as i64))?;
                    instances::set_attribute(tx, id, A::MemoryMib, &Value::Integer(t.memory_mib as i64))?;
                }
                InstanceChange::UserData(data) => {
                    must_be_stopped("user data")?;
                    if data.len() > 16 * 1024 {
                        return Err(Error::InvalidParameterValue("User data is limited to 16384 bytes".into()));
                    }
                    instances::set_attribute(tx, id, A::UserData, &Value::Blob(data))?;
                }
                InstanceChange::DisableApiTermination(v) => {
                    instances::set_attribute(tx, id, A::DisableApiTermination, &Value::Integer(v as i64))?;
                }
                InstanceChange::DisableApiStop(v) => {
                    instances::set_attribute(tx, id, A::DisableApiStop, &Value::Integer(v as i64))?;
                }
                InstanceChange::EbsOptimized(v) => {
                    must_be_stopped("EBS optimization")?;
                    instances::set_attribute(tx, id, A::EbsOptimized, &Value::Integer(v as i64))?;
                }
                InstanceChange::Monitoring(v) => {
                    instances::set_attribute(tx, id, A::Monitoring, &Value::Integer(v as i64))?;
                }
                InstanceChange::SourceDestCheck(v) => {
                    instances::set_attribute(tx, id, A::SourceDestCheck, &Value::Integer(v as i64))?;
                }
                InstanceChange::CpuCredits(c) => {
                    if kiln_types::CpuCredits::default_for(&i.instance_type).is_none() {
                        return Err(Error::ParameterCombination(format!(
                            "The instance '{id}' is of type {}, which has no CPU credits",
                            i.instance_type
                        )));
                    }
                    instances::set_attribute(tx, id, A::CpuCredits, &Value::Text(c.as_str().into()))?;
                }
                InstanceChange::Groups(groups) => {
                    let ids = crate::security_groups::for_interface(tx, scope, &groups, &i.vpc_id, &i.id)?;
                    instances::set_groups(tx, id, &ids)?;
                }
                InstanceChange::DeleteOnTermination(list) => {
                    let vols = volumes::of_instance(tx, id)?;
                    for (device, on) in &list {
                        let v = vols.iter().find(|v| v.device_name.as_deref() == Some(device.as_str())).ok_or_else(
                            || {
                                Error::InvalidParameterValue(format!(
                                    "The device '{device}' is not a block device of instance '{id}'"
                                ))
                            },
                        )?;
                        volumes::set_delete_on_termination(tx, &v.id, *on)?;
                    }
                }
                InstanceChange::ShutdownBehavior(v) => {
                    instances::set_attribute(tx, id, A::ShutdownBehavior, &Value::Text(v.as_str().into()))?;
                }
                InstanceChange::MetadataOptions { http_tokens, http_endpoint, hop_limit } => {
                    if matches!(i.state, InstanceState::ShuttingDown | InstanceState::Terminated) {
                        return Err(Error::IncorrectInstanceState(format!(
                            "The instance '{id}' is not in a state from which its metadata options can be changed."
                        )));
                    }
                    check_hop_limit(hop_limit)?;
                    if let Some(t) = http_tokens {
                        instances::set_attribute(tx, id, A::HttpTokens, &Value::Text(t.as_str().into()))?;
                    }
                    if let Some(e) = http_endpoint {
                        instances::set_attribute(tx, id, A::HttpEndpoint, &Value::Text(e.as_str().into()))?;
                    }
                    if let Some(h) = hop_limit {
                        instances::set_attribute(tx, id, A::HopLimit, &Value::Integer(h))?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// One attribute change.
#[derive(Debug, Clone)]
pub enum InstanceChange {
    InstanceType(String),
    UserData(Vec<u8>),
    DisableApiTermination(bool),
    DisableApiStop(bool),
    EbsOptimized(bool),
    Monitoring(bool),
    SourceDestCheck(bool),
    CpuCredits(kiln_types::CpuCredits),
    /// The primary interface's security groups (GroupId.N).
    Groups(Vec<SecurityGroupId>),
    /// Whether each named device's volume goes with the instance.
    DeleteOnTermination(Vec<(String, bool)>),
    ShutdownBehavior(ShutdownBehavior),
    /// ModifyInstanceMetadataOptions: the options given change, the others stay.
    MetadataOptions {
        http_tokens: Option<HttpTokens>,
        http_endpoint: Option<HttpEndpoint>,
        hop_limit: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_counts_qemus_overhead_and_keeps_the_hosts_reserve() {
        // The fake host: 8 CPUs, 64 GiB; the defaults keep 1 GiB and count 96 MiB a VM.
        let w = crate::testkit::World::new("capacity");
        let tenant = w.cloud.capacity(&w.scope).expect("capacity");
        assert_eq!((tenant.vcpu_limit, tenant.vcpus_in_use, tenant.host), (64, 0, None), "a tenant sees no host");
        let operator = w.cloud.create_account(crate::accounts::OPERATOR, false).expect("operator").account;
        let op = Scope { account: operator.id, region: "us-east-1".into() };
        let host = w.cloud.capacity(&op).expect("capacity").host.expect("the operator sees the host");
        assert_eq!((host.memory_mib, host.memory_mib_in_use, host.vcpus), (64 * 1024 - 1024, 0, 64));

        w.launch();
        let host = w.cloud.capacity(&op).expect("capacity").host.expect("host");
        assert_eq!((host.memory_mib_in_use, host.vcpus_in_use, host.instances), (1024 + 96, 2, 1));
        assert_eq!(w.cloud.capacity(&w.scope).expect("capacity").vcpus_in_use, 2);

        // t3.2xlarge: 32 GiB. One fits beside the t3.micro; a second would need
        // 2 x (32768 + 96) + 1120 > 64512 MiB.
        let mut two = RunRequest::new(w.image_id.clone());
        two.instance_type = "t3.2xlarge".into();
        two.min_count = 2;
        two.max_count = 2;
        assert!(matches!(w.cloud.run_instances(&w.scope, two.clone()), Err(Error::InsufficientCapacity(_))));
        two.min_count = 1;
        assert_eq!(w.cloud.run_instances(&w.scope, two).expect("one fits").len(), 1);
    }

    #[test]
    fn addresses_skip_reserved_and_taken() {
        let net: Ipv4Net = "10.0.1.0/28".parse().expect("net");
        assert_eq!(next_address(&net, &[]).as_deref(), Some("10.0.1.4"));
        assert_eq!(next_address(&net, &["10.0.1.4".into()]).as_deref(), Some("10.0.1.5"));
        assert!(check_address(&net, "10.0.1.1", &[]).is_err());
        assert!(check_address(&net, "10.0.1.15", &[]).is_err());
        assert!(check_address(&net, "10.0.2.5", &[]).is_err());
        assert!(matches!(check_address(&net, "10.0.1.9", &["10.0.1.9".into()]), Err(Error::AddressInUse(_))));
        assert!(check_address(&net, "10.0.1.9", &[]).is_ok());
        let full: Vec<String> = (4..15).map(|n| format!("10.0.1.{n}")).collect();
        assert_eq!(next_address(&net, &full), None);
    }

    #[test]
    fn every_missing_id_is_named_and_nothing_changes() {
        let mut w = crate::testkit::World::new("missing-ids");
        let id = w.launch();
        w.passes_until(10, |w| w.state(&id) == InstanceState::Running);
        let gone: Vec<InstanceId> =
            ["i-0123456789abcdef0", "i-0fedcba9876543210"].iter().map(|s| s.parse().expect("id")).collect();
        let asked = vec![id.clone(), gone[0].clone(), gone[1].clone()];
        match w.cloud.stop_instances(&w.scope, &asked, false) {
            Err(Error::NotFound { ids, .. }) => assert_eq!(ids, vec![gone[0].to_string(), gone[1].to_string()]),
            other => panic!("expected NotFound for both, got {other:?}"),
        }
        assert_eq!(w.state(&id), InstanceState::Running, "the one that exists did not stop");
    }

    #[test]
    fn concurrent_retries_with_one_client_token_launch_once() {
        let w = crate::testkit::World::new("client-token");
        let request = RunRequest {
            min_count: 2,
            max_count: 2,
            client_token: Some("retry-me".into()),
            ..RunRequest::new(w.image_id.clone())
        };
        let results: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let r = request.clone();
                    let w = &w;
                    s.spawn(move || {
                        let made = w.cloud.run_instances(&w.scope, r).expect("launch");
                        made.into_iter().map(|i| format!("{}/{}", i.reservation_id, i.id)).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert!(results.iter().all(|r| r == &results[0]), "{results:?}");
        assert_eq!(results[0].len(), 2);
        assert_eq!(w.cloud.instances(&w.scope, &[]).expect("all").len(), 2, "one launch of two");
        // The same token with other arguments is refused.
        let other = RunRequest { instance_type: "t3.small".into(), ..request };
        assert!(matches!(w.cloud.run_instances(&w.scope, other), Err(Error::IdempotentMismatch(_))));
    }
}
