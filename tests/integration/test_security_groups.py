"""Security groups and their rules, in every request form boto3 and the CLI send."""

import pytest

from kiln_helpers import (
    assert_id,
    default_vpc,
    describe_group,
    expect_error,
    flatten_permissions,
    new_group,
    new_vpc,
    tags_dict,
    uid,
)

ALL_EGRESS = ("-1", None, None, "cidr", "0.0.0.0/0", None)


@pytest.fixture(scope="module")
def vpc(ec2):
    """A non-default VPC for this module's groups."""
    return new_vpc(ec2)["VpcId"]


@pytest.fixture
def group(ec2, vpc):
    return new_group(ec2, vpc)


def rules_of(ec2, group_id):
    return ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])["SecurityGroupRules"]


def ingress(ec2, group_id):
    return flatten_permissions(describe_group(ec2, group_id)["IpPermissions"])


def egress(ec2, group_id):
    return flatten_permissions(describe_group(ec2, group_id)["IpPermissionsEgress"])


def tcp(port, cidr, description=None):
    r = {"CidrIp": cidr}
    if description is not None:
        r["Description"] = description
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [r]}


# --- create ----------------------------------------------------------------------------


def test_new_group_allows_all_egress_and_no_ingress(ec2, vpc):
    name = uid("web")
    resp = ec2.create_security_group(
        GroupName=name,
        Description="web servers",
        VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": name}]}],
    )
    gid = resp["GroupId"]
    assert_id(gid, "sg")
    assert tags_dict(resp) == {"Name": name}
    assert resp["SecurityGroupArn"].endswith(f"security-group/{gid}")
    g = describe_group(ec2, gid)
    assert (g["GroupName"], g["Description"], g["VpcId"]) == (name, "web servers", vpc)
    assert g["IpPermissions"] == []
    assert flatten_permissions(g["IpPermissionsEgress"]) == {ALL_EGRESS}
    assert tags_dict(g) == {"Name": name}
    assert g["OwnerId"].isdigit() and len(g["OwnerId"]) == 12
    (rule,) = rules_of(ec2, gid)
    assert rule["IsEgress"] is True and rule["IpProtocol"] == "-1" and rule["CidrIpv4"] == "0.0.0.0/0"


def test_create_without_vpc_uses_the_default_vpc(ec2):
    gid = new_group(ec2)
    assert describe_group(ec2, gid)["VpcId"] == default_vpc(ec2)["VpcId"]


def test_duplicate_name(ec2, vpc):
    name = uid("dup")
    new_group(ec2, vpc, name)
    expect_error("InvalidGroup.Duplicate", ec2.create_security_group, GroupName=name, Description="d", VpcId=vpc, status=400)
    # Names are unique case-insensitively within a VPC...
    expect_error("InvalidGroup.Duplicate", ec2.create_security_group, GroupName=name.upper(), Description="d", VpcId=vpc)
    # ...but another VPC may use the same name.
    assert new_group(ec2, None, name)
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
    assert len(found) == 2


def test_bad_group_names(ec2, vpc):
    expect_error("InvalidParameterValue", ec2.create_security_group, GroupName="sg-mine", Description="d", VpcId=vpc)
    expect_error("InvalidVpcID.NotFound", ec2.create_security_group, GroupName=uid("g"), Description="d", VpcId="vpc-0123456789abcdef0")
    expect_error("InvalidVpcID.Malformed", ec2.create_security_group, GroupName=uid("g"), Description="d", VpcId="vpc-bad")


# --- authorize -------------------------------------------------------------------------


