"""VPC routing and addressing through the API: internet gateways, route tables and
routes, VPC and subnet attributes, the default network ACL, network interfaces,
Elastic IPs and credit specifications, with EC2's errors and two accounts kept apart.
What the routes do to real traffic is tested with VMs in test_network_routing.py."""

import pytest

from kiln_helpers import assert_id, default_vpc, expect_error, new_vpc, tags_dict, uid


@pytest.fixture
def vpc(ec2):
    """A fresh VPC with one subnet; everything made in it is removed afterwards."""
    v = new_vpc(ec2)
    vpc_id = v["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=v["CidrBlock"].replace(".0.0/16", ".1.0/24"))["Subnet"]
    yield {"vpc": vpc_id, "cidr": v["CidrBlock"], "subnet": subnet["SubnetId"]}
    filt = [{"Name": "vpc-id", "Values": [vpc_id]}]
    for t in ec2.describe_route_tables(Filters=filt)["RouteTables"]:
        for a in t["Associations"]:
            if not a["Main"]:
                ec2.disassociate_route_table(AssociationId=a["RouteTableAssociationId"])
    for t in ec2.describe_route_tables(Filters=filt)["RouteTables"]:
        if not any(a["Main"] for a in t["Associations"]):
            ec2.delete_route_table(RouteTableId=t["RouteTableId"])
    for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])[
        "InternetGateways"
    ]:
        ec2.detach_internet_gateway(InternetGatewayId=g["InternetGatewayId"], VpcId=vpc_id)
        ec2.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"])
    for s in ec2.describe_subnets(Filters=filt)["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    ec2.delete_vpc(VpcId=vpc_id)


def main_table(ec2, vpc_id):
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    assert len(tables) == 1, tables
    return tables[0]


def routes_of(ec2, table_id):
    table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    return {r["DestinationCidrBlock"]: r for r in table["Routes"]}


# --- the default VPC -----------------------------------------------------------------


def test_default_vpc_has_gateway_main_table_and_route(ec2):
    v = default_vpc(ec2)
    gateways = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [v["VpcId"]]}])[
        "InternetGateways"
    ]
    assert len(gateways) == 1
    igw = gateways[0]
    assert_id(igw["InternetGatewayId"], "igw")
    assert igw["Attachments"] == [{"State": "available", "VpcId": v["VpcId"]}]
    table = main_table(ec2, v["VpcId"])
    assert_id(table["RouteTableId"], "rtb")
    routes = {r["DestinationCidrBlock"]: r for r in table["Routes"]}
    assert routes["172.31.0.0/16"]["GatewayId"] == "local"
    assert routes["172.31.0.0/16"]["Origin"] == "CreateRouteTable"
    assert routes["0.0.0.0/0"]["GatewayId"] == igw["InternetGatewayId"]
    assert routes["0.0.0.0/0"]["State"] == "active"
    main = [a for a in table["Associations"] if a["Main"]]
    assert len(main) == 1 and "SubnetId" not in main[0]
    assert main[0]["AssociationState"]["State"] == "associated"
    # The default VPC resolves and names hosts; a new VPC only resolves.
    assert ec2.describe_vpc_attribute(VpcId=v["VpcId"], Attribute="enableDnsHostnames")["EnableDnsHostnames"][
        "Value"
    ] is True


def test_create_default_vpc_when_one_exists(ec2):
    expect_error("DefaultVpcAlreadyExists", ec2.create_default_vpc)


def test_create_default_vpc_in_a_region_without_one(kiln):
    """Deleting a region's default VPC and making it again, as EC2 allows."""
    ec2 = kiln.client("default", "sa-east-1")
    old = default_vpc(ec2)
    vid = old["VpcId"]
    igw = ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])[
        "InternetGateways"
    ][0]["InternetGatewayId"]
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=vid)
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    ec2.delete_vpc(VpcId=vid)
    assert not [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]]
    made = ec2.create_default_vpc()["Vpc"]
    assert made["IsDefault"] is True and made["CidrBlock"] == "172.31.0.0/16"
    assert len(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [made["VpcId"]]}])["Subnets"]) == 3
    assert routes_of(ec2, main_table(ec2, made["VpcId"])["RouteTableId"])["0.0.0.0/0"]["State"] == "active"


