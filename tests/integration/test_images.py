"""Images (AMIs) and their snapshots, driven with boto3 and the AWS CLI: the Quick Start
catalog (public images of the provider account, alias `amazon`), DescribeImages owners,
ids and filters, RegisterImage from a snapshot, launch permissions between two
accounts, image attributes, CopyImage between regions, tags, deregistration and
snapshot deletion, DryRun."""

import datetime
import re

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kiln_helpers import CLIENT_CONFIG, assert_id, default_vpc, expect_error, uid

ARCHES = ("x86_64", "arm64", "i386")
UNKNOWN_AMI = "ami-0123456789abcdef0"
UNKNOWN_SNAP = "snap-0123456789abcdef0"


# --- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def qs(quickstart_images):
    """The Quick Start images in us-east-1, by architecture."""
    return quickstart_images


@pytest.fixture(scope="module")
def operator_id(ec2):
    return default_vpc(ec2)["OwnerId"]


@pytest.fixture(scope="module")
def other_id(ec2_other):
    return default_vpc(ec2_other)["OwnerId"]


@pytest.fixture(scope="module")
def x86_snapshot(qs):
    return root_snapshot(qs["x86_64"])


@pytest.fixture(scope="module")
def ec2_raw(kiln):
    """The operator's us-east-1 client without botocore's own parameter checks, so the
    server's validation is what answers (names shorter than 3 characters, ...)."""
    session = boto3.session.Session(profile_name="default")
    return session.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=kiln.endpoint,
        config=CLIENT_CONFIG.merge(Config(parameter_validation=False)),
    )


@pytest.fixture(scope="module")
def ec2_other_west(kiln):
    return kiln.client("other", "eu-west-1")


def root_snapshot(image):
    root = [m for m in image["BlockDeviceMappings"] if m["DeviceName"] == image["RootDeviceName"]]
    assert len(root) == 1, image
    return root[0]["Ebs"]["SnapshotId"]


def bdm(snapshot_id, **ebs):
    return [{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id, **ebs}}]


def register(client, snapshot_id, name=None, **kwargs):
    """Registers an x86_64 image from `snapshot_id`; returns (image id, name)."""
    name = name or uid("img")
    args = {
        "Name": name,
        "BlockDeviceMappings": bdm(snapshot_id),
        "RootDeviceName": "/dev/xvda",
        "Architecture": "x86_64",
        **kwargs,
    }
    image_id = client.register_image(**args)["ImageId"]
    return image_id, name


def describe_one(client, image_id):
    images = client.describe_images(ImageIds=[image_id])["Images"]
    assert len(images) == 1, images
    return images[0]


def ids(images):
    return {i["ImageId"] for i in images}


def names_like(client, name):
    return client.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]


def cli_error(result, code):
    rc, _, err = result
    assert rc != 0, f"expected {code}, the CLI succeeded"
    assert f"({code})" in err, err


def cli_ok(result):
    rc, out, err = result
    assert rc == 0, err
    return out


# --- the Quick Start catalog ------------------------------------------------------------


def test_quick_start_images_are_public_amazon_images(ec2, qs, operator_id):
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    by_arch = {}
    for img in images:
        by_arch.setdefault(img["Architecture"], []).append(img)
    assert set(ARCHES) <= set(by_arch), [i["Name"] for i in images]
    for arch in ARCHES:
        img = qs[arch]
        assert img["ImageId"] in ids(by_arch[arch])
        assert_id(img["ImageId"], "ami")
        m = re.fullmatch(rf"kiln-tiny-{arch}-(\d{{8}})", img["Name"])
        assert m, img["Name"]
        datetime.datetime.strptime(m.group(1), "%Y%m%d")
        assert m.group(1) == img["CreationDate"][:10].replace("-", ""), (img["Name"], img["CreationDate"])
        assert img["ImageOwnerAlias"] == "amazon"
        assert img["Public"] is True
        assert img["State"] == "available"
        assert re.fullmatch(r"\d{12}", img["OwnerId"]) and img["OwnerId"] != operator_id
        assert img["ImageLocation"] == f"amazon/{img['Name']}"
        assert img["ImageType"] == "machine"
        assert img["RootDeviceType"] == "ebs"
        assert img["RootDeviceName"] == "/dev/xvda"
        assert img["VirtualizationType"] == "hvm"
        snap = root_snapshot(img)
        assert_id(snap, "snap")
        root = img["BlockDeviceMappings"][0]["Ebs"]
        assert root["VolumeSize"] >= 1
        assert root["DeleteOnTermination"] is True
    # One provider owns the whole catalog.
    assert len({qs[a]["OwnerId"] for a in ARCHES}) == 1


def test_quick_start_images_are_visible_to_every_account_and_query(ec2, ec2_other, qs):
    catalog = {qs[a]["ImageId"] for a in ARCHES}
    provider = qs["x86_64"]["OwnerId"]
    assert catalog <= ids(ec2.describe_images()["Images"])
    assert catalog <= ids(ec2.describe_images(ExecutableUsers=["all"])["Images"])
    assert catalog <= ids(ec2.describe_images(Owners=[provider])["Images"])
    assert catalog <= ids(ec2_other.describe_images(Owners=["amazon"])["Images"])
    assert catalog <= ids(ec2_other.describe_images()["Images"])
    assert not catalog & ids(ec2.describe_images(Owners=["self"])["Images"])
    assert not catalog & ids(ec2.describe_images(Owners=["aws-marketplace"])["Images"])
    got = ec2_other.describe_images(ImageIds=sorted(catalog))["Images"]
    assert ids(got) == catalog


