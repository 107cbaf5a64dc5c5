"""Accounts and regions are separate namespaces: nothing of one is visible from another."""

import pytest

from kiln_helpers import default_vpc, expect_error, new_group, new_vpc, uid


@pytest.fixture(scope="module")
def operator_stuff(ec2):
    """Resources of the operator account in us-east-1."""
    vpc = new_vpc(ec2, "10.123.0.0/16")["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.123.1.0/24")["Subnet"]["SubnetId"]
    group = new_group(ec2, vpc)
    key_name = uid("mine")
    key = ec2.create_key_pair(KeyName=key_name, KeyType="ed25519")["KeyPairId"]
    marker = uid("secret")
    ec2.create_tags(Resources=[vpc, group], Tags=[{"Key": "owner", "Value": marker}])
    return {"vpc": vpc, "subnet": subnet, "group": group, "key": key, "key_name": key_name, "marker": marker}


# --- accounts --------------------------------------------------------------------------


def test_other_account_has_its_own_default_vpc(ec2, ec2_other):
    mine, theirs = default_vpc(ec2), default_vpc(ec2_other)
    assert theirs["VpcId"] != mine["VpcId"]
    assert theirs["CidrBlock"] == "172.31.0.0/16"
    assert theirs["OwnerId"] != mine["OwnerId"]
    subnets = ec2_other.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [theirs["VpcId"]]}])["Subnets"]
    assert len(subnets) == 6  # one per zone of us-east-1


def test_other_account_cannot_see_vpcs(ec2, ec2_other, operator_stuff):
    vpc, subnet = operator_stuff["vpc"], operator_stuff["subnet"]
    assert vpc not in {v["VpcId"] for v in ec2_other.describe_vpcs()["Vpcs"]}
    assert default_vpc(ec2)["VpcId"] not in {v["VpcId"] for v in ec2_other.describe_vpcs()["Vpcs"]}
    expect_error("InvalidVpcID.NotFound", ec2_other.describe_vpcs, VpcIds=[vpc])
    expect_error("InvalidVpcID.NotFound", ec2_other.delete_vpc, VpcId=vpc)
    expect_error("InvalidVpcID.NotFound", ec2_other.create_subnet, VpcId=vpc, CidrBlock="10.0.0.0/24")
    expect_error("InvalidVpcID.NotFound", ec2_other.create_security_group, GroupName=uid("g"), Description="d", VpcId=vpc)
    expect_error("InvalidSubnetID.NotFound", ec2_other.describe_subnets, SubnetIds=[subnet])
    expect_error("InvalidSubnetID.NotFound", ec2_other.delete_subnet, SubnetId=subnet)
    assert subnet not in {s["SubnetId"] for s in ec2_other.describe_subnets()["Subnets"]}
    # Still there for its owner.
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["VpcId"] == vpc
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["SubnetId"] == subnet


def test_other_account_cannot_see_security_groups(ec2, ec2_other, operator_stuff):
    group = operator_stuff["group"]
    assert group not in {g["GroupId"] for g in ec2_other.describe_security_groups()["SecurityGroups"]}
    expect_error("InvalidGroup.NotFound", ec2_other.describe_security_groups, GroupIds=[group])
    expect_error("InvalidGroup.NotFound", ec2_other.delete_security_group, GroupId=group)
    perm = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    expect_error("InvalidGroup.NotFound", ec2_other.authorize_security_group_ingress, GroupId=group, IpPermissions=perm)
    # Nor reference one of them from its own group.
    own = new_group(ec2_other)
    expect_error(
        "InvalidGroup.NotFound",
        ec2_other.authorize_security_group_ingress,
        GroupId=own,
        IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]}],
    )
    rules = ec2_other.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])["SecurityGroupRules"]
    assert rules == []
    assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"] == []


def test_same_group_name_in_both_accounts(ec2, ec2_other):
    name = uid("shared")
    mine = new_group(ec2, None, name)
    theirs = new_group(ec2_other, None, name)
    assert mine != theirs
    (g,) = ec2_other.describe_security_groups(GroupNames=[name])["SecurityGroups"]
    assert g["GroupId"] == theirs


def test_other_account_cannot_see_key_pairs(ec2, ec2_other, operator_stuff):
    name, key = operator_stuff["key_name"], operator_stuff["key"]
    expect_error("InvalidKeyPair.NotFound", ec2_other.describe_key_pairs, KeyNames=[name])
    expect_error("InvalidKeyPair.NotFound", ec2_other.describe_key_pairs, KeyPairIds=[key])
    assert name not in {k["KeyName"] for k in ec2_other.describe_key_pairs()["KeyPairs"]}
    # Deleting someone else's key "succeeds" as deleting a missing key does, but deletes nothing.
    ec2_other.delete_key_pair(KeyName=name)
    ec2_other.delete_key_pair(KeyPairId=key)
    assert ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"][0]["KeyPairId"] == key
    # The name is free in the other account.
    theirs = ec2_other.create_key_pair(KeyName=name, KeyType="ed25519")
    assert theirs["KeyPairId"] != key


