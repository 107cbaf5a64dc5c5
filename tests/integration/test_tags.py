"""CreateTags, DeleteTags, DescribeTags, and tag filters on every taggable resource."""

import ipaddress

import pytest

from kiln_helpers import expect_error, new_group, new_vpc, tags_dict, uid


def make_vpc(ec2):
    v = new_vpc(ec2)
    return v["VpcId"]


def make_subnet(ec2):
    v = new_vpc(ec2)
    cidr = str(next(ipaddress.ip_network(v["CidrBlock"]).subnets(new_prefix=24)))
    return ec2.create_subnet(VpcId=v["VpcId"], CidrBlock=cidr)["Subnet"]["SubnetId"]


def make_group(ec2):
    return new_group(ec2)


def make_key(ec2):
    return ec2.create_key_pair(KeyName=uid("tagkey"), KeyType="ed25519")["KeyPairId"]


def tags_of_vpc(ec2, rid):
    return tags_dict(ec2.describe_vpcs(VpcIds=[rid])["Vpcs"][0])


def tags_of_subnet(ec2, rid):
    return tags_dict(ec2.describe_subnets(SubnetIds=[rid])["Subnets"][0])


def tags_of_group(ec2, rid):
    return tags_dict(ec2.describe_security_groups(GroupIds=[rid])["SecurityGroups"][0])


def tags_of_key(ec2, rid):
    return tags_dict(ec2.describe_key_pairs(KeyPairIds=[rid])["KeyPairs"][0])


def find_vpcs(ec2, filters):
    return {v["VpcId"] for v in ec2.describe_vpcs(Filters=filters)["Vpcs"]}


def find_subnets(ec2, filters):
    return {s["SubnetId"] for s in ec2.describe_subnets(Filters=filters)["Subnets"]}


def find_groups(ec2, filters):
    return {g["GroupId"] for g in ec2.describe_security_groups(Filters=filters)["SecurityGroups"]}


def find_keys(ec2, filters):
    return {k["KeyPairId"] for k in ec2.describe_key_pairs(Filters=filters)["KeyPairs"]}


KINDS = {
    "vpc": (make_vpc, tags_of_vpc, find_vpcs),
    "subnet": (make_subnet, tags_of_subnet, find_subnets),
    "security-group": (make_group, tags_of_group, find_groups),
    "key-pair": (make_key, tags_of_key, find_keys),
}


@pytest.fixture(params=list(KINDS))
def resource(request, ec2):
    make, tags_of, find = KINDS[request.param]
    return request.param, make(ec2), tags_of, find


def test_create_describe_delete_tags(ec2, resource):
    rtype, rid, tags_of, _ = resource
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": "one"}, {"Key": "env", "Value": "test"}])
    assert tags_of(ec2, rid) == {"Name": "one", "env": "test"}
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid]}])["Tags"]
    assert {(t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in rows} == {
        (rid, rtype, "Name", "one"),
        (rid, rtype, "env", "test"),
    }
    # Overwrite.
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": "two"}])
    assert tags_of(ec2, rid) == {"Name": "two", "env": "test"}
    # Key + a value that does not match: kept.
    ec2.delete_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": "one"}])
    assert tags_of(ec2, rid) == {"Name": "two", "env": "test"}
    # Key + the matching value: gone.
    ec2.delete_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": "two"}])
    assert tags_of(ec2, rid) == {"env": "test"}
    # Key alone: gone whatever the value.
    ec2.delete_tags(Resources=[rid], Tags=[{"Key": "env"}])
    assert tags_of(ec2, rid) == {}
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid]}])["Tags"] == []