def test_quick_start_images_exist_in_every_region(ec2_west, qs):
    west = ec2_west.describe_images(Owners=["amazon"])["Images"]
    for arch in ARCHES:
        mine = [i for i in west if i["Architecture"] == arch and i["Name"].startswith(f"kiln-tiny-{arch}-")]
        assert mine, f"no {arch} Quick Start image in eu-west-1"
        # The same catalog, registered separately: its own ids and snapshots.
        assert mine[0]["ImageId"] != qs[arch]["ImageId"]
        assert root_snapshot(mine[0]) != root_snapshot(qs[arch])
        assert mine[0]["ImageOwnerAlias"] == "amazon" and mine[0]["Public"] is True
    expect_error("InvalidAMIID.NotFound", ec2_west.describe_images, ImageIds=[qs["x86_64"]["ImageId"]])


def test_quick_start_images_with_the_cli(aws, qs):
    out = cli_ok(aws("ec2", "describe-images", "--owners", "amazon"))
    found = {i["Architecture"]: i for i in out["Images"] if i["Name"].startswith("kiln-tiny-")}
    assert set(ARCHES) <= set(found)
    for arch in ARCHES:
        assert re.fullmatch(rf"kiln-tiny-{arch}-\d{{8}}", found[arch]["Name"])
        assert found[arch]["ImageOwnerAlias"] == "amazon"
        assert found[arch]["Public"] is True
        assert found[arch]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"].startswith("snap-")
    out = cli_ok(
        aws(
            "ec2", "describe-images", "--owners", "amazon",
            "--filters", "Name=name,Values=kiln-tiny-arm64-*", "Name=state,Values=available",
            "--query", "Images[].[ImageId,Architecture]",
        )
    )
    assert out == [[qs["arm64"]["ImageId"], "arm64"]]
    # --image-ids, and the all-or-nothing lookup.
    out = cli_ok(aws("ec2", "describe-images", "--image-ids", qs["i386"]["ImageId"]))
    assert [i["ImageId"] for i in out["Images"]] == [qs["i386"]["ImageId"]]
    cli_error(aws("ec2", "describe-images", "--image-ids", qs["i386"]["ImageId"], UNKNOWN_AMI), "InvalidAMIID.NotFound")
    cli_error(aws("ec2", "describe-images", "--image-ids", "ami-nothex"), "InvalidAMIID.Malformed")


# --- filters and ids --------------------------------------------------------------------


def _names(client, *filters, owners=("amazon",)):
    args = {"Filters": [{"Name": n, "Values": list(v)} for n, v in filters]}
    if owners:
        args["Owners"] = list(owners)
    return {i["Name"] for i in client.describe_images(**args)["Images"]}


def test_describe_images_filters(ec2, qs):
    name = {a: qs[a]["Name"] for a in ARCHES}
    catalog = set(name.values())
    assert _names(ec2, ("name", ["kiln-tiny-*"])) >= catalog
    assert _names(ec2, ("name", ["kiln-tiny-x86_64-*"])) == {name["x86_64"]}
    assert _names(ec2, ("name", ["kiln-tiny-i?86-*"])) == {name["i386"]}
    assert _names(ec2, ("name", [name["arm64"]])) == {name["arm64"]}
    assert _names(ec2, ("name", ["kiln-tiny-x86_64-*", "kiln-tiny-arm64-*"])) == {name["x86_64"], name["arm64"]}
    # Case-sensitive, whole-string matches.
    assert _names(ec2, ("name", ["KILN-TINY-*"])) == set()
    assert _names(ec2, ("name", ["tiny"])) == set()
    for arch in ARCHES:
        got = _names(ec2, ("architecture", [arch]))
        assert name[arch] in got and not (catalog - {name[arch]}) & got
    assert _names(ec2, ("owner-alias", ["amazon"]), owners=()) >= catalog
    assert _names(ec2, ("is-public", ["true"])) >= catalog
    assert _names(ec2, ("is-public", ["false"])) == set()
    assert _names(ec2, ("state", ["available"])) >= catalog
    assert _names(ec2, ("state", ["pending", "failed"])) == set()
    assert _names(ec2, ("image-id", [qs["arm64"]["ImageId"]])) == {name["arm64"]}
    assert _names(ec2, ("owner-id", [qs["x86_64"]["OwnerId"]]), owners=()) >= catalog
    # Separate filters are AND'ed.
    assert _names(ec2, ("name", ["kiln-tiny-*"]), ("architecture", ["i386"])) == {name["i386"]}
    assert _names(ec2, ("name", ["kiln-tiny-x86_64-*"]), ("architecture", ["arm64"])) == set()
    snap = root_snapshot(qs["i386"])
    assert _names(ec2, ("block-device-mapping.snapshot-id", [snap])) == {name["i386"]}
    expect_error("InvalidParameterValue", ec2.describe_images, Filters=[{"Name": "no-such-filter", "Values": ["x"]}])


def test_describe_images_filters_with_the_cli(aws, qs):
    out = cli_ok(
        aws(
            "ec2", "describe-images",
            "--filters", "Name=owner-alias,Values=amazon", "Name=architecture,Values=x86_64",
            "Name=is-public,Values=true", "Name=name,Values=kiln-tiny-*",
        )
    )
    assert [i["ImageId"] for i in out["Images"]] == [qs["x86_64"]["ImageId"]]


def test_describe_images_by_id(ec2, qs):
    one = qs["x86_64"]["ImageId"]
    assert ids(ec2.describe_images(ImageIds=[one])["Images"]) == {one}
    expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[UNKNOWN_AMI])
    # All or nothing.
    resp = expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[one, UNKNOWN_AMI])
    assert UNKNOWN_AMI in resp["Error"]["Message"] and one not in resp["Error"]["Message"]
    for bad in ("ami-xyz", "ami-", "foo", "snap-0123456789abcdef0"):
        expect_error("InvalidAMIID.Malformed", ec2.describe_images, ImageIds=[bad])
    expect_error("DryRunOperation", ec2.describe_images, ImageIds=[one], DryRun=True, status=412)
    expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[UNKNOWN_AMI], DryRun=True)
    # Filters never raise NotFound.
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [UNKNOWN_AMI]}])["Images"] == []


