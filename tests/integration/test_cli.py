"""The `kiln` CLI against the session server, as a person or a script uses it: tables
by default, `--output json` parsed here, errors that say what to do. It talks to the
API with the AWS CLI's credentials rules (the session's AWS_SHARED_CREDENTIALS_FILE),
so `--profile other` is another account. Launching is covered by the README's
walkthrough (test_readme.py)."""

import json
import os
import subprocess
import uuid

import pytest

from conftest import KILN_BIN


@pytest.fixture()
def kiln_cli(kiln, tmp_path):
    env = {**os.environ, "KILN_KEYS_DIR": str(tmp_path / "keys")}

    def run(*args, output="json", ok=True):
        cmd = [KILN_BIN, *args, "--endpoint", kiln.endpoint]
        if output:
            cmd += ["--output", output]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        if ok:
            assert p.returncode == 0, f"{' '.join(args)}: {p.stderr}"
            return json.loads(p.stdout) if output == "json" else p.stdout
        assert p.returncode != 0, f"{' '.join(args)} should have failed: {p.stdout}"
        return p.stderr

    run.keys = tmp_path / "keys"
    return run


def test_regions_types_and_images(kiln_cli, quickstart_images):
    regions = {r["region"]: r["zones"].split() for r in kiln_cli("regions")}
    assert regions["us-east-1"] == [f"us-east-1{x}" for x in "abcdef"]
    assert regions["us-west-1"] == ["us-west-1b", "us-west-1c"]
    arm = {t["type"]: t for t in kiln_cli("types", "--arch", "arm64")}
    assert "t4g.micro" in arm and all("arm64" in t["architectures"] for t in arm.values())
    assert arm["t4g.micro"]["vcpus"] == "2"
    images = kiln_cli("images", "list", "--category", "quickstart")
    assert {i["name"].rsplit("-", 1)[0] for i in images} >= {"kiln-tiny-x86_64", "kiln-tiny-arm64"}
    assert all(i["category"] == "quickstart" and i["owner"] == "amazon" for i in images)
    table = kiln_cli("images", output=None)
    assert table.splitlines()[0].split()[:3] == ["CATEGORY", "ID", "NAME"]


