//! EC2 actions: each typed request run against the control plane and written as EC2's
//! XML, one module per resource.

mod images;
mod instance_types;
mod instances;
mod interfaces;
mod key_pairs;
mod launch_templates;
mod placement_groups;
mod regions;
mod routing;
mod security_groups;
mod tags;
mod volumes;
mod vpcs;

use kiln_control::{Cloud, Scope};
use kiln_ec2::page::{self, Paging};
use kiln_ec2::requests::{Request, Tag};
use kiln_ec2::{Ec2Error, Params, XmlWriter};

pub use kiln_ec2::requests::ACTIONS;

use crate::errors::to_ec2;

/// What an action runs with.
pub(crate) struct Ctx<'a> {
    pub cloud: &'a Cloud,
    pub scope: Scope,
    pub request_id: &'a str,
    pub params: &'a Params,
    pub host: &'a str,
}

impl Ctx<'_> {
    pub fn xml(&self, action: &str) -> XmlWriter {
        XmlWriter::response(action, self.request_id)
    }

    /// One page of `items`, scoped to this caller and query.
    pub fn page<T>(
        &self,
        items: Vec<T>,
        paging: &Paging,
        range: (i64, i64),
        default: Option<usize>,
    ) -> Result<(Vec<T>, Option<String>), Ec2Error> {
        let scope = page::scope_of(&self.scope.account, &self.scope.region, self.params);
        page::paginate(items, paging, &scope, range, default)
    }

    pub fn arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:ec2:{}:{}:{kind}/{id}", self.scope.region, self.scope.account)
    }
}

pub(crate) type ActionResult = Result<String, Ec2Error>;

/// Control-plane results into EC2 errors.
pub(crate) trait OrEc2<T> {
    fn ec2(self) -> Result<T, Ec2Error>;
}

impl<T> OrEc2<T> for Result<T, kiln_control::Error> {
    fn ec2(self) -> Result<T, Ec2Error> {
        self.map_err(to_ec2)
    }
}

pub(crate) fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect()
}

/// Writes `nextToken` when there is one.
pub(crate) fn next_token(w: &mut XmlWriter, token: Option<String>) {
    w.opt("nextToken", token);
}