# --- snapshots --------------------------------------------------------------------------


def test_provider_snapshots_are_listed(ec2, ec2_other, qs):
    provider = qs["x86_64"]["OwnerId"]
    wanted = {root_snapshot(qs[a]) for a in ARCHES}
    for client in (ec2, ec2_other):
        snaps = {s["SnapshotId"]: s for s in client.describe_snapshots(OwnerIds=["amazon"])["Snapshots"]}
        assert wanted <= set(snaps)
        for sid in wanted:
            s = snaps[sid]
            assert s["OwnerAlias"] == "amazon"
            assert s["OwnerId"] == provider
            assert s["State"] == "completed"
            assert s["Progress"] == "100%"
            assert s["VolumeSize"] >= 1
        got = client.describe_snapshots(SnapshotIds=sorted(wanted))["Snapshots"]
        assert {s["SnapshotId"] for s in got} == wanted
    assert wanted <= {s["SnapshotId"] for s in ec2.describe_snapshots()["Snapshots"]}
    flt = ec2.describe_snapshots(Filters=[{"Name": "owner-alias", "Values": ["amazon"]}])["Snapshots"]
    assert wanted <= {s["SnapshotId"] for s in flt}
    assert not wanted & {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    expect_error("InvalidSnapshot.NotFound", ec2.describe_snapshots, SnapshotIds=[UNKNOWN_SNAP])
    expect_error("InvalidSnapshotID.Malformed", ec2.describe_snapshots, SnapshotIds=["snap-xyz"])


def test_provider_snapshots_with_the_cli(aws, qs):
    out = cli_ok(aws("ec2", "describe-snapshots", "--owner-ids", "amazon"))
    snaps = {s["SnapshotId"]: s for s in out["Snapshots"]}
    for arch in ARCHES:
        assert snaps[root_snapshot(qs[arch])]["OwnerAlias"] == "amazon"


# --- RegisterImage ----------------------------------------------------------------------


def test_register_image_from_a_provider_snapshot(ec2, qs, x86_snapshot, operator_id):
    image_id, name = register(ec2, x86_snapshot, Description="from the Quick Start snapshot")
    assert_id(image_id, "ami")
    img = describe_one(ec2, image_id)
    assert img["Name"] == name
    assert img["Description"] == "from the Quick Start snapshot"
    assert img["OwnerId"] == operator_id
    assert "ImageOwnerAlias" not in img
    assert img["Public"] is False
    assert img["State"] == "available"
    assert img["Architecture"] == "x86_64"
    assert img["RootDeviceName"] == "/dev/xvda"
    assert img["ImageLocation"] == f"{operator_id}/{name}"
    [m] = img["BlockDeviceMappings"]
    assert m["DeviceName"] == "/dev/xvda"
    assert m["Ebs"]["SnapshotId"] == x86_snapshot
    assert m["Ebs"]["VolumeSize"] == qs["x86_64"]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    assert image_id in ids(ec2.describe_images(Owners=["self"])["Images"])
    assert image_id in ids(ec2.describe_images()["Images"])
    assert image_id not in ids(ec2.describe_images(Owners=["amazon"])["Images"])
    assert image_id not in ids(ec2.describe_images(ExecutableUsers=["all"])["Images"])
    assert image_id in ids(ec2.describe_images(Filters=[{"Name": "is-public", "Values": ["false"]}])["Images"])


def test_register_image_defaults_and_larger_root(ec2, x86_snapshot):
    # EC2's default architecture for EBS-backed registrations is i386.
    name = uid("img")
    image_id = ec2.register_image(
        Name=name, RootDeviceName="/dev/xvda", BlockDeviceMappings=bdm(x86_snapshot, VolumeSize=4, VolumeType="gp3")
    )["ImageId"]
    img = describe_one(ec2, image_id)
    assert img["Architecture"] == "i386"
    assert img["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 4
    assert img["BlockDeviceMappings"][0]["Ebs"]["VolumeType"] == "gp3"


def test_register_image_with_tag_specifications(ec2, x86_snapshot):
    image_id, _ = register(
        ec2, x86_snapshot, TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "stage", "Value": "test"}]}]
    )
    assert describe_one(ec2, image_id)["Tags"] == [{"Key": "stage", "Value": "test"}]


def test_register_image_errors_create_nothing(ec2, ec2_raw, x86_snapshot):
    before = ids(ec2.describe_images(Owners=["self"])["Images"])
    image_id, name = register(ec2, x86_snapshot)
    expect_error("InvalidAMIName.Duplicate", register, ec2, x86_snapshot, name=name)
    for bad in ("ab", "x*y", "a" * 129, "tab\there"):
        expect_error("InvalidAMIName.Malformed", register, ec2_raw, x86_snapshot, name=bad)
    missing = uid("img")
    expect_error(
        "MissingParameter", ec2_raw.register_image, Name=missing, RootDeviceName="/dev/xvda", Architecture="x86_64"
    )
    # The snapshot is 1 GiB: a root volume smaller than that is refused.
    small = uid("img")
    expect_error(
        "InvalidParameterValue", register, ec2_raw, x86_snapshot, name=small,
        BlockDeviceMappings=bdm(x86_snapshot, VolumeSize=0),
    )
    unknown = uid("img")
    expect_error("InvalidSnapshot.NotFound", register, ec2, UNKNOWN_SNAP, name=unknown)
    expect_error("InvalidSnapshotID.Malformed", register, ec2_raw, "snap-xyz", name=unknown)
    expect_error("InvalidParameterValue", register, ec2_raw, x86_snapshot, name=uid("img"), Architecture="sparc")
    after = ids(ec2.describe_images(Owners=["self"])["Images"])
    assert after - before == {image_id}
    for n in (missing, small, unknown, "ab", "x*y"):
        assert names_like(ec2, n) == []
    assert len(names_like(ec2, name)) == 1