# --- internet gateways ---------------------------------------------------------------


def test_internet_gateway_lifecycle(ec2, vpc):
    name = uid("igw")
    igw = ec2.create_internet_gateway(
        TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": name}]}]
    )["InternetGateway"]
    gid = igw["InternetGatewayId"]
    assert_id(gid, "igw")
    assert igw["Attachments"] == []
    assert tags_dict(igw) == {"Name": name}
    found = ec2.describe_internet_gateways(Filters=[{"Name": "tag:Name", "Values": [name]}])["InternetGateways"]
    assert [g["InternetGatewayId"] for g in found] == [gid]
    ec2.attach_internet_gateway(InternetGatewayId=gid, VpcId=vpc["vpc"])
    got = ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"][0]
    assert got["Attachments"] == [{"State": "available", "VpcId": vpc["vpc"]}]
    # Attached twice, or a second gateway on the VPC.
    expect_error("Resource.AlreadyAssociated", ec2.attach_internet_gateway, InternetGatewayId=gid, VpcId=vpc["vpc"])
    other = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    expect_error("Resource.AlreadyAssociated", ec2.attach_internet_gateway, InternetGatewayId=other, VpcId=vpc["vpc"])
    expect_error("Gateway.NotAttached", ec2.detach_internet_gateway, InternetGatewayId=other, VpcId=vpc["vpc"])
    ec2.delete_internet_gateway(InternetGatewayId=other)
    # Attached gateways and VPCs with gateways are not deleted.
    expect_error("DependencyViolation", ec2.delete_internet_gateway, InternetGatewayId=gid)
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=vpc["vpc"])
    ec2.detach_internet_gateway(InternetGatewayId=gid, VpcId=vpc["vpc"])
    ec2.delete_internet_gateway(InternetGatewayId=gid)
    expect_error("InvalidInternetGatewayID.NotFound", ec2.describe_internet_gateways, InternetGatewayIds=[gid])


def test_internet_gateway_bad_input(ec2, vpc):
    expect_error("InvalidInternetGatewayId.Malformed", ec2.describe_internet_gateways, InternetGatewayIds=["igw-x"])
    expect_error(
        "InvalidInternetGatewayID.NotFound",
        ec2.attach_internet_gateway,
        InternetGatewayId="igw-0123456789abcdef0",
        VpcId=vpc["vpc"],
    )
    gid = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    try:
        expect_error("InvalidVpcID.NotFound", ec2.attach_internet_gateway, InternetGatewayId=gid, VpcId="vpc-0123456789abcdef0")
        expect_error("InvalidParameterValue", ec2.describe_internet_gateways, Filters=[{"Name": "colour", "Values": ["x"]}])
        # Nothing changed.
        assert ec2.describe_internet_gateways(InternetGatewayIds=[gid])["InternetGateways"][0]["Attachments"] == []
    finally:
        ec2.delete_internet_gateway(InternetGatewayId=gid)


# --- route tables --------------------------------------------------------------------


def test_every_vpc_has_a_main_table_with_its_local_route(ec2, vpc):
    table = main_table(ec2, vpc["vpc"])
    assert list(routes_of(ec2, table["RouteTableId"])) == [vpc["cidr"]]
    # The main table is not deleted, nor is its association removed.
    expect_error("DependencyViolation", ec2.delete_route_table, RouteTableId=table["RouteTableId"])
    main_assoc = [a for a in table["Associations"] if a["Main"]][0]["RouteTableAssociationId"]
    expect_error("InvalidParameterValue", ec2.disassociate_route_table, AssociationId=main_assoc)
    expect_error(
        "InvalidParameterValue",
        ec2.delete_route,
        RouteTableId=table["RouteTableId"],
        DestinationCidrBlock=vpc["cidr"],
    )