def test_other_account_cannot_tag_or_read_tags(ec2, ec2_other, operator_stuff):
    vpc, group, key, marker = (operator_stuff[k] for k in ("vpc", "group", "key", "marker"))
    expect_error("InvalidVpcID.NotFound", ec2_other.create_tags, Resources=[vpc], Tags=[{"Key": "pwned", "Value": "1"}])
    expect_error("InvalidGroup.NotFound", ec2_other.create_tags, Resources=[group], Tags=[{"Key": "pwned", "Value": "1"}])
    expect_error("InvalidKeyPair.NotFound", ec2_other.create_tags, Resources=[key], Tags=[{"Key": "pwned", "Value": "1"}])
    expect_error("InvalidVpcID.NotFound", ec2_other.delete_tags, Resources=[vpc], Tags=[{"Key": "owner"}])
    assert ec2_other.describe_tags(Filters=[{"Name": "value", "Values": [marker]}])["Tags"] == []
    assert ec2_other.describe_vpcs(Filters=[{"Name": "tag:owner", "Values": [marker]}])["Vpcs"] == []
    mine = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [vpc]}])["Tags"]
    assert {(t["Key"], t["Value"]) for t in mine} == {("owner", marker)}


def test_pagination_tokens_are_scoped_to_the_account(ec2, ec2_other):
    for _ in range(6):
        new_group(ec2)
    for _ in range(6):
        new_group(ec2_other)
    token = ec2.describe_security_groups(MaxResults=5)["NextToken"]
    expect_error("InvalidPaginationToken", ec2_other.describe_security_groups, MaxResults=5, NextToken=token)


def test_other_account_with_the_cli(aws, operator_stuff):
    rc, out, err = aws("ec2", "describe-vpcs", "--vpc-ids", operator_stuff["vpc"], profile="other")
    assert rc != 0 and "InvalidVpcID.NotFound" in err
    rc, out, err = aws("ec2", "describe-key-pairs", profile="other", region="us-east-1")
    assert rc == 0, err
    assert operator_stuff["key"] not in {k["KeyPairId"] for k in out["KeyPairs"]}


# --- regions ---------------------------------------------------------------------------


def test_regions_have_their_own_default_vpcs(ec2, ec2_west):
    east, west = default_vpc(ec2), default_vpc(ec2_west)
    assert east["VpcId"] != west["VpcId"]
    assert west["CidrBlock"] == "172.31.0.0/16"
    assert east["VpcId"] not in {v["VpcId"] for v in ec2_west.describe_vpcs()["Vpcs"]}
    subnets = ec2_west.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [west["VpcId"]]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_regions_do_not_share_resources(ec2_west, operator_stuff):
    expect_error("InvalidVpcID.NotFound", ec2_west.describe_vpcs, VpcIds=[operator_stuff["vpc"]])
    expect_error("InvalidGroup.NotFound", ec2_west.describe_security_groups, GroupIds=[operator_stuff["group"]])
    expect_error("InvalidVpcID.NotFound", ec2_west.create_tags, Resources=[operator_stuff["vpc"]], Tags=[{"Key": "a", "Value": "b"}])
    assert ec2_west.describe_tags(Filters=[{"Name": "value", "Values": [operator_stuff["marker"]]}])["Tags"] == []


def test_regions_do_not_share_key_pairs(ec2, ec2_west, operator_stuff):
    name, key = operator_stuff["key_name"], operator_stuff["key"]
    expect_error("InvalidKeyPair.NotFound", ec2_west.describe_key_pairs, KeyNames=[name])
    expect_error("InvalidKeyPair.NotFound", ec2_west.describe_key_pairs, KeyPairIds=[key])
    east_keys = {k["KeyPairId"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    west_keys = {k["KeyPairId"] for k in ec2_west.describe_key_pairs()["KeyPairs"]}
    assert key in east_keys
    assert not (east_keys & west_keys), "a us-east-1 key pair is visible in eu-west-1"
    # The same name may be used in another region, and deleting it there leaves ours alone.
    west = ec2_west.create_key_pair(KeyName=name, KeyType="ed25519")
    assert west["KeyPairId"] != key
    ec2_west.delete_key_pair(KeyName=name)
    assert ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"][0]["KeyPairId"] == key


def test_region_key_pairs_with_the_cli(aws, operator_stuff):
    rc, out, err = aws("ec2", "describe-key-pairs", "--key-names", operator_stuff["key_name"], region="eu-west-1")
    assert rc != 0 and "InvalidKeyPair.NotFound" in err
    rc, out, err = aws("ec2", "describe-key-pairs", "--key-names", operator_stuff["key_name"], region="us-east-1")
    assert rc == 0, err
    assert out["KeyPairs"][0]["KeyPairId"] == operator_stuff["key"]