def test_register_image_needs_a_snapshot_in_its_region(ec2_west, x86_snapshot):
    # Snapshots are regional: the us-east-1 Quick Start snapshot does not exist in eu-west-1.
    name = uid("img")
    expect_error("InvalidSnapshot.NotFound", register, ec2_west, x86_snapshot, name=name)
    assert names_like(ec2_west, name) == []


def test_register_image_dry_run(ec2, ec2_raw, x86_snapshot):
    name = uid("img")
    resp = expect_error("DryRunOperation", register, ec2, x86_snapshot, name=name, DryRun=True, status=412)
    assert "DryRun" in resp["Error"]["Message"]
    assert names_like(ec2, name) == []
    # Validation comes first.
    expect_error("InvalidAMIName.Malformed", register, ec2_raw, x86_snapshot, name="ab", DryRun=True)
    expect_error("InvalidSnapshot.NotFound", register, ec2, UNKNOWN_SNAP, name=name, DryRun=True)
    # And the name is still free.
    image_id, _ = register(ec2, x86_snapshot, name=name)
    assert describe_one(ec2, image_id)["Name"] == name


def test_register_image_with_the_cli(aws, ec2, x86_snapshot):
    name = uid("cli-img")
    out = cli_ok(
        aws(
            "ec2", "register-image", "--name", name, "--root-device-name", "/dev/xvda",
            "--architecture", "x86_64", "--description", "registered by the CLI",
            "--block-device-mappings", f"DeviceName=/dev/xvda,Ebs={{SnapshotId={x86_snapshot}}}",
        )
    )
    image_id = out["ImageId"]
    assert_id(image_id, "ami")
    out = cli_ok(aws("ec2", "describe-images", "--owners", "self", "--filters", f"Name=name,Values={name}"))
    assert [i["ImageId"] for i in out["Images"]] == [image_id]
    assert out["Images"][0]["Description"] == "registered by the CLI"
    assert out["Images"][0]["Public"] is False
    cli_error(
        aws(
            "ec2", "register-image", "--name", name, "--root-device-name", "/dev/xvda",
            "--block-device-mappings", f"DeviceName=/dev/xvda,Ebs={{SnapshotId={x86_snapshot}}}",
        ),
        "InvalidAMIName.Duplicate",
    )
    cli_error(
        aws(
            "ec2", "register-image", "--name", uid("cli-img"), "--root-device-name", "/dev/xvda",
            "--block-device-mappings", f"DeviceName=/dev/xvda,Ebs={{SnapshotId={x86_snapshot}}}", "--dry-run",
        ),
        "DryRunOperation",
    )
    assert len(names_like(ec2, name)) == 1


def test_a_deregistered_image_frees_its_name(ec2, x86_snapshot):
    first, name = register(ec2, x86_snapshot)
    ec2.deregister_image(ImageId=first)
    second, _ = register(ec2, x86_snapshot, name=name)
    assert second != first
    assert [i["ImageId"] for i in names_like(ec2, name)] == [second]


def test_names_are_unique_per_account_and_region(ec2, ec2_other, x86_snapshot):
    image_id, name = register(ec2, x86_snapshot)
    # Another account may use the same name (the provider snapshot is usable by all).
    theirs, _ = register(ec2_other, x86_snapshot, name=name)
    assert theirs != image_id
    assert describe_one(ec2_other, theirs)["Name"] == name
    assert theirs not in ids(ec2.describe_images()["Images"])


# --- launch permissions between accounts -------------------------------------------------


@pytest.fixture
def private_image(ec2, x86_snapshot):
    image_id, _ = register(ec2, x86_snapshot, Description="private")
    return image_id


def _visible_to(client, image_id):
    return image_id in ids(client.describe_images()["Images"])


def test_private_image_is_invisible_to_another_account(ec2_other, private_image):
    expect_error("InvalidAMIID.NotFound", ec2_other.describe_images, ImageIds=[private_image])
    assert not _visible_to(ec2_other, private_image)
    assert private_image not in ids(ec2_other.describe_images(ExecutableUsers=["self"])["Images"])
    expect_error("InvalidAMIID.NotFound", ec2_other.deregister_image, ImageId=private_image)
    expect_error(
        "InvalidAMIID.NotFound", ec2_other.modify_image_attribute, ImageId=private_image,
        LaunchPermission={"Add": [{"Group": "all"}]},
    )