def test_route_table_routes_and_associations(ec2, vpc):
    vid = vpc["vpc"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    rt = ec2.create_route_table(
        VpcId=vid, TagSpecifications=[{"ResourceType": "route-table", "Tags": [{"Key": "tier", "Value": "public"}]}]
    )["RouteTable"]
    rid = rt["RouteTableId"]
    assert tags_dict(rt) == {"tier": "public"}
    assert rt["Associations"] == []
    ec2.create_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    r = routes_of(ec2, rid)["0.0.0.0/0"]
    assert (r["GatewayId"], r["State"], r["Origin"]) == (igw, "active", "CreateRoute")
    expect_error("RouteAlreadyExists", ec2.create_route, RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    assoc = ec2.associate_route_table(RouteTableId=rid, SubnetId=vpc["subnet"])
    aid = assoc["AssociationId"]
    assert_id(aid, "rtbassoc")
    assert assoc["AssociationState"]["State"] == "associated"
    found = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [vpc["subnet"]]}])
    assert [t["RouteTableId"] for t in found["RouteTables"]] == [rid]
    # A subnet has one association; its table cannot be deleted while it is used.
    other = ec2.create_route_table(VpcId=vid)["RouteTable"]["RouteTableId"]
    expect_error("Resource.AlreadyAssociated", ec2.associate_route_table, RouteTableId=other, SubnetId=vpc["subnet"])
    expect_error("DependencyViolation", ec2.delete_route_table, RouteTableId=rid)
    # Replace the subnet's association, then the main one.
    new = ec2.replace_route_table_association(AssociationId=aid, RouteTableId=other)["NewAssociationId"]
    assert ec2.describe_route_tables(RouteTableIds=[other])["RouteTables"][0]["Associations"][0]["SubnetId"] == vpc["subnet"]
    expect_error("InvalidAssociationID.NotFound", ec2.disassociate_route_table, AssociationId=aid)
    ec2.disassociate_route_table(AssociationId=new)
    old_main = main_table(ec2, vid)
    main_assoc = [a for a in old_main["Associations"] if a["Main"]][0]["RouteTableAssociationId"]
    ec2.replace_route_table_association(AssociationId=main_assoc, RouteTableId=rid)
    assert main_table(ec2, vid)["RouteTableId"] == rid
    ec2.delete_route_table(RouteTableId=other)
    # The old main table is an ordinary table now; give the main role back to it.
    now_main = [a for a in main_table(ec2, vid)["Associations"] if a["Main"]][0]["RouteTableAssociationId"]
    ec2.replace_route_table_association(AssociationId=now_main, RouteTableId=old_main["RouteTableId"])
    # Replace and delete the route; a detached gateway's route is a blackhole.
    ec2.replace_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vid)
    assert routes_of(ec2, rid)["0.0.0.0/0"]["State"] == "blackhole"
    blackholes = ec2.describe_route_tables(Filters=[{"Name": "route.state", "Values": ["blackhole"]}])["RouteTables"]
    assert rid in {t["RouteTableId"] for t in blackholes}
    ec2.delete_route(RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0")
    expect_error("InvalidRoute.NotFound", ec2.delete_route, RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0")
    ec2.delete_internet_gateway(InternetGatewayId=igw)


def test_route_bad_input(ec2, vpc):
    vid = vpc["vpc"]
    rid = main_table(ec2, vid)["RouteTableId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    other_vpc = new_vpc(ec2)["VpcId"]
    try:
        # A gateway not attached to this VPC (attached to another).
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=other_vpc)
        expect_error("InvalidParameterValue", ec2.create_route, RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        expect_error(
            "InvalidGatewayID.NotFound",
            ec2.create_route,
            RouteTableId=rid,
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId="igw-0123456789abcdef0",
        )
        expect_error("InvalidParameterValue", ec2.create_route, RouteTableId=rid, DestinationCidrBlock="banana", GatewayId=igw)
        expect_error(
            "InvalidParameterValue", ec2.create_route, RouteTableId=rid, DestinationCidrBlock="10.0.0.1/8", GatewayId=igw
        )
        # Inside the VPC's own CIDR.
        inner = vpc["cidr"].replace(".0.0/16", ".9.0/24")
        expect_error("InvalidParameterValue", ec2.create_route, RouteTableId=rid, DestinationCidrBlock=inner, GatewayId=igw)
        expect_error(
            "InvalidParameterCombination",
            ec2.create_route,
            RouteTableId=rid,
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=igw,
            InstanceId="i-0123456789abcdef0",
        )
        expect_error("MissingParameter", ec2.create_route, RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0")
        expect_error(
            "InvalidInstanceID.NotFound",
            ec2.create_route,
            RouteTableId=rid,
            DestinationCidrBlock="0.0.0.0/0",
            InstanceId="i-0123456789abcdef0",
        )
        expect_error(
            "InvalidParameterValue", ec2.replace_route, RouteTableId=rid, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw
        )
        expect_error("InvalidRouteTableId.Malformed", ec2.describe_route_tables, RouteTableIds=["rtb-nope"])
        expect_error("InvalidRouteTableID.NotFound", ec2.delete_route_table, RouteTableId="rtb-0123456789abcdef0")
        other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock=ec2.describe_vpcs(VpcIds=[other_vpc])["Vpcs"][0][
            "CidrBlock"
        ].replace(".0.0/16", ".2.0/24"))["Subnet"]["SubnetId"]
        expect_error("InvalidParameterValue", ec2.associate_route_table, RouteTableId=rid, SubnetId=other_subnet)
        # Nothing was changed by any of it.
        assert list(routes_of(ec2, rid)) == [vpc["cidr"]]
        ec2.delete_subnet(SubnetId=other_subnet)
    finally:
        ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=other_vpc)
        ec2.delete_internet_gateway(InternetGatewayId=igw)
        ec2.delete_vpc(VpcId=other_vpc)


# --- attributes, ACLs, interfaces ----------------------------------------------------


def test_vpc_and_subnet_attributes(ec2, vpc):
    vid = vpc["vpc"]
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"] is True
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is False
    ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": True})
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"] is True
    # Hostnames need DNS support: turning support off first is refused.
    expect_error("InvalidParameterValue", ec2.modify_vpc_attribute, VpcId=vid, EnableDnsSupport={"Value": False})
    expect_error("InvalidParameterValue", ec2.describe_vpc_attribute, VpcId=vid, Attribute="colour")
    expect_error("InvalidVpcID.NotFound", ec2.describe_vpc_attribute, VpcId="vpc-0123456789abcdef0", Attribute="enableDnsSupport")
    sid = vpc["subnet"]
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["MapPublicIpOnLaunch"] is False
    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
    assert ec2.describe_subnets(SubnetIds=[sid])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    expect_error("InvalidSubnetID.NotFound", ec2.modify_subnet_attribute, SubnetId="subnet-0123456789abcdef0", MapPublicIpOnLaunch={"Value": True})


def test_default_network_acl(ec2, vpc):
    acls = ec2.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]}, {"Name": "default", "Values": ["true"]}]
    )["NetworkAcls"]
    assert len(acls) == 1
    acl = acls[0]
    assert_id(acl["NetworkAclId"], "acl")
    assert acl["IsDefault"] is True
    assert [a["SubnetId"] for a in acl["Associations"]] == [vpc["subnet"]]
    assert_id(acl["Associations"][0]["NetworkAclAssociationId"], "aclassoc")
    allow = [e for e in acl["Entries"] if e["RuleAction"] == "allow"]
    assert {e["Egress"] for e in allow} == {True, False} and all(e["RuleNumber"] == 100 for e in allow)
    deny = [e for e in acl["Entries"] if e["RuleAction"] == "deny"]
    assert {(e["RuleNumber"], e["Egress"]) for e in deny} == {(32767, True), (32767, False)}
    assert ec2.describe_network_acls(NetworkAclIds=[acl["NetworkAclId"]])["NetworkAcls"][0]["VpcId"] == vpc["vpc"]
    expect_error("InvalidNetworkAclID.NotFound", ec2.describe_network_acls, NetworkAclIds=["acl-0123456789abcdef0"])
    expect_error("InvalidParameterValue", ec2.delete_network_acl, NetworkAclId=acl["NetworkAclId"])


