"""Placement groups: Create/Describe/DeletePlacementGroup with EC2's errors changing
nothing, and RunInstances honouring Placement.GroupName/GroupId: a cluster group keeps
its instances in one zone, a spread group takes at most seven per zone, a partition
group spreads instances over its partitions or takes the one named; a group with
instances cannot be deleted. boto3 and the AWS CLI."""

import uuid

from kiln_helpers import expect_error


def name(prefix="pg"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def groups(ec2, **kw):
    return ec2.describe_placement_groups(**kw)["PlacementGroups"]


def placement(ec2, ids):
    r = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["Placement"] for res in r for i in res["Instances"]}


def test_placement_groups_api_and_errors(ec2, ec2_other, aws):
    cluster, spread, part = name(), name(), name()
    g = ec2.create_placement_group(GroupName=cluster, Strategy="cluster",
                                   TagSpecifications=[{"ResourceType": "placement-group",
                                                       "Tags": [{"Key": "team", "Value": "a"}]}])["PlacementGroup"]
    assert g["GroupId"].startswith("pg-") and g["State"] == "available" and g["Strategy"] == "cluster"
    assert g["GroupArn"].endswith(f":placement-group/{cluster}")
    ec2.create_placement_group(GroupName=spread, Strategy="spread")
    ec2.create_placement_group(GroupName=part, Strategy="partition", PartitionCount=3)
    try:
        [c] = groups(ec2, GroupNames=[cluster])
        assert c["Tags"] == [{"Key": "team", "Value": "a"}] and "PartitionCount" not in c
        [s] = groups(ec2, GroupIds=[ec2.describe_placement_groups(GroupNames=[spread])["PlacementGroups"][0]["GroupId"]])
        assert s["SpreadLevel"] == "rack"
        assert groups(ec2, GroupNames=[part])[0]["PartitionCount"] == 3
        by_strategy = groups(ec2, Filters=[{"Name": "strategy", "Values": ["partition"]}])
        assert part in [x["GroupName"] for x in by_strategy] and cluster not in [x["GroupName"] for x in by_strategy]
        assert [x["GroupName"] for x in groups(ec2, Filters=[{"Name": "tag:team", "Values": ["a"]}])] == [cluster]

        before = len(groups(ec2))
        expect_error("InvalidPlacementGroup.Duplicate", ec2.create_placement_group, GroupName=cluster, Strategy="spread")
        expect_error("InvalidParameterValue", ec2.create_placement_group, GroupName=name(), Strategy="partition",
                     PartitionCount=8)
        expect_error("InvalidParameterCombination", ec2.create_placement_group, GroupName=name(), Strategy="cluster",
                     PartitionCount=2)
        expect_error("InvalidParameterValue", ec2.create_placement_group, GroupName=name(), Strategy="diagonal")
        expect_error("MissingParameter", ec2.create_placement_group, GroupName=name())
        assert len(groups(ec2)) == before, "a refused request made nothing"
        expect_error("InvalidPlacementGroup.Unknown", ec2.describe_placement_groups, GroupNames=["no-such-group"])
        expect_error("InvalidPlacementGroup.Unknown", ec2.delete_placement_group, GroupName="no-such-group")
        expect_error("InvalidPlacementGroupId.Malformed", ec2.describe_placement_groups, GroupIds=["sg-123"])
        # Another account sees none of them and may reuse the names.
        assert cluster not in [x["GroupName"] for x in groups(ec2_other)]
        ec2_other.create_placement_group(GroupName=cluster, Strategy="spread")
        ec2_other.delete_placement_group(GroupName=cluster)

        # The AWS CLI.
        cli = name("cli")
        rc, made, err = aws("ec2", "create-placement-group", "--group-name", cli, "--strategy", "partition",
                            "--partition-count", "2")
        assert rc == 0 and made["PlacementGroup"]["PartitionCount"] == 2, err
        rc, listed, err = aws("ec2", "describe-placement-groups", "--group-names", cli)
        assert rc == 0 and [x["Strategy"] for x in listed["PlacementGroups"]] == ["partition"], err
        rc, _, err = aws("ec2", "delete-placement-group", "--group-name", cli)
        assert rc == 0, err
        rc, _, err = aws("ec2", "delete-placement-group", "--group-name", cli)
        assert rc != 0 and "InvalidPlacementGroup.Unknown" in err, err
        assert cli not in [x["GroupName"] for x in groups(ec2)]
    finally:
        for n in (cluster, spread, part):
            ec2.delete_placement_group(GroupName=n)
    assert not {cluster, spread, part} & {x["GroupName"] for x in groups(ec2)}