def test_authorize_ingress_with_ip_permissions(ec2, vpc, group):
    peer = new_group(ec2, vpc)
    resp = ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            tcp(22, "10.0.0.0/8", "ssh from the office"),
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "192.168.0.0/16"}]},
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "6", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "172.16.0.0/12"}]},
            {"IpProtocol": "47", "IpRanges": [{"CidrIp": "198.51.100.0/24"}]},
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "web v6"}]},
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "UserIdGroupPairs": [{"GroupId": peer, "Description": "app servers"}],
            },
        ],
    )
    assert resp["Return"] is True
    rules = resp["SecurityGroupRules"]
    assert len(rules) == 7
    for r in rules:
        assert_id(r["SecurityGroupRuleId"], "sgr")
        assert r["GroupId"] == group and r["IsEgress"] is False
    assert ingress(ec2, group) == {
        ("tcp", 22, 22, "cidr", "10.0.0.0/8", "ssh from the office"),
        ("-1", None, None, "cidr", "192.168.0.0/16", None),
        ("icmp", 8, -1, "cidr", "0.0.0.0/0", None),
        ("tcp", 443, 443, "cidr", "172.16.0.0/12", None),  # "6" is echoed as "tcp"
        ("47", None, None, "cidr", "198.51.100.0/24", None),
        ("tcp", 80, 80, "cidr6", "::/0", "web v6"),
        ("tcp", 5432, 5432, "group", peer, "app servers"),
    }
    by_id = {r["SecurityGroupRuleId"]: r for r in rules_of(ec2, group)}
    ref = next(r for r in by_id.values() if r.get("ReferencedGroupInfo"))
    assert ref["ReferencedGroupInfo"]["GroupId"] == peer and ref["FromPort"] == 5432
    v6 = next(r for r in by_id.values() if r.get("CidrIpv6"))
    assert (v6["CidrIpv6"], v6["Description"]) == ("::/0", "web v6")


def test_rules_with_the_same_ports_are_aggregated(ec2, group):
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.1.0.0/16")])
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.2.0.0/16")])
    perms = describe_group(ec2, group)["IpPermissions"]
    assert len(perms) == 1
    assert sorted(r["CidrIp"] for r in perms[0]["IpRanges"]) == ["10.1.0.0/16", "10.2.0.0/16"]


def test_cli_port_and_cidr_form(aws, ec2, group):
    rc, out, err = aws(
        "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/8"
    )
    assert rc == 0, err
    rc, out, err = aws(
        "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "udp", "--port", "1000-2000", "--cidr", "10.3.0.0/16"
    )
    assert rc == 0, err
    rc, out, err = aws("ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "all", "--cidr", "10.4.0.0/16")
    assert rc == 0, err
    assert ingress(ec2, group) == {
        ("tcp", 22, 22, "cidr", "10.0.0.0/8", None),
        ("udp", 1000, 2000, "cidr", "10.3.0.0/16", None),
        ("-1", None, None, "cidr", "10.4.0.0/16", None),
    }
    rc, out, err = aws(
        "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "22", "--cidr", "10.0.0.0/8"
    )
    assert rc != 0 and "InvalidPermission.Duplicate" in err
    rc, out, err = aws("ec2", "describe-security-groups", "--group-ids", group, "--query", "SecurityGroups[0].IpPermissions[].IpProtocol")
    assert rc == 0, err
    assert sorted(out) == ["-1", "tcp", "udp"]


def test_cli_source_group_form(aws, ec2, vpc, group):
    peer = new_group(ec2, vpc)
    rc, out, err = aws(
        "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "8080", "--source-group", peer
    )
    assert rc == 0, err
    assert ingress(ec2, group) == {("tcp", 8080, 8080, "group", peer, None)}


def test_legacy_flat_form(ec2, group):
    ec2.authorize_security_group_ingress(GroupId=group, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    assert ingress(ec2, group) == {("tcp", 80, 80, "cidr", "0.0.0.0/0", None)}
    ec2.revoke_security_group_ingress(GroupId=group, IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0")
    assert ingress(ec2, group) == set()


def test_group_name_in_the_default_vpc(ec2):
    name = uid("byname")
    gid = new_group(ec2, None, name)
    ec2.authorize_security_group_ingress(GroupName=name, IpPermissions=[tcp(3306, "10.5.0.0/16")])
    assert ingress(ec2, gid) == {("tcp", 3306, 3306, "cidr", "10.5.0.0/16", None)}


def test_reference_by_group_name_in_the_default_vpc(ec2):
    name = uid("peer")
    peer = new_group(ec2, None, name)
    gid = new_group(ec2)
    ec2.authorize_security_group_ingress(
        GroupId=gid, IpPermissions=[{"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "UserIdGroupPairs": [{"GroupName": name}]}]
    )
    assert ingress(ec2, gid) == {("udp", 53, 53, "group", peer, None)}
    (perm,) = describe_group(ec2, gid)["IpPermissions"]
    assert perm["UserIdGroupPairs"][0]["GroupName"] == name
    found = ec2.describe_security_groups(Filters=[{"Name": "ip-permission.group-id", "Values": [peer]}])["SecurityGroups"]
    assert [g["GroupId"] for g in found] == [gid]


def test_rule_tags(ec2, vpc):
    gid = new_group(ec2, vpc)
    (rule,) = ec2.authorize_security_group_ingress(
        GroupId=gid,
        IpPermissions=[tcp(8443, "10.14.0.0/16")],
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": [{"Key": "why", "Value": "admin"}]}],
    )["SecurityGroupRules"]
    assert tags_dict(rule) == {"why": "admin"}
    rid = rule["SecurityGroupRuleId"]
    (described,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rid])["SecurityGroupRules"]
    assert tags_dict(described) == {"why": "admin"}
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid]}])["Tags"]
    assert [(r["ResourceType"], r["Key"]) for r in rows] == [("security-group-rule", "why")]
    ec2.delete_security_group(GroupId=gid)
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [rid, gid]}])["Tags"] == []


