"""Regions, availability zones, instance types and their offerings."""

from kiln_helpers import expect_error

# EC2's public regions: the test Kiln serves them all (no --regions).
OPT_IN_REGIONS = {
    "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-7", "ca-west-1", "eu-central-2", "eu-south-1", "eu-south-2", "il-central-1", "me-south-1",
    "me-central-1", "mx-central-1",
}
DEFAULT_REGIONS = {
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "eu-central-1", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-north-1", "sa-east-1",
} | OPT_IN_REGIONS
# The catalog is EC2's whole one (13xx types from moto's DescribeInstanceTypes dump, mac
# types excepted); these are the families EC2 counts as previous generation there (m5, c5,
# r5, m6i, r6i and a1 among them), and a sample of the others.
PREVIOUS_FAMILIES = {
    "t1", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "a1", "c5", "c6gn", "d2", "g5", "i2", "m5", "m6i",
    "r5", "r6i", "r7g", "r7gd",
}
SOME_FAMILIES = {
    "t2", "t3", "t3a", "t4g", "m7g", "c6i", "c7g", "c7i-flex", "p5", "g6", "inf2", "trn1", "u-6tb1", "x2iedn", "i4i",
} | PREVIOUS_FAMILIES
SOME_ARM_FAMILIES = {"a1", "t4g", "m7g", "c7g", "m6g", "r8g", "x2gd", "g5g", "hpc7g", "im4gn"}


def all_types(ec2, page_size=25, **kwargs):
    paginator = ec2.get_paginator("describe_instance_types")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": page_size}, **kwargs))
    return pages, [t for p in pages for t in p["InstanceTypes"]]


# --- regions -------------------------------------------------------------------------


def test_describe_regions_lists_every_public_region(ec2):
    regions = ec2.describe_regions()["Regions"]
    assert {r["RegionName"] for r in regions} == DEFAULT_REGIONS
    assert len(regions) == len(DEFAULT_REGIONS)
    for r in regions:
        assert r["Endpoint"]
        # Kiln enables every region it serves: the ones EC2 makes accounts opt in to show opted in.
        assert r["OptInStatus"] == ("opted-in" if r["RegionName"] in OPT_IN_REGIONS else "opt-in-not-required")
    everything = ec2.describe_regions(AllRegions=True)["Regions"]
    assert {r["RegionName"] for r in everything} == DEFAULT_REGIONS
    opted = ec2.describe_regions(AllRegions=True, Filters=[{"Name": "opt-in-status", "Values": ["opted-in"]}])
    assert {r["RegionName"] for r in opted["Regions"]} == OPT_IN_REGIONS


def test_any_region_answers_with_its_real_zones(kiln):
    """An SDK set to any public region works there, with EC2's zone names and zone ids."""
    west1 = kiln.client("default", "us-west-1").describe_availability_zones()["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"]) for z in west1] == [("us-west-1b", "usw1-az1"), ("us-west-1c", "usw1-az3")]
    tokyo = kiln.client("default", "ap-northeast-1")
    zones = tokyo.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]
    assert zones[0]["ZoneId"] == "apne1-az4"
    # Its default VPC has a default subnet in each of those zones.
    vpcs = tokyo.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1
    subnets = tokyo.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}])["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]
    cape = kiln.client("default", "af-south-1").describe_availability_zones()["AvailabilityZones"]
    assert all(z["OptInStatus"] == "opted-in" and z["ZoneId"].startswith("afs1-az") for z in cape)


def test_describe_regions_by_name(ec2):
    regions = ec2.describe_regions(RegionNames=["eu-west-1", "ap-southeast-2"])["Regions"]
    assert {r["RegionName"] for r in regions} == {"eu-west-1", "ap-southeast-2"}


def test_region_name_filter_with_wildcard(ec2):
    regions = ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["us-*"]}])["Regions"]
    assert {r["RegionName"] for r in regions} == {"us-east-1", "us-east-2", "us-west-1", "us-west-2"}
    none = ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["mars-*"]}])["Regions"]
    assert none == []


def test_endpoint_filter_matches_the_endpoint_returned(ec2):
    for region in ec2.describe_regions()["Regions"]:
        found = ec2.describe_regions(Filters=[{"Name": "endpoint", "Values": [region["Endpoint"]]}])["Regions"]
        assert region["RegionName"] in {r["RegionName"] for r in found}, (
            f"filtering on endpoint={region['Endpoint']!r} does not find {region['RegionName']}"
        )


def test_unknown_region_name_is_invalid(ec2):
    expect_error("InvalidParameterValue", ec2.describe_regions, RegionNames=["mars-north-1"], status=400)


def test_bad_region_filter_name_is_invalid(ec2):
    expect_error("InvalidParameterValue", ec2.describe_regions, Filters=[{"Name": "colour", "Values": ["x"]}])