def test_sharing_with_an_account(ec2, ec2_other, private_image, operator_id, other_id):
    ec2.create_tags(Resources=[private_image], Tags=[{"Key": "owner-only", "Value": "yes"}])
    ec2.modify_image_attribute(ImageId=private_image, LaunchPermission={"Add": [{"UserId": other_id}]})

    attr = ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")
    assert attr["ImageId"] == private_image
    assert attr["LaunchPermissions"] == [{"UserId": other_id}]

    shared = ec2_other.describe_images(ExecutableUsers=["self"])["Images"]
    assert private_image in ids(shared)
    img = describe_one(ec2_other, private_image)
    assert img["OwnerId"] == operator_id
    assert img["Public"] is False
    # The owner's tags are the owner's.
    assert not img.get("Tags")
    assert _visible_to(ec2_other, private_image)
    assert private_image not in ids(ec2_other.describe_images(Owners=["self"])["Images"])
    assert private_image in ids(ec2_other.describe_images(Owners=[operator_id])["Images"])
    # Still private to everyone else.
    assert describe_one(ec2, private_image)["Public"] is False
    assert private_image not in ids(ec2.describe_images(ExecutableUsers=["all"])["Images"])

    # The other account may launch it, not change it.
    for call, kwargs in (
        (ec2_other.modify_image_attribute, {"LaunchPermission": {"Add": [{"Group": "all"}]}}),
        (ec2_other.modify_image_attribute, {"LaunchPermission": {"Remove": [{"UserId": other_id}]}}),
        (ec2_other.modify_image_attribute, {"Description": {"Value": "mine now"}}),
        (ec2_other.reset_image_attribute, {"Attribute": "launchPermission"}),
        (ec2_other.deregister_image, {}),
    ):
        with pytest.raises(ClientError) as info:
            call(ImageId=private_image, **kwargs)
        assert info.value.response["Error"]["Code"] in (
            "AuthFailure", "UnauthorizedOperation", "InvalidAMIID.NotFound",
        ), info.value.response["Error"]
    img = describe_one(ec2, private_image)
    assert img["Public"] is False and img["Description"] == "private"
    assert ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")[
        "LaunchPermissions"
    ] == [{"UserId": other_id}]

    ec2.modify_image_attribute(ImageId=private_image, LaunchPermission={"Remove": [{"UserId": other_id}]})
    assert ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")["LaunchPermissions"] == []
    expect_error("InvalidAMIID.NotFound", ec2_other.describe_images, ImageIds=[private_image])
    assert not _visible_to(ec2_other, private_image)
    assert private_image not in ids(ec2_other.describe_images(ExecutableUsers=["self"])["Images"])


def test_group_all_makes_an_image_public_and_reset_makes_it_private(ec2, ec2_other, private_image, other_id):
    ec2.modify_image_attribute(ImageId=private_image, LaunchPermission={"Add": [{"Group": "all"}]})
    assert describe_one(ec2, private_image)["Public"] is True
    img = describe_one(ec2_other, private_image)
    assert img["Public"] is True
    assert private_image in ids(ec2_other.describe_images(ExecutableUsers=["all"])["Images"])
    assert private_image in ids(ec2_other.describe_images(Filters=[{"Name": "is-public", "Values": ["true"]}])["Images"])
    assert _visible_to(ec2_other, private_image)
    # Public, but not amazon's.
    assert private_image not in ids(ec2_other.describe_images(Owners=["amazon"])["Images"])
    assert ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")[
        "LaunchPermissions"
    ] == [{"Group": "all"}]

    ec2.modify_image_attribute(ImageId=private_image, LaunchPermission={"Add": [{"UserId": other_id}]})
    perms = ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")["LaunchPermissions"]
    assert sorted(perms, key=str) == sorted([{"Group": "all"}, {"UserId": other_id}], key=str)

    ec2.reset_image_attribute(ImageId=private_image, Attribute="launchPermission")
    assert describe_one(ec2, private_image)["Public"] is False
    assert ec2.describe_image_attribute(ImageId=private_image, Attribute="launchPermission")["LaunchPermissions"] == []
    expect_error("InvalidAMIID.NotFound", ec2_other.describe_images, ImageIds=[private_image])
    assert private_image not in ids(ec2_other.describe_images(ExecutableUsers=["all"])["Images"])


def test_launch_permissions_with_the_cli(aws, ec2, ec2_other, private_image, other_id):
    # The structure form.
    cli_ok(aws("ec2", "modify-image-attribute", "--image-id", private_image, "--launch-permission", "Add=[{Group=all}]"))
    assert describe_one(ec2_other, private_image)["Public"] is True
    cli_ok(
        aws("ec2", "modify-image-attribute", "--image-id", private_image, "--launch-permission", "Remove=[{Group=all}]")
    )
    assert describe_one(ec2, private_image)["Public"] is False
    # The legacy form: Attribute + OperationType + UserGroup.N / UserId.N.
    cli_ok(
        aws(
            "ec2", "modify-image-attribute", "--image-id", private_image,
            "--attribute", "launchPermission", "--operation-type", "add", "--user-groups", "all",
        )
    )
    assert describe_one(ec2_other, private_image)["Public"] is True
    cli_ok(
        aws(
            "ec2", "modify-image-attribute", "--image-id", private_image,
            "--attribute", "launchPermission", "--operation-type", "remove", "--user-groups", "all",
        )
    )
    assert describe_one(ec2, private_image)["Public"] is False
    expect_error("InvalidAMIID.NotFound", ec2_other.describe_images, ImageIds=[private_image])
    cli_ok(
        aws(
            "ec2", "modify-image-attribute", "--image-id", private_image,
            "--attribute", "launchPermission", "--operation-type", "add", "--user-ids", other_id,
        )
    )
    out = cli_ok(aws("ec2", "describe-image-attribute", "--image-id", private_image, "--attribute", "launchPermission"))
    assert out["LaunchPermissions"] == [{"UserId": other_id}]
    assert describe_one(ec2_other, private_image)["Public"] is False
    out = cli_ok(aws("ec2", "describe-images", "--executable-users", "self", profile="other"))
    assert private_image in {i["ImageId"] for i in out["Images"]}
    cli_ok(aws("ec2", "reset-image-attribute", "--image-id", private_image, "--attribute", "launchPermission"))
    expect_error("InvalidAMIID.NotFound", ec2_other.describe_images, ImageIds=[private_image])
    cli_error(
        aws("ec2", "modify-image-attribute", "--image-id", private_image, "--launch-permission", "Add=[{Group=all}]",
            profile="other"),
        "InvalidAMIID.NotFound",
    )