def test_duplicate_rule(ec2, group):
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.6.0.0/16", "first")])
    expect_error(
        "InvalidPermission.Duplicate", ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[tcp(22, "10.6.0.0/16")], status=400
    )
    # A different description does not make a different rule.
    expect_error(
        "InvalidPermission.Duplicate", ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[tcp(22, "10.6.0.0/16", "second")]
    )
    # All or nothing: a new rule next to a duplicate is not added either.
    expect_error(
        "InvalidPermission.Duplicate",
        ec2.authorize_security_group_ingress,
        GroupId=group,
        IpPermissions=[tcp(23, "10.6.0.0/16"), tcp(22, "10.6.0.0/16")],
    )
    assert ingress(ec2, group) == {("tcp", 22, 22, "cidr", "10.6.0.0/16", "first")}
    expect_error("InvalidPermission.Duplicate", ec2.authorize_security_group_egress, GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


@pytest.mark.parametrize(
    "perm",
    [
        {"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 70000, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "udp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "icmp", "FromPort": 300, "ToPort": -1, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "bogus", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/33"}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "banana"}]},
    ],
    ids=["from>to", "port>65535", "udp-no-ports", "icmp-type>255", "bad-protocol", "bad-prefix", "bad-cidr"],
)
def test_bad_permissions_are_invalid_and_add_nothing(ec2, group, perm):
    expect_error("InvalidParameterValue", ec2.authorize_security_group_ingress, GroupId=group, IpPermissions=[perm], status=400)
    assert ingress(ec2, group) == set()


def test_authorize_on_unknown_group(ec2):
    expect_error("InvalidGroup.NotFound", ec2.authorize_security_group_ingress, GroupId="sg-0123456789abcdef0", IpPermissions=[tcp(22, "10.0.0.0/8")])
    expect_error("InvalidGroupId.Malformed", ec2.authorize_security_group_ingress, GroupId="sg-12", IpPermissions=[tcp(22, "10.0.0.0/8")])


def test_reference_to_unknown_group(ec2, group):
    expect_error(
        "InvalidGroup.NotFound",
        ec2.authorize_security_group_ingress,
        GroupId=group,
        IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0123456789abcdef0"}]}],
    )


# --- revoke ----------------------------------------------------------------------------


def test_revoke(ec2, group):
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.7.0.0/16", "ssh"), tcp(443, "10.7.0.0/16")])
    # Descriptions do not take part in matching.
    resp = ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.7.0.0/16", "something else")])
    assert resp["Return"] is True
    assert not resp.get("UnknownIpPermissions")
    assert ingress(ec2, group) == {("tcp", 443, 443, "cidr", "10.7.0.0/16", None)}
    assert len([r for r in rules_of(ec2, group) if not r["IsEgress"]]) == 1


def test_revoke_by_rule_id(ec2, group):
    rules = ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(25, "10.8.0.0/16"), tcp(26, "10.8.0.0/16")])["SecurityGroupRules"]
    first = next(r for r in rules if r["FromPort"] == 25)
    ec2.revoke_security_group_ingress(GroupId=group, SecurityGroupRuleIds=[first["SecurityGroupRuleId"]])
    assert ingress(ec2, group) == {("tcp", 26, 26, "cidr", "10.8.0.0/16", None)}
    expect_error(
        "InvalidSecurityGroupRuleId.NotFound",
        ec2.describe_security_group_rules,
        SecurityGroupRuleIds=[first["SecurityGroupRuleId"]],
    )