def test_describe_regions_with_the_cli(aws):
    rc, names, err = aws("ec2", "describe-regions", "--query", "Regions[].RegionName")
    assert rc == 0, err
    assert set(names) == DEFAULT_REGIONS


# --- availability zones --------------------------------------------------------------


def test_zones_per_region(ec2, ec2_west):
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == [f"us-east-1{x}" for x in "abcdef"]
    assert [z["ZoneId"] for z in zones] == [f"use1-az{n}" for n in range(1, 7)]
    for z in zones:
        assert z["State"] == "available"
        assert z["RegionName"] == "us-east-1"
        assert z["ZoneType"] == "availability-zone"
    west = ec2_west.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in west] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert all(z["RegionName"] == "eu-west-1" for z in west)


def test_zone_name_filter(ec2):
    zones = ec2.describe_availability_zones(Filters=[{"Name": "zone-name", "Values": ["us-east-1b"]}])
    assert [z["ZoneName"] for z in zones["AvailabilityZones"]] == ["us-east-1b"]


def test_zone_names_and_ids(ec2):
    by_name = ec2.describe_availability_zones(ZoneNames=["us-east-1c"])["AvailabilityZones"]
    assert [(z["ZoneName"], z["ZoneId"]) for z in by_name] == [("us-east-1c", "use1-az3")]
    by_id = ec2.describe_availability_zones(ZoneIds=["use1-az2"])["AvailabilityZones"]
    assert [z["ZoneName"] for z in by_id] == ["us-east-1b"]


def test_unknown_zone_name_is_invalid(ec2):
    expect_error("InvalidParameterValue", ec2.describe_availability_zones, ZoneNames=["us-east-1z"])
    # A zone of another region is not a zone of this one.
    expect_error("InvalidParameterValue", ec2.describe_availability_zones, ZoneNames=["eu-west-1a"])


def test_describe_zones_with_the_cli(aws):
    rc, out, err = aws("ec2", "describe-availability-zones", region="ap-southeast-2")
    assert rc == 0, err
    assert [z["ZoneName"] for z in out["AvailabilityZones"]] == [
        "ap-southeast-2a",
        "ap-southeast-2b",
        "ap-southeast-2c",
    ]


# --- instance types ------------------------------------------------------------------


def test_t3_micro(ec2):
    (t,) = ec2.describe_instance_types(InstanceTypes=["t3.micro"])["InstanceTypes"]
    assert t["InstanceType"] == "t3.micro"
    assert t["VCpuInfo"]["DefaultVCpus"] == 2
    assert t["MemoryInfo"]["SizeInMiB"] == 1024
    assert t["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"]
    assert t["BurstablePerformanceSupported"] is True
    # Terraform's aws_ec2_instance_type reads these nested blocks unconditionally.
    for block in ("NetworkInfo", "EbsInfo", "PlacementGroupInfo"):
        assert t[block], block
    assert t["SupportedRootDeviceTypes"] == ["ebs"]
    assert "hvm" in t["SupportedVirtualizationTypes"]


def test_a1_medium_is_arm64(ec2):
    (t,) = ec2.describe_instance_types(InstanceTypes=["a1.medium"])["InstanceTypes"]
    assert t["ProcessorInfo"]["SupportedArchitectures"] == ["arm64"]
    assert t["BurstablePerformanceSupported"] is False


def test_previous_generation_types_are_served(ec2):
    """SDK examples still launch m1.small and t1.micro."""
    types = ec2.describe_instance_types(InstanceTypes=["m1.small", "t1.micro", "m4.large"])["InstanceTypes"]
    by = {t["InstanceType"]: t for t in types}
    assert by["m1.small"]["CurrentGeneration"] is False
    assert (by["m1.small"]["VCpuInfo"]["DefaultVCpus"], by["m1.small"]["MemoryInfo"]["SizeInMiB"]) == (1, 1740)
    assert by["m1.small"]["InstanceStorageSupported"] is True
    assert by["m1.small"]["NetworkInfo"]["Ipv6Supported"] is False
    assert "SustainedClockSpeedInGhz" not in by["t1.micro"]["ProcessorInfo"]
    assert by["m4.large"]["ProcessorInfo"]["SustainedClockSpeedInGhz"] == 2.4
    _, previous = all_types(ec2, page_size=100, Filters=[{"Name": "current-generation", "Values": ["false"]}])
    assert {t["InstanceType"].split(".")[0] for t in previous} == PREVIOUS_FAMILIES


def test_several_types_at_once(ec2):
    types = ec2.describe_instance_types(InstanceTypes=["m5.large", "c6i.xlarge"])["InstanceTypes"]
    assert {t["InstanceType"] for t in types} == {"m5.large", "c6i.xlarge"}
    m5 = next(t for t in types if t["InstanceType"] == "m5.large")
    assert (m5["VCpuInfo"]["DefaultVCpus"], m5["MemoryInfo"]["SizeInMiB"]) == (2, 8192)