def test_description_attribute(ec2, aws, private_image):
    attr = ec2.describe_image_attribute(ImageId=private_image, Attribute="description")
    assert attr["Description"] == {"Value": "private"}
    ec2.modify_image_attribute(ImageId=private_image, Description={"Value": "new words & <xml>"})
    assert ec2.describe_image_attribute(ImageId=private_image, Attribute="description")["Description"] == {
        "Value": "new words & <xml>"
    }
    assert describe_one(ec2, private_image)["Description"] == "new words & <xml>"
    cli_ok(aws("ec2", "modify-image-attribute", "--image-id", private_image, "--description", "from the CLI"))
    out = cli_ok(aws("ec2", "describe-image-attribute", "--image-id", private_image, "--attribute", "description"))
    assert out["Description"] == {"Value": "from the CLI"}
    # The legacy form: Attribute=description&Value=...
    cli_ok(
        aws("ec2", "modify-image-attribute", "--image-id", private_image, "--attribute", "description", "--value", "legacy")
    )
    assert describe_one(ec2, private_image)["Description"] == "legacy"
    # Other attributes answer too.
    bdm_attr = ec2.describe_image_attribute(ImageId=private_image, Attribute="blockDeviceMapping")
    assert bdm_attr["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    expect_error("InvalidAMIID.NotFound", ec2.describe_image_attribute, ImageId=UNKNOWN_AMI, Attribute="description")
    expect_error(
        "InvalidAMIID.NotFound", ec2.modify_image_attribute, ImageId=UNKNOWN_AMI, Description={"Value": "x"}
    )


def test_quick_start_images_cannot_be_changed_by_users(ec2, qs):
    img = qs["x86_64"]["ImageId"]
    for call, kwargs in (
        (ec2.modify_image_attribute, {"LaunchPermission": {"Remove": [{"Group": "all"}]}}),
        (ec2.modify_image_attribute, {"Description": {"Value": "hijacked"}}),
        (ec2.reset_image_attribute, {"Attribute": "launchPermission"}),
        (ec2.deregister_image, {}),
    ):
        with pytest.raises(ClientError) as info:
            call(ImageId=img, **kwargs)
        assert info.value.response["Error"]["Code"] in (
            "AuthFailure", "UnauthorizedOperation", "InvalidAMIID.NotFound",
        ), info.value.response["Error"]
    now = describe_one(ec2, img)
    assert now["Public"] is True and now["Description"] == qs["x86_64"]["Description"]
    # Nor their snapshots deleted.
    with pytest.raises(ClientError):
        ec2.delete_snapshot(SnapshotId=root_snapshot(qs["x86_64"]))
    assert ec2.describe_snapshots(SnapshotIds=[root_snapshot(qs["x86_64"])])["Snapshots"]


# --- CopyImage --------------------------------------------------------------------------


def test_copy_image_between_regions(ec2, ec2_west, x86_snapshot):
    source, name = register(ec2, x86_snapshot, Description="to be copied")
    copy = ec2_west.copy_image(SourceImageId=source, SourceRegion="us-east-1", Name=name)["ImageId"]
    assert_id(copy, "ami")
    assert copy != source
    img = describe_one(ec2_west, copy)
    assert img["Name"] == name  # names are unique per region
    assert img["State"] == "available"
    assert img["Architecture"] == "x86_64"
    assert img["Public"] is False
    assert copy in ids(ec2_west.describe_images(Owners=["self"])["Images"])
    # In eu-west-1 only; the source stays where it was.
    expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[copy])
    expect_error("InvalidAMIID.NotFound", ec2_west.describe_images, ImageIds=[source])
    assert describe_one(ec2, source)["ImageId"] == source
    # Its snapshot is a new one, owned by the caller, in eu-west-1.
    snap = root_snapshot(img)
    assert snap != x86_snapshot
    [s] = ec2_west.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
    assert s["State"] == "completed"
    assert s["OwnerId"] == img["OwnerId"]
    assert "OwnerAlias" not in s
    assert snap in {x["SnapshotId"] for x in ec2_west.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    expect_error("InvalidSnapshot.NotFound", ec2.describe_snapshots, SnapshotIds=[snap])
    # A second copy with the same name in that region is a duplicate.
    expect_error(
        "InvalidAMIName.Duplicate", ec2_west.copy_image, SourceImageId=source, SourceRegion="us-east-1", Name=name
    )


def test_copy_image_tags(ec2, ec2_west, x86_snapshot):
    source, _ = register(ec2, x86_snapshot)
    ec2.create_tags(Resources=[source], Tags=[{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "dev"}])
    plain = ec2_west.copy_image(SourceImageId=source, SourceRegion="us-east-1", Name=uid("cp"))["ImageId"]
    assert not describe_one(ec2_west, plain).get("Tags")
    tagged = ec2_west.copy_image(
        SourceImageId=source, SourceRegion="us-east-1", Name=uid("cp"), CopyImageTags=True,
        TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "env", "Value": "prod"}]}],
    )["ImageId"]
    tags = {t["Key"]: t["Value"] for t in describe_one(ec2_west, tagged)["Tags"]}
    # The request's tags win over copied ones with the same key.
    assert tags == {"team": "blue", "env": "prod"}