def test_run_instances_honours_the_group(kiln, ec2, quickstart_images):
    image = quickstart_images["x86_64"]["ImageId"]
    cluster, spread, part = name(), name(), name()
    ec2.create_placement_group(GroupName=cluster, Strategy="cluster")
    ec2.create_placement_group(GroupName=spread, Strategy="spread")
    part_id = ec2.create_placement_group(GroupName=part, Strategy="partition",
                                         PartitionCount=2)["PlacementGroup"]["GroupId"]
    made = []

    def run(**kw):
        r = ec2.run_instances(ImageId=image, InstanceType="t3.nano", **kw)
        ids = [i["InstanceId"] for i in r["Instances"]]
        made.extend(ids)
        return ids

    try:
        before = len(ec2.describe_instances()["Reservations"])
        # Spread: eight in one zone is more than a spread group holds; nothing is made.
        expect_error("InsufficientInstanceCapacity", ec2.run_instances, ImageId=image, InstanceType="t3.nano",
                     MinCount=8, MaxCount=8, Placement={"GroupName": spread, "AvailabilityZone": "us-east-1a"})
        expect_error("InvalidPlacementGroup.Unknown", ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1,
                     Placement={"GroupName": "no-such-group"})
        expect_error("InvalidParameterValue", ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1,
                     Placement={"GroupName": part, "PartitionNumber": 3})
        expect_error("InvalidParameterValue", ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1,
                     Placement={"GroupName": cluster, "PartitionNumber": 1})
        assert len(ec2.describe_instances()["Reservations"]) == before, "a refused launch made nothing"

        # Cluster: the first instance fixes the zone; the next goes there when none is
        # asked, and another zone is refused.
        [first] = run(MinCount=1, MaxCount=1, Placement={"GroupName": cluster, "AvailabilityZone": "us-east-1b"})
        [second] = run(MinCount=1, MaxCount=1, Placement={"GroupName": cluster})
        where = placement(ec2, [first, second])
        assert {p["AvailabilityZone"] for p in where.values()} == {"us-east-1b"}
        assert {p["GroupName"] for p in where.values()} == {cluster}
        expect_error("InvalidParameterValue", ec2.run_instances, ImageId=image, MinCount=1, MaxCount=1,
                     Placement={"GroupName": cluster, "AvailabilityZone": "us-east-1c"})
        expect_error("InvalidPlacementGroup.InUse", ec2.delete_placement_group, GroupName=cluster)

        # Partition: spread over the partitions, or the one named (by group id).
        spread_out = run(MinCount=2, MaxCount=2, Placement={"GroupName": part})
        [named] = run(MinCount=1, MaxCount=1, Placement={"GroupId": part_id, "PartitionNumber": 2})
        where = placement(ec2, spread_out + [named])
        assert sorted(where[i]["PartitionNumber"] for i in spread_out) == [1, 2]
        assert where[named]["PartitionNumber"] == 2 and where[named]["GroupId"] == part_id
        in_part = ec2.describe_instances(Filters=[{"Name": "placement-group-name", "Values": [part]},
                                                  {"Name": "placement-partition-number", "Values": ["2"]}])
        ids = {i["InstanceId"] for r in in_part["Reservations"] for i in r["Instances"]}
        assert named in ids and len(ids) == 2

        # Terminated instances no longer hold the group.
        ec2.terminate_instances(InstanceIds=made)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=made, WaiterConfig={"Delay": 2, "MaxAttempts": 90})
        for n in (cluster, spread, part):
            ec2.delete_placement_group(GroupName=n)
        made.clear()
    finally:
        if made:
            ec2.terminate_instances(InstanceIds=made)