def test_keys_are_saved_where_ssh_finds_them(kiln_cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    out = kiln_cli("keys", "create", name, output=None)
    assert "private key saved" in out
    saved = kiln_cli.keys / f"{name}.pem"
    assert saved.stat().st_mode & 0o777 == 0o600
    listed = {k["name"]: k for k in kiln_cli("keys", "list")}
    assert listed[name]["private_key_saved"] == "yes" and listed[name]["type"] == "ed25519"
    # Another account sees none of it.
    assert name not in {k["name"] for k in kiln_cli("keys", "list", "--profile", "other")}
    kiln_cli("keys", "rm", name)
    assert not saved.exists()
    assert name not in {k["name"] for k in kiln_cli("keys", "list")}


def test_security_groups(kiln_cli):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    [made] = kiln_cli("sg", "create", name)
    assert made["id"].startswith("sg-")
    kiln_cli("sg", "allow", name, "22")
    kiln_cli("sg", "allow", name, "8000-8080/udp", "--from", "10.0.0.0/8")
    groups = {g["name"]: g for g in kiln_cli("sg", "list")}
    assert groups[name]["ingress"] == "22/tcp from 0.0.0.0/0, 8000-8080/udp from 10.0.0.0/8"
    kiln_cli("sg", "revoke", name, "22")
    groups = {g["name"]: g for g in kiln_cli("sg", "list")}
    assert groups[name]["ingress"] == "8000-8080/udp from 10.0.0.0/8"
    err = kiln_cli("sg", "allow", name, "70000", ok=False)
    assert "ports are numbers from 0 to 65535" in err
    err = kiln_cli("sg", "revoke", name, "443", ok=False)
    assert f"{name} has no rule 443 from 0.0.0.0/0" in err
    kiln_cli("sg", "rm", made["id"])
    assert name not in {g["name"] for g in kiln_cli("sg", "list")}


def test_errors_say_what_to_do(kiln_cli, kiln):
    err = kiln_cli("show", "i-0123456789abcdef0", ok=False)
    assert "InvalidInstanceID.NotFound" in err
    err = kiln_cli("run", "no-such-image-*", ok=False)
    assert "no available image named 'no-such-image-*'" in err and "kiln images" in err
    p = subprocess.run([KILN_BIN, "ls", "--endpoint", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "is `kiln serve` running?" in p.stderr, p.stderr
    assert all(i["state"] != "terminated" for i in kiln_cli("ls"))


def test_completions():
    out = subprocess.run([KILN_BIN, "completions", "bash"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "_kiln()" in out.stdout and "create-image" in out.stdout


def test_vpc_and_eip_commands(kiln_cli, kiln, ec2):
    made = kiln_cli("vpc", "create", "10.66.0.0/16", "--name", "cli-vpc")
    [row] = made
    vpc, subnet = row["vpc"], row["subnet"]
    assert row["subnet_cidr"] == "10.66.0.0/24"
    # The subnet routes to the attached gateway and maps public addresses.
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])["RouteTables"]
    routes = {r["DestinationCidrBlock"]: r for r in tables[0]["Routes"]}
    assert routes["0.0.0.0/0"]["GatewayId"] == row["gateway"] and routes["0.0.0.0/0"]["State"] == "active"
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    assert vpc in {v["vpc"] for v in kiln_cli("vpc", "list")}
    [eip] = kiln_cli("eip", "allocate")
    assert eip["allocation"].startswith("eipalloc-") and eip["public_ip"]
    assert eip["allocation"] in {a["allocation"] for a in kiln_cli("eip")}
    kiln_cli("eip", "rm", eip["allocation"], output=None)
    assert eip["allocation"] not in {a["allocation"] for a in kiln_cli("eip")}
    kiln_cli("vpc", "rm", vpc, output=None)
    assert vpc not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    err = kiln_cli("vpc", "create", "banana", ok=False)
    assert "CIDR" in err


def test_global_options_before_the_command(kiln):
    """As `aws --region R ec2 ...`: the options may come before the command."""
    p = subprocess.run(
        [KILN_BIN, "--endpoint", kiln.endpoint, "--region", "us-west-1", "--output", "json", "regions"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    rows = {r["region"]: r["zones"].split() for r in json.loads(p.stdout)}
    assert rows["us-west-1"] == ["us-west-1b", "us-west-1c"]


def test_run_by_family_name_waits_only_as_long_as_ssh_can_answer(kiln_cli, quickstart_images, ec2):
    """`kiln run kiln-tiny --wait` in the default group (no SSH rule): the family name
    picks the newest kiln-tiny for this host, and the wait ends at status ok, saying
    how to open port 22, instead of waiting for SSH for ever."""
    base = [KILN_BIN, "--endpoint", ec2.meta.endpoint_url, "--output", "json"]
    p = subprocess.run([*base, "run", "kiln-tiny", "--wait"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    [inst] = json.loads(p.stdout)
    try:
        assert "not waiting for ssh" in p.stderr and "kiln sg allow" in p.stderr, p.stderr
        image = ec2.describe_images(ImageIds=[inst["image"]])["Images"][0]
        assert image["Name"].startswith("kiln-tiny-x86_64"), image["Name"]
        assert inst["state"] == "running"
    finally:
        ec2.terminate_instances(InstanceIds=[inst["id"]])


def test_volume_and_snapshot_commands(kiln_cli, ec2):
    """A volume's life through `kiln volumes` and `kiln snapshots`, each command waiting
    for the state it makes: created available, snapshotted completed, grown."""
    [vol] = kiln_cli("volumes", "create", "--size", "1", "--name", "cli-vol")
    vid = vol["id"]
    try:
        assert vid.startswith("vol-") and vol["state"] == "available" and vol["size_gib"] == "1"
        assert (vol["type"], vol["name"], vol["instance"]) == ("gp3", "cli-vol", "")
        first_zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
        assert vol["zone"] == first_zone
        listed = {v["id"]: v for v in kiln_cli("volumes", "list")}
        assert listed[vid]["size_gib"] == "1" and listed[vid]["state"] == "available"
        table = kiln_cli("volumes", output=None)
        assert table.splitlines()[0].split()[:4] == ["ID", "SIZE", "GIB", "TYPE"] and vid in table
        [snap] = kiln_cli("snapshots", "create", vid, "--description", "cli snapshot")
        sid = snap["id"]
        assert sid.startswith("snap-") and snap["state"] == "completed" and snap["volume"] == vid
        snaps = {s["id"]: s for s in kiln_cli("snapshots")}
        assert snaps[sid]["description"] == "cli snapshot" and snaps[sid]["progress"] == "100%"
        # Only the caller's own: not the Quick Start images' snapshots, not another account's.
        assert {s["id"] for s in kiln_cli("snapshots", "list")} == {
            s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        assert sid not in {s["id"] for s in kiln_cli("snapshots", "--profile", "other")}
        [grown] = kiln_cli("volumes", "grow", vid, "2")
        assert (grown["original_size_gib"], grown["size_gib"], grown["state"]) == ("1", "2", "completed")
        assert {v["id"]: v for v in kiln_cli("volumes")}[vid]["size_gib"] == "2"
        kiln_cli("snapshots", "rm", sid, output=None)
        assert sid not in {s["id"] for s in kiln_cli("snapshots")}
    finally:
        kiln_cli("volumes", "rm", vid, output=None)
    assert vid not in {v["id"] for v in kiln_cli("volumes")}


def test_volume_command_errors(kiln_cli):
    err = kiln_cli("volumes", "rm", "vol-0123456789abcdef0", ok=False)
    assert "InvalidVolume.NotFound" in err
    err = kiln_cli("snapshots", "create", "vol-0123456789abcdef0", ok=False)
    assert "InvalidVolume.NotFound" in err
    err = kiln_cli("volumes", "create", ok=False)
    assert "--size" in err