def test_copy_image_errors(ec2_west, ec2, qs, x86_snapshot):
    before = ids(ec2_west.describe_images(Owners=["self"])["Images"])
    expect_error(
        "InvalidAMIID.NotFound", ec2_west.copy_image, SourceImageId=UNKNOWN_AMI, SourceRegion="us-east-1", Name=uid("cp")
    )
    # The id exists, but not in the source region named.
    expect_error(
        "InvalidAMIID.NotFound", ec2_west.copy_image, SourceImageId=qs["x86_64"]["ImageId"],
        SourceRegion="us-west-2", Name=uid("cp"),
    )
    expect_error(
        "InvalidAMIID.Malformed", ec2_west.copy_image, SourceImageId="ami-xyz", SourceRegion="us-east-1", Name=uid("cp")
    )
    source, _ = register(ec2, x86_snapshot)
    name = uid("cp")
    expect_error(
        "DryRunOperation", ec2_west.copy_image, SourceImageId=source, SourceRegion="us-east-1", Name=name, DryRun=True
    )
    assert ids(ec2_west.describe_images(Owners=["self"])["Images"]) == before


def test_copy_a_private_image_of_another_account(ec2, ec2_other_west, x86_snapshot, other_id):
    source, _ = register(ec2, x86_snapshot)
    expect_error(
        "InvalidAMIID.NotFound", ec2_other_west.copy_image, SourceImageId=source, SourceRegion="us-east-1",
        Name=uid("cp"),
    )
    ec2.modify_image_attribute(ImageId=source, LaunchPermission={"Add": [{"UserId": other_id}]})
    copy = ec2_other_west.copy_image(SourceImageId=source, SourceRegion="us-east-1", Name=uid("cp"))["ImageId"]
    img = describe_one(ec2_other_west, copy)
    assert img["OwnerId"] == other_id
    assert img["Public"] is False


def test_copying_a_shared_image_needs_access_to_its_snapshot(ec2_west, ec2_other, qs, other_id):
    """EC2 lets an account copy an AMI shared with it only if it may also read the AMI's
    snapshots (public, or shared with createVolumePermission). The Quick Start snapshots
    are public; a snapshot the operator owns is private."""
    own = ec2_west.copy_image(SourceImageId=qs["x86_64"]["ImageId"], SourceRegion="us-east-1", Name=uid("own"))[
        "ImageId"
    ]
    own_snap = root_snapshot(describe_one(ec2_west, own))
    shared, _ = register(ec2_west, own_snap)
    ec2_west.modify_image_attribute(ImageId=shared, LaunchPermission={"Add": [{"UserId": other_id}]})
    assert describe_one(ec2_west, shared)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] == own_snap
    before = ids(ec2_other.describe_images(Owners=["self"])["Images"])
    with pytest.raises(ClientError):
        ec2_other.copy_image(SourceImageId=shared, SourceRegion="eu-west-1", Name=uid("cp"))
    assert ids(ec2_other.describe_images(Owners=["self"])["Images"]) == before


def test_copy_image_with_the_cli(aws, ec2_west, qs):
    name = uid("cli-copy")
    out = cli_ok(
        aws(
            "ec2", "copy-image", "--source-image-id", qs["arm64"]["ImageId"], "--source-region", "us-east-1",
            "--name", name, region="eu-west-1",
        )
    )
    img = describe_one(ec2_west, out["ImageId"])
    assert img["Architecture"] == "arm64"
    assert img["Name"] == name
    assert "ImageOwnerAlias" not in img and img["Public"] is False
    cli_error(
        aws(
            "ec2", "copy-image", "--source-image-id", UNKNOWN_AMI, "--source-region", "us-east-1", "--name", uid("cp"),
            region="eu-west-1",
        ),
        "InvalidAMIID.NotFound",
    )


# --- tags -------------------------------------------------------------------------------


def test_tags_on_an_image_and_its_snapshot(ec2, ec2_west, aws, qs):
    """An image copied into eu-west-1 (so the caller owns the image and its snapshot)."""
    copy = ec2_west.copy_image(SourceImageId=qs["x86_64"]["ImageId"], SourceRegion="us-east-1", Name=uid("tagged"))[
        "ImageId"
    ]
    snap = root_snapshot(describe_one(ec2_west, copy))
    team = uid("team")
    ec2_west.create_tags(Resources=[copy, snap], Tags=[{"Key": "team", "Value": team}, {"Key": "Name", "Value": "t"}])
    img = describe_one(ec2_west, copy)
    assert {t["Key"]: t["Value"] for t in img["Tags"]} == {"team": team, "Name": "t"}
    [s] = ec2_west.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
    assert {t["Key"]: t["Value"] for t in s["Tags"]} == {"team": team, "Name": "t"}

    assert ids(ec2_west.describe_images(Filters=[{"Name": "tag:team", "Values": [team]}])["Images"]) == {copy}
    assert ids(ec2_west.describe_images(Filters=[{"Name": "tag:team", "Values": [team[:-3] + "*"]}])["Images"]) == {copy}
    assert copy in ids(ec2_west.describe_images(Filters=[{"Name": "tag-key", "Values": ["team"]}])["Images"])
    assert ec2_west.describe_images(Filters=[{"Name": "tag:team", "Values": ["nobody"]}])["Images"] == []
    assert ec2.describe_images(Filters=[{"Name": "tag:team", "Values": [team]}])["Images"] == []
    got = ec2_west.describe_snapshots(Filters=[{"Name": "tag:team", "Values": [team]}])["Snapshots"]
    assert {x["SnapshotId"] for x in got} == {snap}
    tags = ec2_west.describe_tags(Filters=[{"Name": "value", "Values": [team]}])["Tags"]
    assert {(t["ResourceId"], t["ResourceType"]) for t in tags} == {(copy, "image"), (snap, "snapshot")}

    out = cli_ok(
        aws("ec2", "describe-images", "--owners", "self", "--filters", f"Name=tag:team,Values={team}", region="eu-west-1")
    )
    assert [i["ImageId"] for i in out["Images"]] == [copy]

    ec2_west.delete_tags(Resources=[copy], Tags=[{"Key": "team"}])
    assert ec2_west.describe_images(Filters=[{"Name": "tag:team", "Values": [team]}])["Images"] == []
    expect_error("InvalidAMIID.NotFound", ec2.create_tags, Resources=[UNKNOWN_AMI], Tags=[{"Key": "a", "Value": "b"}])


