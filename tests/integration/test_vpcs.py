"""VPCs and subnets: the default VPC, CIDR rules, dependencies, lookups."""

import ipaddress

import pytest

from kiln_helpers import assert_id, default_vpc, expect_error, new_vpc, tags_dict, uid


def vpc_ids(ec2):
    return {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}


def subnet_ids(ec2):
    return {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}


@pytest.fixture
def vpc(ec2):
    """A fresh 10.x.0.0/16 VPC, removed (with its subnets) afterwards."""
    v = new_vpc(ec2)
    yield v
    for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    try:
        ec2.delete_vpc(VpcId=v["VpcId"])
    except Exception:
        pass


# --- the default VPC ------------------------------------------------------------------


def test_default_vpc(ec2):
    v = default_vpc(ec2)
    assert_id(v["VpcId"], "vpc")
    assert v["CidrBlock"] == "172.31.0.0/16"
    assert v["IsDefault"] is True
    assert v["State"] == "available"
    assert v["OwnerId"].isdigit() and len(v["OwnerId"]) == 12


def test_default_subnets(ec2):
    v = default_vpc(ec2)
    # Other tests may add subnets to the default VPC; the default ones are one per zone (six in us-east-1).
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}, {"Name": "default-for-az", "Values": ["true"]}]
    )["Subnets"]
    assert len(subnets) == 6
    assert sorted(s["AvailabilityZone"] for s in subnets) == [f"us-east-1{x}" for x in "abcdef"]
    vpc_net = ipaddress.ip_network(v["CidrBlock"])
    nets = [ipaddress.ip_network(s["CidrBlock"]) for s in subnets]
    for s, net in zip(subnets, nets):
        assert net.prefixlen == 20
        assert net.subnet_of(vpc_net)
        assert s["DefaultForAz"] is True
        assert s["MapPublicIpOnLaunch"] is True
        assert s["AvailableIpAddressCount"] == 4096 - 5
        assert_id(s["SubnetId"], "subnet")
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    defaults = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    assert {s["SubnetId"] for s in defaults} == {s["SubnetId"] for s in subnets}


def test_default_security_group(ec2):
    v = default_vpc(ec2)
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    g = groups[0]
    # Ingress from its own members; egress anywhere.
    (ingress,) = g["IpPermissions"]
    assert ingress["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in ingress["UserIdGroupPairs"]] == [g["GroupId"]]
    (egress,) = g["IpPermissionsEgress"]
    assert egress["IpProtocol"] == "-1"
    assert [r["CidrIp"] for r in egress["IpRanges"]] == ["0.0.0.0/0"]


def test_account_attributes_name_the_default_vpc(ec2):
    attrs = ec2.describe_account_attributes(AttributeNames=["default-vpc", "supported-platforms"])["AccountAttributes"]
    values = {a["AttributeName"]: [x["AttributeValue"] for x in a["AttributeValues"]] for a in attrs}
    assert values["default-vpc"] == [default_vpc(ec2)["VpcId"]]
    assert values["supported-platforms"] == ["VPC"]


# --- create / describe / delete ---------------------------------------------------------


def test_create_describe_delete_vpc(ec2):
    name = uid("vpc")
    v = ec2.create_vpc(
        CidrBlock="10.20.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": name}]}],
    )["Vpc"]
    assert_id(v["VpcId"], "vpc")
    assert v["CidrBlock"] == "10.20.0.0/16"
    assert v["IsDefault"] is False
    assert tags_dict(v) == {"Name": name}
    (d,) = ec2.describe_vpcs(VpcIds=[v["VpcId"]])["Vpcs"]
    assert (d["CidrBlock"], d["IsDefault"], tags_dict(d)) == ("10.20.0.0/16", False, {"Name": name})
    assert d["CidrBlockAssociationSet"][0]["CidrBlock"] == "10.20.0.0/16"
    # Every VPC comes with its own default security group.
    sgs = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["SecurityGroups"]
    assert [g["GroupName"] for g in sgs] == ["default"]
    by_tag = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
    assert [x["VpcId"] for x in by_tag] == [v["VpcId"]]
    ec2.delete_vpc(VpcId=v["VpcId"])
    expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=[v["VpcId"]])
    assert v["VpcId"] not in vpc_ids(ec2)
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [v["VpcId"]]}])["Tags"] == []
    gone = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"]]}])["SecurityGroups"]
    assert gone == []