def test_revoke_missing_rule_in_non_default_vpc(ec2, group):
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.9.0.0/16")])
    expect_error(
        "InvalidPermission.NotFound", ec2.revoke_security_group_ingress, GroupId=group, IpPermissions=[tcp(23, "10.9.0.0/16")], status=400
    )
    # Nothing is revoked when part of the request matches nothing.
    expect_error(
        "InvalidPermission.NotFound",
        ec2.revoke_security_group_ingress,
        GroupId=group,
        IpPermissions=[tcp(22, "10.9.0.0/16"), tcp(23, "10.9.0.0/16")],
    )
    assert ingress(ec2, group) == {("tcp", 22, 22, "cidr", "10.9.0.0/16", None)}


def test_revoke_missing_rule_in_default_vpc_reports_it(ec2):
    gid = new_group(ec2)
    resp = ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[tcp(23, "10.10.0.0/16")])
    assert resp["Return"] is True
    unknown = resp["UnknownIpPermissions"]
    assert [(u["IpProtocol"], u["FromPort"], u["IpRanges"][0]["CidrIp"]) for u in unknown] == [("tcp", 23, "10.10.0.0/16")]


def test_egress_authorize_and_revoke(ec2, group):
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=[tcp(443, "10.11.0.0/16")])
    assert egress(ec2, group) == {ALL_EGRESS, ("tcp", 443, 443, "cidr", "10.11.0.0/16", None)}
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert egress(ec2, group) == {("tcp", 443, 443, "cidr", "10.11.0.0/16", None)}
    assert ingress(ec2, group) == set()
    egress_rules = [r for r in rules_of(ec2, group) if r["IsEgress"]]
    assert [(r["IpProtocol"], r["FromPort"], r["CidrIpv4"]) for r in egress_rules] == [("tcp", 443, "10.11.0.0/16")]
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[tcp(443, "10.11.0.0/16")])
    assert describe_group(ec2, group)["IpPermissionsEgress"] == []


# --- DescribeSecurityGroupRules --------------------------------------------------------


def test_describe_security_group_rules(ec2, group):
    added = ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[tcp(22, "10.12.0.0/16", "ssh"), tcp(80, "10.12.0.0/16")])["SecurityGroupRules"]
    rules = rules_of(ec2, group)
    assert len(rules) == 3  # two ingress + the default egress
    assert all(r["GroupId"] == group for r in rules)
    ssh = next(r for r in rules if r.get("FromPort") == 22 and not r["IsEgress"])
    assert (ssh["IpProtocol"], ssh["ToPort"], ssh["CidrIpv4"], ssh["Description"]) == ("tcp", 22, "10.12.0.0/16", "ssh")
    ids = [r["SecurityGroupRuleId"] for r in added]
    picked = ec2.describe_security_group_rules(SecurityGroupRuleIds=ids)["SecurityGroupRules"]
    assert sorted(r["SecurityGroupRuleId"] for r in picked) == sorted(ids)
    expect_error("InvalidSecurityGroupRuleId.Malformed", ec2.describe_security_group_rules, SecurityGroupRuleIds=["sgr-zz"])
    expect_error("InvalidSecurityGroupRuleId.NotFound", ec2.describe_security_group_rules, SecurityGroupRuleIds=["sgr-0123456789abcdef0"])


# --- delete ----------------------------------------------------------------------------


def test_default_group_cannot_be_deleted(ec2, vpc):
    (default,) = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    expect_error("CannotDelete", ec2.delete_security_group, GroupId=default["GroupId"], status=400)
    expect_error("CannotDelete", ec2.delete_security_group, GroupName="default")
    assert describe_group(ec2, default["GroupId"])["GroupName"] == "default"


def test_referenced_group_cannot_be_deleted(ec2, vpc, group):
    peer = new_group(ec2, vpc)
    perm = {"IpProtocol": "tcp", "FromPort": 9000, "ToPort": 9000, "UserIdGroupPairs": [{"GroupId": peer}]}
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[perm])
    expect_error("DependencyViolation", ec2.delete_security_group, GroupId=peer, status=400)
    assert describe_group(ec2, peer)["GroupId"] == peer
    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[perm])
    resp = ec2.delete_security_group(GroupId=peer)
    assert resp["Return"] is True and resp["GroupId"] == peer
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[peer])