# --- deregistration and snapshot deletion -------------------------------------------------


def test_deregister_then_delete_the_snapshot(ec2, ec2_west, qs, data_dir):
    """Own a snapshot by copying a Quick Start image into eu-west-1, then take it apart."""
    provider_snap_west = {
        root_snapshot(i)
        for i in ec2_west.describe_images(Owners=["amazon"])["Images"]
        if i["Architecture"] == "x86_64"
    }
    copy = ec2_west.copy_image(SourceImageId=qs["x86_64"]["ImageId"], SourceRegion="us-east-1", Name=uid("gone"))[
        "ImageId"
    ]
    snap = root_snapshot(describe_one(ec2_west, copy))
    assert snap not in provider_snap_west

    resp = expect_error("InvalidSnapshot.InUse", ec2_west.delete_snapshot, SnapshotId=snap)
    assert copy in resp["Error"]["Message"]
    assert ec2_west.describe_snapshots(SnapshotIds=[snap])["Snapshots"]

    expect_error("DryRunOperation", ec2_west.deregister_image, ImageId=copy, DryRun=True)
    assert describe_one(ec2_west, copy)["ImageId"] == copy

    assert ec2_west.deregister_image(ImageId=copy)["Return"] is True
    expect_error("InvalidAMIID.NotFound", ec2_west.describe_images, ImageIds=[copy])
    assert copy not in ids(ec2_west.describe_images(Owners=["self"])["Images"])
    expect_error("InvalidAMIID.NotFound", ec2_west.deregister_image, ImageId=copy)
    # Snapshots stay unless asked to go.
    assert ec2_west.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"] == "completed"

    ec2_west.delete_snapshot(SnapshotId=snap)
    expect_error("InvalidSnapshot.NotFound", ec2_west.describe_snapshots, SnapshotIds=[snap])
    assert snap not in {s["SnapshotId"] for s in ec2_west.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    expect_error("InvalidSnapshot.NotFound", ec2_west.delete_snapshot, SnapshotId=snap)

    # The copy shared the Quick Start layer: that image and its file are untouched.
    source_snap = root_snapshot(qs["x86_64"])
    assert describe_one(ec2, qs["x86_64"]["ImageId"])["State"] == "available"
    assert ec2.describe_snapshots(SnapshotIds=[source_snap])["Snapshots"]
    layer = data_dir / "snapshots" / f"{source_snap}.qcow2"
    assert layer.is_file(), f"the Quick Start layer {layer} is gone"


def test_deregister_with_delete_associated_snapshots(ec2, ec2_west, qs):
    copy = ec2_west.copy_image(SourceImageId=qs["i386"]["ImageId"], SourceRegion="us-east-1", Name=uid("gone"))[
        "ImageId"
    ]
    snap = root_snapshot(describe_one(ec2_west, copy))
    resp = ec2_west.deregister_image(ImageId=copy, DeleteAssociatedSnapshots=True)
    assert resp["Return"] is True
    assert [r["SnapshotId"] for r in resp.get("DeleteSnapshotResults", [])] == [snap]
    expect_error("InvalidSnapshot.NotFound", ec2_west.describe_snapshots, SnapshotIds=[snap])
    assert describe_one(ec2, qs["i386"]["ImageId"])["State"] == "available"


def test_deregister_and_delete_with_the_cli(aws, ec2_west, qs):
    out = cli_ok(
        aws(
            "ec2", "copy-image", "--source-image-id", qs["x86_64"]["ImageId"], "--source-region", "us-east-1",
            "--name", uid("cli-gone"), region="ap-southeast-2",
        )
    )
    copy = out["ImageId"]
    out = cli_ok(aws("ec2", "describe-images", "--image-ids", copy, region="ap-southeast-2"))
    snap = out["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    cli_error(aws("ec2", "delete-snapshot", "--snapshot-id", snap, region="ap-southeast-2"), "InvalidSnapshot.InUse")
    cli_ok(aws("ec2", "deregister-image", "--image-id", copy, region="ap-southeast-2"))
    cli_error(aws("ec2", "describe-images", "--image-ids", copy, region="ap-southeast-2"), "InvalidAMIID.NotFound")
    rc, _, err = aws("ec2", "delete-snapshot", "--snapshot-id", snap, region="ap-southeast-2")
    assert rc == 0, err
    cli_error(
        aws("ec2", "describe-snapshots", "--snapshot-ids", snap, region="ap-southeast-2"), "InvalidSnapshot.NotFound"
    )


def test_other_account_cannot_see_or_delete_my_snapshots(ec2_west, ec2_other_west, qs):
    copy = ec2_west.copy_image(SourceImageId=qs["x86_64"]["ImageId"], SourceRegion="us-east-1", Name=uid("mine"))[
        "ImageId"
    ]
    snap = root_snapshot(describe_one(ec2_west, copy))
    expect_error("InvalidSnapshot.NotFound", ec2_other_west.describe_snapshots, SnapshotIds=[snap])
    assert snap not in {s["SnapshotId"] for s in ec2_other_west.describe_snapshots()["Snapshots"]}
    expect_error("InvalidSnapshot.NotFound", ec2_other_west.delete_snapshot, SnapshotId=snap)
    assert ec2_west.describe_snapshots(SnapshotIds=[snap])["Snapshots"]