def test_tag_filters(ec2, resource):
    rtype, rid, _, find = resource
    marker = uid("mark")
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "Name", "Value": marker}, {"Key": marker, "Value": "x"}])
    assert find(ec2, [{"Name": "tag:Name", "Values": [marker]}]) == {rid}
    assert find(ec2, [{"Name": "tag:Name", "Values": [marker[:-3] + "*"]}]) == {rid}
    assert find(ec2, [{"Name": "tag-key", "Values": [marker]}]) == {rid}
    assert find(ec2, [{"Name": "tag-value", "Values": [marker]}]) == {rid}
    assert find(ec2, [{"Name": "tag:Name", "Values": [marker + "-other"]}]) == set()
    # tag:KEY looks at that key only.
    assert find(ec2, [{"Name": "tag:Other", "Values": [marker]}]) == set()
    rows = ec2.describe_tags(Filters=[{"Name": "key", "Values": [marker]}, {"Name": "resource-type", "Values": [rtype]}])["Tags"]
    assert [(r["ResourceId"], r["Value"]) for r in rows] == [(rid, "x")]


def test_empty_values_and_delete_all(ec2):
    rid = make_vpc(ec2)
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "empty", "Value": ""}, {"Key": "full", "Value": "v"}, {"Key": "more", "Value": ""}])
    assert tags_of_vpc(ec2, rid) == {"empty": "", "full": "v", "more": ""}
    # An empty Value matches only an empty value.
    ec2.delete_tags(Resources=[rid], Tags=[{"Key": "full", "Value": ""}, {"Key": "empty", "Value": ""}])
    assert tags_of_vpc(ec2, rid) == {"full": "v", "more": ""}
    # No Tags at all deletes every tag.
    ec2.delete_tags(Resources=[rid])
    assert tags_of_vpc(ec2, rid) == {}


def test_user_strings_round_trip_through_xml(ec2):
    rid = make_group(ec2)
    nasty = {"a b+c": "<v&'\">ü€ +%20", "<key>&amp;": "]]></Response>"}
    ec2.create_tags(Resources=[rid], Tags=[{"Key": k, "Value": v} for k, v in nasty.items()])
    assert tags_of_group(ec2, rid) == nasty
    rows = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["<key>&amp;"]}])["Tags"]
    assert [(r["ResourceId"], r["Value"]) for r in rows] == [(rid, "]]></Response>")]


def test_several_resources_at_once(ec2):
    a, b = make_vpc(ec2), make_group(ec2)
    marker = uid("both")
    ec2.create_tags(Resources=[a, b], Tags=[{"Key": "batch", "Value": marker}])
    rows = ec2.describe_tags(Filters=[{"Name": "value", "Values": [marker]}])["Tags"]
    assert {(r["ResourceId"], r["ResourceType"]) for r in rows} == {(a, "vpc"), (b, "security-group")}
    ec2.delete_tags(Resources=[a, b], Tags=[{"Key": "batch"}])
    assert ec2.describe_tags(Filters=[{"Name": "value", "Values": [marker]}])["Tags"] == []


@pytest.mark.parametrize(
    "rid, code",
    [
        ("vpc-0123456789abcdef0", "InvalidVpcID.NotFound"),
        ("subnet-0123456789abcdef0", "InvalidSubnetID.NotFound"),
        ("sg-0123456789abcdef0", "InvalidGroup.NotFound"),
        ("key-0123456789abcdef0", "InvalidKeyPair.NotFound"),
    ],
)
def test_unknown_resources(ec2, rid, code):
    expect_error(code, ec2.create_tags, Resources=[rid], Tags=[{"Key": "a", "Value": "b"}], status=400)
    expect_error(code, ec2.delete_tags, Resources=[rid], Tags=[{"Key": "a"}])