def test_network_acl_lifecycle(ec2, ec2_other, vpc):
    acl = ec2.create_network_acl(
        VpcId=vpc["vpc"], TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "tier", "Value": "db"}]}]
    )["NetworkAcl"]
    aid = acl["NetworkAclId"]
    assert acl["IsDefault"] is False and tags_dict(acl) == {"tier": "db"}
    # A new ACL denies everything: only the final rules.
    assert {(e["RuleNumber"], e["RuleAction"]) for e in acl["Entries"]} == {(32767, "deny")}
    ec2.create_network_acl_entry(
        NetworkAclId=aid, RuleNumber=100, Protocol="6", RuleAction="allow", Egress=False,
        CidrBlock="0.0.0.0/0", PortRange={"From": 22, "To": 22},
    )
    ec2.create_network_acl_entry(
        NetworkAclId=aid, RuleNumber=100, Protocol="-1", RuleAction="allow", Egress=True, CidrBlock="0.0.0.0/0"
    )
    expect_error(
        "NetworkAclEntryAlreadyExists", ec2.create_network_acl_entry, NetworkAclId=aid, RuleNumber=100,
        Protocol="-1", RuleAction="allow", Egress=True, CidrBlock="0.0.0.0/0",
    )
    ec2.replace_network_acl_entry(
        NetworkAclId=aid, RuleNumber=100, Protocol="6", RuleAction="deny", Egress=False,
        CidrBlock="10.0.0.0/8", PortRange={"From": 22, "To": 22},
    )
    entries = ec2.describe_network_acls(NetworkAclIds=[aid])["NetworkAcls"][0]["Entries"]
    rule = next(e for e in entries if e["RuleNumber"] == 100 and not e["Egress"])
    assert (rule["RuleAction"], rule["CidrBlock"], rule["Protocol"], rule["PortRange"]) == (
        "deny", "10.0.0.0/8", "6", {"From": 22, "To": 22}
    )
    for bad, code in (
        ({"RuleNumber": 0}, "InvalidParameterValue"),
        ({"RuleNumber": 40000}, "InvalidParameterValue"),
        ({"RuleAction": "maybe"}, "InvalidParameterValue"),
        ({"CidrBlock": "banana"}, "InvalidParameterValue"),
        ({"Protocol": "6", "PortRange": None}, "InvalidParameterValue"),
    ):
        args = {"NetworkAclId": aid, "RuleNumber": 200, "Protocol": "-1", "RuleAction": "allow", "Egress": False,
                "CidrBlock": "0.0.0.0/0", **bad}
        args = {k: v for k, v in args.items() if v is not None}
        expect_error(code, ec2.create_network_acl_entry, **args)
    expect_error(
        "InvalidNetworkAclEntry.NotFound", ec2.replace_network_acl_entry, NetworkAclId=aid, RuleNumber=300,
        Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0",
    )
    # Move the subnet to it, and back; an ACL in use is not deleted.
    default = ec2.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]}, {"Name": "default", "Values": ["true"]}]
    )["NetworkAcls"][0]
    [assoc] = [a for a in default["Associations"] if a["SubnetId"] == vpc["subnet"]]
    new = ec2.replace_network_acl_association(AssociationId=assoc["NetworkAclAssociationId"], NetworkAclId=aid)[
        "NewAssociationId"
    ]
    assert_id(new, "aclassoc")
    got = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [vpc["subnet"]]}])
    assert [a["NetworkAclId"] for a in got["NetworkAcls"]] == [aid]
    expect_error("DependencyViolation", ec2.delete_network_acl, NetworkAclId=aid)
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=vpc["vpc"])
    # Another account sees none of it.
    expect_error("InvalidNetworkAclID.NotFound", ec2_other.describe_network_acls, NetworkAclIds=[aid])
    ec2.replace_network_acl_association(AssociationId=new, NetworkAclId=default["NetworkAclId"])
    ec2.delete_network_acl_entry(NetworkAclId=aid, RuleNumber=100, Egress=False)
    expect_error("InvalidNetworkAclEntry.NotFound", ec2.delete_network_acl_entry, NetworkAclId=aid, RuleNumber=100, Egress=False)
    ec2.delete_network_acl(NetworkAclId=aid)
    expect_error("InvalidNetworkAclID.NotFound", ec2.describe_network_acls, NetworkAclIds=[aid])