pub(crate) fn dispatch(ctx: &Ctx<'_>, request: Request) -> ActionResult {
    let action = request.action();
    match request {
        Request::DescribeRegions(r) => regions::describe_regions(ctx, r),
        Request::DescribeAvailabilityZones(r) => regions::describe_zones(ctx, r),
        Request::DescribeAccountAttributes(r) => regions::describe_account_attributes(ctx, r),
        Request::DescribeInstanceTypes(r) => instance_types::describe(ctx, r),
        Request::DescribeInstanceTypeOfferings(r) => instance_types::offerings(ctx, r),
        Request::CreateKeyPair(r) => key_pairs::create(ctx, r),
        Request::ImportKeyPair(r) => key_pairs::import(ctx, r),
        Request::DescribeKeyPairs(r) => key_pairs::describe(ctx, r),
        Request::DeleteKeyPair(r) => key_pairs::delete(ctx, r),
        Request::CreatePlacementGroup(r) => placement_groups::create(ctx, r),
        Request::DescribePlacementGroups(r) => placement_groups::describe(ctx, r),
        Request::DeletePlacementGroup(r) => placement_groups::delete(ctx, r),
        Request::CreateVpc(r) => vpcs::create_vpc(ctx, r),
        Request::DescribeVpcs(r) => vpcs::describe_vpcs(ctx, r),
        Request::DeleteVpc(r) => vpcs::delete_vpc(ctx, r),
        Request::CreateSubnet(r) => vpcs::create_subnet(ctx, r),
        Request::DescribeSubnets(r) => vpcs::describe_subnets(ctx, r),
        Request::DeleteSubnet(r) => vpcs::delete_subnet(ctx, r),
        Request::CreateDefaultVpc(r) => routing::create_default_vpc(ctx, r),
        Request::DescribeVpcAttribute(r) => routing::describe_vpc_attribute(ctx, r),
        Request::ModifyVpcAttribute(r) => routing::modify_vpc_attribute(ctx, r),
        Request::ModifySubnetAttribute(r) => routing::modify_subnet_attribute(ctx, r),
        Request::CreateDhcpOptions(r) => routing::create_dhcp_options(ctx, r),
        Request::DescribeDhcpOptions(r) => routing::describe_dhcp_options(ctx, r),
        Request::DeleteDhcpOptions(r) => routing::delete_dhcp_options(ctx, r),
        Request::AssociateDhcpOptions(r) => routing::associate_dhcp_options(ctx, r),
        Request::CreateInternetGateway(r) => routing::create_internet_gateway(ctx, r),
        Request::DescribeInternetGateways(r) => routing::describe_internet_gateways(ctx, r),
        Request::AttachInternetGateway(r) => routing::attach_internet_gateway(ctx, r),
        Request::DetachInternetGateway(r) => routing::detach_internet_gateway(ctx, r),
        Request::DeleteInternetGateway(r) => routing::delete_internet_gateway(ctx, r),
        Request::CreateRouteTable(r) => routing::create_route_table(ctx, r),
        Request::DescribeRouteTables(r) => routing::describe_route_tables(ctx, r),
        Request::DeleteRouteTable(r) => routing::delete_route_table(ctx, r),
        Request::AssociateRouteTable(r) => routing::associate_route_table(ctx, r),
        Request::DisassociateRouteTable(r) => routing::disassociate_route_table(ctx, r),
        Request::ReplaceRouteTableAssociation(r) => routing::replace_route_table_association(ctx, r),
        Request::CreateRoute(r) | Request::ReplaceRoute(r) => routing::put_route(ctx, action, r),
        Request::DeleteRoute(r) => routing::delete_route(ctx, r),
        Request::DescribeNetworkAcls(r) => routing::describe_network_acls(ctx, r),
        Request::CreateNetworkAcl(r) => routing::create_network_acl(ctx, r),
        Request::DeleteNetworkAcl(r) => routing::delete_network_acl(ctx, r),
        Request::CreateNetworkAclEntry(r) | Request::ReplaceNetworkAclEntry(r) => {
            routing::put_network_acl_entry(ctx, action, r)
        }
        Request::DeleteNetworkAclEntry(r) => routing::delete_network_acl_entry(ctx, r),
        Request::ReplaceNetworkAclAssociation(r) => routing::replace_network_acl_association(ctx, r),
        Request::DescribeNetworkInterfaces(r) => interfaces::describe(ctx, r),
        Request::CreateNetworkInterface(r) => interfaces::create(ctx, r),
        Request::DeleteNetworkInterface(r) => interfaces::delete(ctx, r),
        Request::AttachNetworkInterface(r) => interfaces::attach(ctx, r),
        Request::DetachNetworkInterface(r) => interfaces::detach(ctx, r),
        Request::CreateLaunchTemplate(r) => launch_templates::create(ctx, r),
        Request::CreateLaunchTemplateVersion(r) => launch_templates::create_version(ctx, r),
        Request::DescribeLaunchTemplates(r) => launch_templates::describe(ctx, r),
        Request::DescribeLaunchTemplateVersions(r) => launch_templates::describe_versions(ctx, r),
        Request::ModifyLaunchTemplate(r) => launch_templates::modify(ctx, r),
        Request::DeleteLaunchTemplate(r) => launch_templates::delete(ctx, r),
        Request::DeleteLaunchTemplateVersions(r) => launch_templates::delete_versions(ctx, r),
        Request::GetLaunchTemplateData(r) => launch_templates::get_data(ctx, r),
        Request::DescribeVolumes(r) => volumes::describe(ctx, r),
        Request::CreateVolume(r) => volumes::create(ctx, r),
        Request::DeleteVolume(r) => volumes::delete(ctx, r),
        Request::AttachVolume(r) => volumes::attach(ctx, r),
        Request::DetachVolume(r) => volumes::detach(ctx, r),
        Request::ModifyVolume(r) => volumes::modify(ctx, r),
        Request::DescribeVolumesModifications(r) => volumes::modifications(ctx, r),
        Request::DescribeVolumeStatus(r) => volumes::status(ctx, r),
        Request::DescribeVolumeAttribute(r) => volumes::describe_attribute(ctx, r),
        Request::ModifyVolumeAttribute(r) => volumes::modify_attribute(ctx, r),
        Request::CreateSnapshot(r) => volumes::create_snapshot(ctx, r),
        Request::CreateSnapshots(r) => volumes::create_snapshots(ctx, r),
        Request::EnableEbsEncryptionByDefault(r)
        | Request::DisableEbsEncryptionByDefault(r)
        | Request::GetEbsEncryptionByDefault(r) => volumes::encryption_default(ctx, action, r),
        Request::ModifyNetworkInterfaceAttribute(r) => interfaces::modify(ctx, r),
        Request::AllocateAddress(r) => routing::allocate_address(ctx, r),
        Request::AssociateAddress(r) => routing::associate_address(ctx, r),
        Request::DisassociateAddress(r) => routing::disassociate_address(ctx, r),
        Request::ReleaseAddress(r) => routing::release_address(ctx, r),
        Request::DescribeAddresses(r) => routing::describe_addresses(ctx, r),
        Request::DescribeAddressesAttribute(r) => routing::describe_addresses_attribute(ctx, r),
        Request::DescribeInstanceCreditSpecifications(r) => routing::describe_instance_credit_specifications(ctx, r),
        Request::CreateSecurityGroup(r) => security_groups::create(ctx, r),
        Request::DescribeSecurityGroups(r) => security_groups::describe(ctx, r),
        Request::DeleteSecurityGroup(r) => security_groups::delete(ctx, r),
        Request::AuthorizeSecurityGroupIngress(r) | Request::AuthorizeSecurityGroupEgress(r) => {
            security_groups::authorize(ctx, action, r)
        }
        Request::RevokeSecurityGroupIngress(r) | Request::RevokeSecurityGroupEgress(r) => {
            security_groups::revoke(ctx, action, r)
        }
        Request::DescribeSecurityGroupRules(r) => security_groups::describe_rules(ctx, r),
        Request::CreateTags(r) => tags::create(ctx, r),
        Request::DeleteTags(r) => tags::delete(ctx, r),
        Request::DescribeTags(r) => tags::describe(ctx, r),
        Request::DescribeImages(r) => images::describe(ctx, r),
        Request::RegisterImage(r) => images::register(ctx, r),
        Request::DeregisterImage(r) => images::deregister(ctx, r),
        Request::CopyImage(r) => images::copy(ctx, r),
        Request::ModifyImageAttribute(r) => images::modify_attribute(ctx, r),
        Request::DescribeImageAttribute(r) => images::describe_attribute(ctx, r),
        Request::ResetImageAttribute(r) => images::reset_attribute(ctx, r),
        Request::DescribeSnapshots(r) => images::describe_snapshots(ctx, r),
        Request::DeleteSnapshot(r) => images::delete_snapshot(ctx, r),
        Request::ModifySnapshotAttribute(r) => images::modify_snapshot_attribute(ctx, r),
        Request::CopySnapshot(r) => images::copy_snapshot(ctx, r),
        Request::DescribeSnapshotAttribute(r) => images::describe_snapshot_attribute(ctx, r),
        Request::ResetSnapshotAttribute(r) => images::reset_snapshot_attribute(ctx, r),
        Request::CreateImage(r) => images::create(ctx, r),
        Request::ImportSnapshot(r) => images::import(ctx, action, r.disk, r.description, None),
        Request::ImportImage(r) => images::import(ctx, action, r.disk, r.description, r.architecture),
        Request::DescribeImportSnapshotTasks(r) | Request::DescribeImportImageTasks(r) => {
            images::describe_imports(ctx, action, r)
        }
        Request::RunInstances(r) => instances::run(ctx, r),
        Request::DescribeInstances(r) => instances::describe(ctx, r),
        Request::DescribeInstanceStatus(r) => instances::status(ctx, r),
        Request::StartInstances(r) => instances::start(ctx, r),
        Request::StopInstances(r) => instances::stop(ctx, r),
        Request::RebootInstances(r) => instances::reboot(ctx, r),
        Request::TerminateInstances(r) => instances::terminate(ctx, r),
        Request::GetConsoleOutput(r) => instances::console(ctx, r),
        Request::ModifyInstanceAttribute(r) => instances::modify_attribute(ctx, r),
        Request::ModifyInstanceMetadataOptions(r) => instances::modify_metadata_options(ctx, r),
        Request::DescribeInstanceAttribute(r) => instances::describe_attribute(ctx, r),
        Request::ModifyInstanceCreditSpecification(r) => instances::modify_credit_specification(ctx, r),
        Request::MonitorInstances(r) | Request::UnmonitorInstances(r) => instances::set_monitoring(ctx, action, r),
    }
}

/// `<return>true</return>` for acknowledgement-only actions.
pub(crate) fn ack(ctx: &Ctx<'_>, action: &str) -> ActionResult {
    let mut w = ctx.xml(action);
    w.elem("return", "true");
    Ok(w.finish(action))
}