def test_create_tags_is_all_or_nothing(ec2):
    rid = make_vpc(ec2)
    expect_error("InvalidVpcID.NotFound", ec2.create_tags, Resources=[rid, "vpc-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])
    assert tags_of_vpc(ec2, rid) == {}


@pytest.mark.parametrize("rid", ["vpc-xyz", "banana", "vpc-0123456789ABCDEF0", "sg-"])
def test_malformed_resource_ids(ec2, rid):
    expect_error("InvalidID", ec2.create_tags, Resources=[rid], Tags=[{"Key": "a", "Value": "b"}], status=400)


def test_tag_limit(ec2):
    rid = make_vpc(ec2)
    fifty_one = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    expect_error("TagLimitExceeded", ec2.create_tags, Resources=[rid], Tags=fifty_one, status=400)
    assert tags_of_vpc(ec2, rid) == {}
    ec2.create_tags(Resources=[rid], Tags=fifty_one[:45])
    expect_error("TagLimitExceeded", ec2.create_tags, Resources=[rid], Tags=[{"Key": f"n{i}", "Value": "v"} for i in range(6)])
    assert len(tags_of_vpc(ec2, rid)) == 45, "a refused CreateTags adds nothing"
    # Overwriting existing keys does not count against the limit; exactly 50 is fine.
    ec2.create_tags(Resources=[rid], Tags=fifty_one[:50])
    assert len(tags_of_vpc(ec2, rid)) == 50


def test_bad_tags(ec2):
    rid = make_vpc(ec2)
    expect_error("InvalidParameterValue", ec2.create_tags, Resources=[rid], Tags=[{"Key": "aws:reserved", "Value": "x"}])
    expect_error("InvalidParameterValue", ec2.create_tags, Resources=[rid], Tags=[{"Key": "k" * 129, "Value": "x"}])
    expect_error("InvalidParameterValue", ec2.create_tags, Resources=[rid], Tags=[{"Key": "k", "Value": "v" * 257}])
    ec2.create_tags(Resources=[rid], Tags=[{"Key": "k" * 128, "Value": "v" * 256}])
    assert tags_of_vpc(ec2, rid) == {"k" * 128: "v" * 256}


def test_tag_specification_with_the_wrong_resource_type(ec2):
    before = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    expect_error(
        "InvalidParameterValue",
        ec2.create_vpc,
        CidrBlock="10.50.0.0/16",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": [{"Key": "a", "Value": "b"}]}],
        status=400,
    )
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} == before
    name = uid("wrongspec")
    expect_error(
        "InvalidParameterValue",
        ec2.create_security_group,
        GroupName=name,
        Description="d",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}],
    )
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"] == []


def test_describe_tags_pages(ec2):
    rid = make_vpc(ec2)
    ec2.create_tags(Resources=[rid], Tags=[{"Key": f"p{i:02}", "Value": str(i)} for i in range(12)])
    paginator = ec2.get_paginator("describe_tags")
    pages = list(paginator.paginate(Filters=[{"Name": "resource-id", "Values": [rid]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["Tags"]) for p in pages] == [5, 5, 2]
    keys = [t["Key"] for p in pages for t in p["Tags"]]
    assert sorted(keys) == [f"p{i:02}" for i in range(12)]
    expect_error("InvalidParameterValue", ec2.describe_tags, Filters=[{"Name": "colour", "Values": ["x"]}])


def test_tags_with_the_cli(aws, ec2):
    rid = make_group(ec2)
    rc, out, err = aws("ec2", "create-tags", "--resources", rid, "--tags", "Key=Name,Value=cli", "Key=team,Value=ops")
    assert rc == 0, err
    rc, out, err = aws("ec2", "describe-tags", "--filters", f"Name=resource-id,Values={rid}")
    assert rc == 0, err
    assert {(t["Key"], t["Value"], t["ResourceType"]) for t in out["Tags"]} == {
        ("Name", "cli", "security-group"),
        ("team", "ops", "security-group"),
    }
    rc, out, err = aws("ec2", "delete-tags", "--resources", rid, "--tags", "Key=team")
    assert rc == 0, err
    assert tags_of_group(ec2, rid) == {"Name": "cli"}
    rc, out, err = aws("ec2", "create-tags", "--resources", "vpc-0123456789abcdef0", "--tags", "Key=a,Value=b")
    assert rc != 0 and "InvalidVpcID.NotFound" in err