def test_a_group_may_reference_itself_and_still_be_deleted(ec2, vpc):
    gid = new_group(ec2, vpc)
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": gid}]}])
    ec2.delete_security_group(GroupId=gid)
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[gid])
    assert rules_of(ec2, gid) == []


def test_delete_by_name_and_unknown_groups(ec2):
    name = uid("delname")
    gid = new_group(ec2, None, name)
    ec2.delete_security_group(GroupName=name)
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[gid])
    expect_error("InvalidGroup.NotFound", ec2.delete_security_group, GroupId="sg-0123456789abcdef0", status=400)
    expect_error("InvalidGroup.NotFound", ec2.delete_security_group, GroupName=uid("nosuch"))
    expect_error("InvalidGroupId.Malformed", ec2.delete_security_group, GroupId="sg-nothex")


# --- lookups ---------------------------------------------------------------------------


def test_group_names_lookup(ec2, vpc):
    name = uid("lookup")
    gid = new_group(ec2, None, name)
    (g,) = ec2.describe_security_groups(GroupNames=[name])["SecurityGroups"]
    assert g["GroupId"] == gid
    # GroupNames only searches the default VPC; other VPCs need the group-name filter.
    other = uid("lookup")
    other_id = new_group(ec2, vpc, other)
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupNames=[other])
    found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [other]}])["SecurityGroups"]
    assert [x["GroupId"] for x in found] == [other_id]


def test_group_ids_lookup_is_all_or_nothing(ec2, group):
    expect_error("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=[group, "sg-0123456789abcdef0"])
    expect_error("InvalidGroupId.Malformed", ec2.describe_security_groups, GroupIds=["sg-xyz"])


def test_filters(ec2, vpc):
    prefix = uid("filt")
    a = new_group(ec2, vpc, f"{prefix}-a", TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "Name", "Value": f"{prefix}-tagged"}]}])
    b = new_group(ec2, vpc, f"{prefix}-b", description="the b group")
    ec2.authorize_security_group_ingress(GroupId=a, IpPermissions=[tcp(22, "10.13.0.0/16")])
    ec2.authorize_security_group_ingress(GroupId=b, IpPermissions=[tcp(80, "10.13.0.0/16")])

    def find(*filters):
        fs = [{"Name": n, "Values": v} for n, v in filters]
        return {g["GroupId"] for g in ec2.describe_security_groups(Filters=fs)["SecurityGroups"]}

    assert find(("group-name", [f"{prefix}-*"])) == {a, b}
    assert find(("group-name", [f"{prefix}-*"]), ("ip-permission.from-port", ["22"])) == {a}
    assert find(("group-name", [f"{prefix}-*"]), ("ip-permission.to-port", ["80"])) == {b}
    assert find(("tag:Name", [f"{prefix}-tagged"])) == {a}
    assert find(("tag-key", ["Name"]), ("group-name", [f"{prefix}-*"])) == {a}
    assert find(("description", ["the b group"]), ("vpc-id", [vpc])) == {b}
    assert find(("group-id", [a, b]), ("ip-permission.cidr", ["10.13.0.0/16"])) == {a, b}
    assert find(("group-id", [a, b]), ("ip-permission.protocol", ["udp"])) == set()
    assert find(("group-id", [a, b]), ("egress.ip-permission.cidr", ["0.0.0.0/0"])) == {a, b}
    expect_error("InvalidParameterValue", ec2.describe_security_groups, Filters=[{"Name": "colour", "Values": ["x"]}])


def test_paginator_over_one_vpc(ec2):
    v = new_vpc(ec2)["VpcId"]
    made = {new_group(ec2, v) for _ in range(6)}
    paginator = ec2.get_paginator("describe_security_groups")
    pages = list(paginator.paginate(Filters=[{"Name": "vpc-id", "Values": [v]}], PaginationConfig={"PageSize": 5}))
    assert [len(p["SecurityGroups"]) for p in pages] == [5, 2]
    seen = [g["GroupId"] for p in pages for g in p["SecurityGroups"]]
    assert len(seen) == len(set(seen)) == 7
    assert made <= set(seen)