def test_network_interfaces_of_a_security_group_are_listed(ec2):
    """What Terraform's aws_security_group destroy asks: none for an unused group."""
    g = ec2.create_security_group(GroupName=uid("eni"), Description="d")["GroupId"]
    try:
        got = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [g]}])["NetworkInterfaces"]
        assert got == []
    finally:
        ec2.delete_security_group(GroupId=g)
    expect_error(
        "InvalidNetworkInterfaceID.NotFound", ec2.describe_network_interfaces, NetworkInterfaceIds=["eni-0123456789abcdef0"]
    )
    expect_error("InvalidNetworkInterfaceID.Malformed", ec2.describe_network_interfaces, NetworkInterfaceIds=["eni-x"])


def test_network_interface_lifecycle_and_bad_input(ec2, ec2_other, vpc):
    """A made interface: an address of its subnet, the VPC's default group unless given
    others, its own attributes and tags; EC2's errors change nothing; another account
    sees none of it. (Attaching to a running VM is tested in test_network.py.)"""
    default_group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc["vpc"]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    n = ec2.create_network_interface(
        SubnetId=vpc["subnet"], Description="first",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "Name", "Value": "one"}]}],
    )["NetworkInterface"]
    eni = n["NetworkInterfaceId"]
    assert_id(eni, "eni")
    try:
        assert n["Status"] == "available" and "Attachment" not in n
        assert n["SubnetId"] == vpc["subnet"] and n["VpcId"] == vpc["vpc"]
        assert [g["GroupId"] for g in n["Groups"]] == [default_group]
        assert n["PrivateIpAddress"].startswith(vpc["cidr"].split(".0.0/")[0] + ".1.")
        assert n["MacAddress"].startswith("02:") and n["SourceDestCheck"] is True
        assert {t["Key"]: t["Value"] for t in n["TagSet"]} == {"Name": "one"}
        # An address asked for; the same again is in use; outside the subnet is refused.
        base = vpc["cidr"].split(".0.0/")[0]
        m = ec2.create_network_interface(SubnetId=vpc["subnet"], PrivateIpAddress=f"{base}.1.40")["NetworkInterface"]
        assert m["PrivateIpAddress"] == f"{base}.1.40"
        expect_error("InvalidIPAddress.InUse", ec2.create_network_interface, SubnetId=vpc["subnet"],
                     PrivateIpAddress=f"{base}.1.40")
        expect_error("InvalidParameterValue", ec2.create_network_interface, SubnetId=vpc["subnet"],
                     PrivateIpAddress=f"{base}.2.40")
        expect_error("InvalidSubnetID.NotFound", ec2.create_network_interface, SubnetId="subnet-0123456789abcdef0")
        expect_error("InvalidParameterValue", ec2.create_network_interface, SubnetId=vpc["subnet"],
                     SecondaryPrivateIpAddressCount=2)
        other_vpc_group = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [default_vpc(ec2)["VpcId"]]}, {"Name": "group-name", "Values": ["default"]}]
        )["SecurityGroups"][0]["GroupId"]
        expect_error("InvalidParameterValue", ec2.create_network_interface, SubnetId=vpc["subnet"],
                     Groups=[other_vpc_group])
        # Described with filters; modified one attribute at a time.
        got = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [vpc["subnet"]]},
                                                       {"Name": "status", "Values": ["available"]}])
        assert {x["NetworkInterfaceId"] for x in got["NetworkInterfaces"]} == {eni, m["NetworkInterfaceId"]}
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Description={"Value": "renamed"})
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": False})
        g = ec2.create_security_group(GroupName=uid("eni"), Description="d", VpcId=vpc["vpc"])["GroupId"]
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[g])
        n = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]
        assert (n["Description"], n["SourceDestCheck"], [x["GroupId"] for x in n["Groups"]]) == ("renamed", False, [g])
        got = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [g]}])["NetworkInterfaces"]
        assert [x["NetworkInterfaceId"] for x in got] == [eni]
        # A group in use by an interface, and a subnet with interfaces, are not deleted.
        expect_error("DependencyViolation", ec2.delete_security_group, GroupId=g)
        expect_error("DependencyViolation", ec2.delete_subnet, SubnetId=vpc["subnet"])
        # Attach and detach refuse what does not exist.
        expect_error("InvalidInstanceID.NotFound", ec2.attach_network_interface, NetworkInterfaceId=eni,
                     InstanceId="i-0123456789abcdef0", DeviceIndex=1)
        expect_error("InvalidAttachmentID.NotFound", ec2.detach_network_interface,
                     AttachmentId="eni-attach-0123456789abcdef0")
        expect_error("InvalidAttachmentID.Malformed", ec2.detach_network_interface, AttachmentId="eni-attach-x")
        # Another account sees nothing of it.
        expect_error("InvalidNetworkInterfaceID.NotFound", ec2_other.describe_network_interfaces,
                     NetworkInterfaceIds=[eni])
        expect_error("InvalidNetworkInterfaceID.NotFound", ec2_other.delete_network_interface, NetworkInterfaceId=eni)
        expect_error("InvalidNetworkInterfaceID.NotFound", ec2_other.modify_network_interface_attribute,
                     NetworkInterfaceId=eni, Description={"Value": "theirs"})
        ec2.delete_network_interface(NetworkInterfaceId=m["NetworkInterfaceId"])
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[default_group])
        ec2.delete_security_group(GroupId=g)
    finally:
        ec2.delete_network_interface(NetworkInterfaceId=eni)
    expect_error("InvalidNetworkInterfaceID.NotFound", ec2.describe_network_interfaces, NetworkInterfaceIds=[eni])
    expect_error("InvalidNetworkInterfaceID.NotFound", ec2.delete_network_interface, NetworkInterfaceId=eni)