@pytest.mark.parametrize(
    "cidr, code",
    [
        ("10.0.0.0/8", "InvalidVpc.Range"),
        ("10.0.0.0/29", "InvalidVpc.Range"),
        ("garbage", "InvalidParameterValue"),
        ("10.0.0.0/33", "InvalidParameterValue"),
        ("300.1.0.0/16", "InvalidParameterValue"),
    ],
)
def test_bad_vpc_cidrs(ec2, cidr, code):
    before = vpc_ids(ec2)
    expect_error(code, ec2.create_vpc, CidrBlock=cidr, status=400)
    assert vpc_ids(ec2) == before


def test_vpc_filters(ec2, vpc):
    found = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": [vpc["CidrBlock"]]}, {"Name": "is-default", "Values": ["false"]}])
    assert vpc["VpcId"] in {v["VpcId"] for v in found["Vpcs"]}
    assert all(v["CidrBlock"] == vpc["CidrBlock"] for v in found["Vpcs"])
    expect_error("InvalidParameterValue", ec2.describe_vpcs, Filters=[{"Name": "colour", "Values": ["x"]}])


def test_malformed_and_unknown_vpc_ids(ec2):
    expect_error("InvalidVpcID.Malformed", ec2.describe_vpcs, VpcIds=["vpc-xyz"], status=400)
    expect_error("InvalidVpcID.Malformed", ec2.delete_vpc, VpcId="vpc-123", status=400)
    resp = expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=["vpc-0123456789abcdef0"], status=400)
    assert "vpc-0123456789abcdef0" in resp["Error"]["Message"]
    expect_error("InvalidVpcID.NotFound", ec2.delete_vpc, VpcId="vpc-0123456789abcdef0")
    # Legacy 8-hex ids are well-formed.
    expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=["vpc-01234567"])


def test_describe_vpcs_is_all_or_nothing(ec2):
    expect_error("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=[default_vpc(ec2)["VpcId"], "vpc-0123456789abcdef0"])


# --- subnets ----------------------------------------------------------------------------


def test_create_subnet_inside(ec2, vpc):
    base = ipaddress.ip_network(vpc["CidrBlock"])
    cidr = str(list(base.subnets(new_prefix=24))[1])
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=cidr, AvailabilityZone="us-east-1b")["Subnet"]
    assert_id(s["SubnetId"], "subnet")
    assert (s["VpcId"], s["CidrBlock"], s["AvailabilityZone"]) == (vpc["VpcId"], cidr, "us-east-1b")
    assert s["AvailabilityZoneId"] == "use1-az2"
    assert s["DefaultForAz"] is False
    assert s["MapPublicIpOnLaunch"] is False
    assert s["AvailableIpAddressCount"] == 256 - 5
    (d,) = ec2.describe_subnets(SubnetIds=[s["SubnetId"]])["Subnets"]
    assert d["CidrBlock"] == cidr


def test_create_subnet_by_zone_id(ec2, vpc):
    base = ipaddress.ip_network(vpc["CidrBlock"])
    cidr = str(list(base.subnets(new_prefix=24))[7])
    s = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=cidr, AvailabilityZoneId="use1-az3")["Subnet"]
    assert s["AvailabilityZone"] == "us-east-1c"