def test_arm64_filter_gives_only_arm_families(ec2):
    _, types = all_types(
        ec2, Filters=[{"Name": "processor-info.supported-architecture", "Values": ["arm64"]}]
    )
    families = {t["InstanceType"].split(".")[0] for t in types}
    assert SOME_ARM_FAMILIES <= families
    assert not families & {"t2", "t3", "m5", "c5", "r5", "m6i", "p5"}
    assert all(t["ProcessorInfo"]["SupportedArchitectures"] == ["arm64"] for t in types)


def test_instance_type_filter_wildcards(ec2):
    _, types = all_types(ec2, Filters=[{"Name": "instance-type", "Values": ["t3.*"]}])
    names = {t["InstanceType"] for t in types}
    assert "t3.micro" in names and "t3.2xlarge" in names
    assert all(n.startswith("t3.") for n in names), "t3.* must not match t3a"


def test_filters_are_anded(ec2):
    _, types = all_types(
        ec2,
        Filters=[
            {"Name": "vcpu-info.default-vcpus", "Values": ["2"]},
            {"Name": "memory-info.size-in-mib", "Values": ["1024"]},
        ],
    )
    names = {t["InstanceType"] for t in types}
    assert {"t3.micro", "t3a.micro", "t4g.micro"} <= names
    assert all(t["VCpuInfo"]["DefaultVCpus"] == 2 and t["MemoryInfo"]["SizeInMiB"] == 1024 for t in types)


def test_unknown_instance_type(ec2):
    resp = expect_error("InvalidInstanceType", ec2.describe_instance_types, InstanceTypes=["t3.colossal"])
    assert "t3.colossal" in resp["Error"]["Message"]


def test_bad_filter_name(ec2):
    expect_error(
        "InvalidParameterValue", ec2.describe_instance_types, Filters=[{"Name": "flavour", "Values": ["x"]}]
    )


def test_every_family_is_present_via_the_paginator(ec2):
    pages, types = all_types(ec2, page_size=25)
    assert len(pages) > 1, "25 per page must take several pages"
    names = [t["InstanceType"] for t in types]
    assert len(names) == len(set(names))
    assert len(names) > 1300, "EC2's whole catalog, mac types excepted"
    families = {n.split(".")[0] for n in names}
    assert SOME_FAMILIES <= families
    assert not any(f.startswith("mac") for f in families), "mac types are not served"


def test_bare_metal_types_have_no_hypervisor(ec2):
    types = ec2.describe_instance_types(InstanceTypes=["m5.metal", "m5.large"])["InstanceTypes"]
    by = {t["InstanceType"]: t for t in types}
    assert by["m5.metal"]["BareMetal"] is True and "Hypervisor" not in by["m5.metal"]
    assert by["m5.large"]["BareMetal"] is False and by["m5.large"]["Hypervisor"] == "nitro"


def test_describe_instance_types_with_the_cli(aws):
    rc, out, err = aws(
        "ec2",
        "describe-instance-types",
        "--instance-types",
        "t3.micro",
        "--query",
        "InstanceTypes[0].[VCpuInfo.DefaultVCpus, MemoryInfo.SizeInMiB]",
    )
    assert rc == 0, err
    assert out == [2, 1024]


# --- offerings -----------------------------------------------------------------------


def test_offerings_by_region(ec2):
    _, types = all_types(ec2)
    offers = ec2.describe_instance_type_offerings()["InstanceTypeOfferings"]
    assert {o["InstanceType"] for o in offers} == {t["InstanceType"] for t in types}
    assert len(offers) == len(types)
    assert all(o["LocationType"] == "region" and o["Location"] == "us-east-1" for o in offers)


def test_offerings_by_availability_zone(ec2):
    offers = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": ["t3.micro"]}],
    )["InstanceTypeOfferings"]
    assert sorted(o["Location"] for o in offers) == [f"us-east-1{x}" for x in "abcdef"]
    assert all(o["LocationType"] == "availability-zone" for o in offers)
    one = ec2.describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[
            {"Name": "location", "Values": ["us-east-1b"]},
            {"Name": "instance-type", "Values": ["m5.large"]},
        ],
    )["InstanceTypeOfferings"]
    assert [(o["InstanceType"], o["Location"]) for o in one] == [("m5.large", "us-east-1b")]


def test_offerings_follow_the_callers_region(ec2_west):
    offers = ec2_west.describe_instance_type_offerings(
        LocationType="availability-zone-id", Filters=[{"Name": "instance-type", "Values": ["c5.large"]}]
    )["InstanceTypeOfferings"]
    assert sorted(o["Location"] for o in offers) == ["euw1-az1", "euw1-az2", "euw1-az3"]


def test_offerings_bad_filter(ec2):
    expect_error(
        "InvalidParameterValue",
        ec2.describe_instance_type_offerings,
        Filters=[{"Name": "region", "Values": ["us-east-1"]}],
    )