# --- DHCP options sets -----------------------------------------------------------------


def test_dhcp_options_lifecycle(ec2, ec2_other, vpc):
    d = ec2.create_dhcp_options(
        DhcpConfigurations=[
            {"Key": "domain-name", "Values": ["corp.example"]},
            {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS", "10.0.0.53"]},
        ],
        TagSpecifications=[{"ResourceType": "dhcp-options", "Tags": [{"Key": "Name", "Value": "corp"}]}],
    )["DhcpOptions"]
    did = d["DhcpOptionsId"]
    assert_id(did, "dopt")
    config = {c["Key"]: [v["Value"] for v in c["Values"]] for c in d["DhcpConfigurations"]}
    assert config == {"domain-name": ["corp.example"], "domain-name-servers": ["AmazonProvidedDNS", "10.0.0.53"]}
    assert tags_dict(d) == {"Name": "corp"}
    found = ec2.describe_dhcp_options(Filters=[{"Name": "value", "Values": ["corp.example"]}])["DhcpOptions"]
    assert [x["DhcpOptionsId"] for x in found] == [did]
    ec2.associate_dhcp_options(DhcpOptionsId=did, VpcId=vpc["vpc"])
    assert ec2.describe_vpcs(VpcIds=[vpc["vpc"]])["Vpcs"][0]["DhcpOptionsId"] == did
    expect_error("DependencyViolation", ec2.delete_dhcp_options, DhcpOptionsId=did)
    expect_error("InvalidDhcpOptionID.NotFound", ec2_other.describe_dhcp_options, DhcpOptionsIds=[did])
    ec2.associate_dhcp_options(DhcpOptionsId="default", VpcId=vpc["vpc"])
    assert ec2.describe_vpcs(VpcIds=[vpc["vpc"]])["Vpcs"][0]["DhcpOptionsId"] == "default"
    ec2.delete_dhcp_options(DhcpOptionsId=did)
    expect_error("InvalidDhcpOptionID.NotFound", ec2.describe_dhcp_options, DhcpOptionsIds=[did])
    for bad in (
        [{"Key": "colour", "Values": ["blue"]}],
        [{"Key": "domain-name-servers", "Values": ["banana"]}],
        [{"Key": "netbios-node-type", "Values": ["3"]}],
    ):
        expect_error("InvalidParameterValue", ec2.create_dhcp_options, DhcpConfigurations=bad)
    expect_error("InvalidDhcpOptionsId.Malformed", ec2.describe_dhcp_options, DhcpOptionsIds=["dopt-x"])


# --- Elastic IPs ---------------------------------------------------------------------


def test_elastic_ip_lifecycle_without_an_instance(ec2, ec2_other):
    name = uid("eip")
    a = ec2.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": name}]}]
    )
    alloc, ip = a["AllocationId"], a["PublicIp"]
    assert_id(alloc, "eipalloc")
    assert a["Domain"] == "vpc"
    got = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    assert (got["PublicIp"], tags_dict(got)) == (ip, {"Name": name})
    assert "AssociationId" not in got
    assert [x["AllocationId"] for x in ec2.describe_addresses(PublicIps=[ip])["Addresses"]] == [alloc]
    assert [x["AllocationId"] for x in ec2.describe_addresses(Filters=[{"Name": "tag:Name", "Values": [name]}])["Addresses"]] == [alloc]
    attr = ec2.describe_addresses_attribute(AllocationIds=[alloc], Attribute="domain-name")["Addresses"][0]
    assert attr["PublicIp"] == ip and attr["PtrRecord"]
    # Another account neither sees nor releases it.
    assert ip not in {x["PublicIp"] for x in ec2_other.describe_addresses()["Addresses"]}
    expect_error("InvalidAllocationID.NotFound", ec2_other.release_address, AllocationId=alloc)
    expect_error("InvalidAllocationID.NotFound", ec2_other.describe_addresses, AllocationIds=[alloc])
    # Another account's allocation never hands out the same address.
    theirs = ec2_other.allocate_address(Domain="vpc")
    assert theirs["PublicIp"] != ip
    ec2_other.release_address(AllocationId=theirs["AllocationId"])
    ec2.release_address(AllocationId=alloc)
    expect_error("InvalidAllocationID.NotFound", ec2.describe_addresses, AllocationIds=[alloc])
    expect_error("InvalidAddress.NotFound", ec2.describe_addresses, PublicIps=[ip])