def test_subnet_cidr_errors_create_nothing(ec2, vpc):
    base = ipaddress.ip_network(vpc["CidrBlock"])
    first = str(list(base.subnets(new_prefix=24))[0])
    ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=first, AvailabilityZone="us-east-1a")
    before = subnet_ids(ec2)
    expect_error("InvalidSubnet.Range", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock="192.168.0.0/24", status=400)
    expect_error("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=first, status=400)
    superset = str(list(base.subnets(new_prefix=23))[0])
    expect_error("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=superset)
    inner = str(list(ipaddress.ip_network(first).subnets(new_prefix=26))[1])
    expect_error("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=inner)
    small = str(list(base.subnets(new_prefix=29))[-1])
    expect_error("InvalidSubnet.Range", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=small)
    expect_error("InvalidParameterValue", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock="not-a-cidr")
    # Host bits are cleared, as EC2 documents for CreateVpc and CreateSubnet.
    canonical = ec2.create_vpc(CidrBlock="100.68.0.18/18")["Vpc"]
    assert canonical["CidrBlock"] == "100.68.0.0/18"
    ec2.delete_vpc(VpcId=canonical["VpcId"])
    free = str(list(base.subnets(new_prefix=24))[5])
    expect_error(
        "InvalidParameterValue", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=free, AvailabilityZone="us-east-1z"
    )
    expect_error(
        "InvalidParameterValue", ec2.create_subnet, VpcId=vpc["VpcId"], CidrBlock=free, AvailabilityZone="eu-west-1a"
    )
    expect_error("InvalidVpcID.NotFound", ec2.create_subnet, VpcId="vpc-0123456789abcdef0", CidrBlock="10.0.0.0/24")
    expect_error("InvalidVpcID.Malformed", ec2.create_subnet, VpcId="vpc-zz", CidrBlock="10.0.0.0/24")
    assert subnet_ids(ec2) == before


def test_delete_vpc_with_a_subnet_is_a_dependency_violation(ec2):
    v = new_vpc(ec2, "10.30.0.0/16")
    s = ec2.create_subnet(VpcId=v["VpcId"], CidrBlock="10.30.1.0/24")["Subnet"]
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=v["VpcId"], status=400)
    assert v["VpcId"] in vpc_ids(ec2)
    ec2.delete_subnet(SubnetId=s["SubnetId"])
    expect_error("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=[s["SubnetId"]])
    ec2.delete_vpc(VpcId=v["VpcId"])
    assert v["VpcId"] not in vpc_ids(ec2)


def test_delete_vpc_with_a_security_group_is_a_dependency_violation(ec2):
    v = new_vpc(ec2)
    gid = ec2.create_security_group(GroupName=uid("grp"), Description="d", VpcId=v["VpcId"])["GroupId"]
    expect_error("DependencyViolation", ec2.delete_vpc, VpcId=v["VpcId"])
    ec2.delete_security_group(GroupId=gid)
    ec2.delete_vpc(VpcId=v["VpcId"])


def test_describe_subnets_filters(ec2, vpc):
    base = list(ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=24))
    a = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=str(base[10]), AvailabilityZone="us-east-1a")["Subnet"]
    b = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=str(base[11]), AvailabilityZone="us-east-1b")["Subnet"]
    in_vpc = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    assert {s["SubnetId"] for s in in_vpc} == {a["SubnetId"], b["SubnetId"]}
    in_a = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "availability-zone", "Values": ["us-east-1a"]}]
    )["Subnets"]
    assert [s["SubnetId"] for s in in_a] == [a["SubnetId"]]
    either = ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a", "us-east-1b"]}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    )["Subnets"]
    assert len(either) == 2
    by_cidr = ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": [str(base[11])]}, {"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    assert [s["SubnetId"] for s in by_cidr["Subnets"]] == [b["SubnetId"]]
    expect_error("InvalidParameterValue", ec2.describe_subnets, Filters=[{"Name": "colour", "Values": ["x"]}])


def test_malformed_and_unknown_subnet_ids(ec2):
    expect_error("InvalidSubnetID.Malformed", ec2.describe_subnets, SubnetIds=["subnet-xyz"])
    expect_error("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"])
    expect_error("InvalidSubnetID.NotFound", ec2.delete_subnet, SubnetId="subnet-0123456789abcdef0")


# --- the AWS CLI ------------------------------------------------------------------------


def test_vpc_lifecycle_with_the_cli(aws):
    rc, out, err = aws("ec2", "create-vpc", "--cidr-block", "10.40.0.0/16")
    assert rc == 0, err
    vpc_id = out["Vpc"]["VpcId"]
    rc, out, err = aws(
        "ec2", "create-subnet", "--vpc-id", vpc_id, "--cidr-block", "10.40.5.0/24", "--availability-zone", "us-east-1c"
    )
    assert rc == 0, err
    subnet_id = out["Subnet"]["SubnetId"]
    rc, out, err = aws("ec2", "delete-vpc", "--vpc-id", vpc_id)
    assert rc != 0 and "DependencyViolation" in err
    rc, out, err = aws("ec2", "delete-subnet", "--subnet-id", subnet_id)
    assert rc == 0, err
    rc, out, err = aws("ec2", "delete-vpc", "--vpc-id", vpc_id)
    assert rc == 0, err
    rc, out, err = aws("ec2", "describe-vpcs", "--vpc-ids", vpc_id)
    assert rc != 0 and "InvalidVpcID.NotFound" in err