def test_elastic_ip_bad_input(ec2):
    expect_error("InvalidAllocationID.Malformed", ec2.release_address, AllocationId="eipalloc-nope")
    expect_error("InvalidParameterValue", ec2.allocate_address, Domain="galaxy")
    alloc = ec2.allocate_address(Domain="vpc")["AllocationId"]
    try:
        expect_error(
            "InvalidInstanceID.NotFound", ec2.associate_address, AllocationId=alloc, InstanceId="i-0123456789abcdef0"
        )
        expect_error("InvalidAssociationID.NotFound", ec2.disassociate_address, AssociationId="eipassoc-0123456789abcdef0")
        expect_error("MissingParameter", ec2.associate_address, AllocationId=alloc)
        assert "InstanceId" not in ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    finally:
        ec2.release_address(AllocationId=alloc)


def test_elastic_ip_limit(ec2_other):
    made = []
    try:
        for _ in range(5):
            made.append(ec2_other.allocate_address(Domain="vpc")["AllocationId"])
        expect_error("AddressLimitExceeded", ec2_other.allocate_address, Domain="vpc")
    finally:
        for a in made:
            ec2_other.release_address(AllocationId=a)


# --- the CLI -------------------------------------------------------------------------


def test_network_stack_with_the_cli(aws):
    def ok(*args):
        rc, out, err = aws("ec2", *args)
        assert rc == 0, err
        return out

    vpc = ok("create-vpc", "--cidr-block", "10.77.0.0/16")["Vpc"]["VpcId"]
    ok("modify-vpc-attribute", "--vpc-id", vpc, "--enable-dns-hostnames", '{"Value":true}')
    igw = ok("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
    ok("attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    subnet = ok("create-subnet", "--vpc-id", vpc, "--cidr-block", "10.77.1.0/24")["Subnet"]["SubnetId"]
    ok("modify-subnet-attribute", "--subnet-id", subnet, "--map-public-ip-on-launch")
    rt = ok("create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
    assert ok("create-route", "--route-table-id", rt, "--destination-cidr-block", "0.0.0.0/0", "--gateway-id", igw)[
        "Return"
    ] is True
    assoc = ok("associate-route-table", "--route-table-id", rt, "--subnet-id", subnet)["AssociationId"]
    tables = ok("describe-route-tables", "--route-table-ids", rt)["RouteTables"]
    assert tables[0]["Associations"][0]["SubnetId"] == subnet
    rc, _, err = aws("ec2", "delete-vpc", "--vpc-id", vpc)
    assert rc != 0 and "DependencyViolation" in err
    ok("disassociate-route-table", "--association-id", assoc)
    ok("delete-route-table", "--route-table-id", rt)
    ok("delete-subnet", "--subnet-id", subnet)
    ok("detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    ok("delete-internet-gateway", "--internet-gateway-id", igw)
    ok("delete-vpc", "--vpc-id", vpc)
