"""EBS volumes and snapshots: the API with EC2's errors and two accounts kept apart,
and real disks in real VMs (hot-plugged, moved between running instances with their
data, snapshotted, grown live)."""

import os
import uuid

import pytest

from instances_helpers import qemu_pid_of, wait_for
from kiln_helpers import expect_error
from story_helpers import BOOT, ok, ssh, wait_ssh

ZONE = "us-east-1a"


def volume(ec2, vid):
    return ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]


def wait_volume(ec2, vid, state, timeout=30):
    return wait_for(f"{vid} {state}", lambda: volume(ec2, vid)["State"] == state, timeout, interval=0.5)


def wait_attachment(ec2, vid, state, timeout=60):
    def now():
        att = volume(ec2, vid)["Attachments"]
        return (att[0]["State"] if att else "detached") == state

    return wait_for(f"{vid}'s attachment {state}", now, timeout, interval=0.5)


def test_create_describe_modify_delete_with_ec2s_errors(ec2, ec2_other):
    v = ec2.create_volume(AvailabilityZone=ZONE, Size=10, VolumeType="gp3", Iops=4000, Throughput=250,
                          TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "api"}]}],
                          ClientToken=f"ct-{uuid.uuid4().hex}")
    vid = v["VolumeId"]
    try:
        assert v["State"] in ("creating", "available") and v["Size"] == 10
        assert (v["Iops"], v["Throughput"], v["Encrypted"], v["MultiAttachEnabled"]) == (4000, 250, False, False)
        wait_volume(ec2, vid, "available")
        got = ec2.describe_volumes(Filters=[{"Name": "tag:Name", "Values": ["api"]},
                                            {"Name": "status", "Values": ["available"]}])["Volumes"]
        assert [x["VolumeId"] for x in got] == [vid]
        assert ec2.describe_volumes(Filters=[{"Name": "size", "Values": ["10"]},
                                             {"Name": "volume-type", "Values": ["gp3"]}])["Volumes"]
        status = ec2.describe_volume_status(VolumeIds=[vid])["VolumeStatuses"][0]
        assert status["VolumeStatus"]["Status"] == "ok"
        # Bad input: EC2's codes, nothing made.
        before = {x["VolumeId"] for x in ec2.describe_volumes()["Volumes"]}
        expect_error("InvalidParameterValue", ec2.create_volume, AvailabilityZone=ZONE, Size=20000, VolumeType="gp2")
        expect_error("InvalidParameterValue", ec2.create_volume, AvailabilityZone=ZONE, Size=10, VolumeType="st1")
        expect_error("InvalidParameterCombination", ec2.create_volume, AvailabilityZone=ZONE, Size=10,
                     VolumeType="gp2", Iops=300)
        expect_error("MissingParameter", ec2.create_volume, AvailabilityZone=ZONE, Size=10, VolumeType="io1")
        expect_error("InvalidParameterValue", ec2.create_volume, AvailabilityZone=ZONE, Size=10, VolumeType="io1",
                     Iops=1000)
        expect_error("InvalidParameterCombination", ec2.create_volume, AvailabilityZone=ZONE, Size=10,
                     VolumeType="io2", Iops=1000, Throughput=200)
        expect_error("InvalidParameterCombination", ec2.create_volume, AvailabilityZone=ZONE, Size=10,
                     VolumeType="gp3", MultiAttachEnabled=True)
        expect_error("InvalidParameterDependency", ec2.create_volume, AvailabilityZone=ZONE, Size=10,
                     KmsKeyId="alias/aws/ebs")
        expect_error("InvalidParameterValue", ec2.create_volume, AvailabilityZone="us-east-1q", Size=10)
        expect_error("MissingParameter", ec2.create_volume, AvailabilityZone=ZONE)
        expect_error("InvalidSnapshot.NotFound", ec2.create_volume, AvailabilityZone=ZONE,
                     SnapshotId="snap-0123456789abcdef0")
        assert {x["VolumeId"] for x in ec2.describe_volumes()["Volumes"]} == before
        # Modify: grow, change type; never shrink.
        expect_error("InvalidParameterValue", ec2.modify_volume, VolumeId=vid, Size=5)
        m = ec2.modify_volume(VolumeId=vid, Size=12, VolumeType="gp3", Iops=5000)["VolumeModification"]
        assert (m["OriginalSize"], m["TargetSize"], m["TargetIops"]) == (10, 12, 5000)
        wait_for("the volume to grow", lambda: volume(ec2, vid)["Size"] == 12, 30, interval=0.5)
        mods = ec2.describe_volumes_modifications(VolumeIds=[vid])["VolumesModifications"]
        assert mods[0]["ModificationState"] == "completed" and mods[0]["TargetSize"] == 12
        ec2.modify_volume_attribute(VolumeId=vid, AutoEnableIO={"Value": True})
        assert ec2.describe_volume_attribute(VolumeId=vid, Attribute="autoEnableIO")["AutoEnableIO"]["Value"] is True
        # Another account sees none of it.
        expect_error("InvalidVolume.NotFound", ec2_other.describe_volumes, VolumeIds=[vid])
        expect_error("InvalidVolume.NotFound", ec2_other.delete_volume, VolumeId=vid)
        expect_error("InvalidVolume.NotFound", ec2_other.create_snapshot, VolumeId=vid)
        expect_error("InvalidVolumeID.Malformed", ec2.describe_volumes, VolumeIds=["vol-x"])
        # DryRun deletes nothing: the volume and its data stay (the snapshot below reads them).
        expect_error("DryRunOperation", ec2.delete_volume, VolumeId=vid, DryRun=True, status=412)
        expect_error("DryRunOperation", ec2.create_snapshot, VolumeId=vid, DryRun=True, status=412)
        assert volume(ec2, vid)["State"] == "available"
        # A snapshot of a detached volume is complete at once; a smaller volume from it
        # is refused, an equal or larger one made.
        s = ec2.create_snapshot(VolumeId=vid, Description="api")
        sid = s["SnapshotId"]
        assert ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["State"] == "completed"
        expect_error("InvalidSnapshot.NotFound", ec2_other.describe_snapshots, SnapshotIds=[sid])
        expect_error("InvalidParameterValue", ec2.create_volume, AvailabilityZone=ZONE, SnapshotId=sid, Size=5)
        w = ec2.create_volume(AvailabilityZone=ZONE, SnapshotId=sid)
        assert (w["Size"], w["SnapshotId"]) == (12, sid)
        wait_volume(ec2, w["VolumeId"], "available")
        ec2.delete_volume(VolumeId=w["VolumeId"])
        ec2.delete_snapshot(SnapshotId=sid)
    finally:
        ec2.delete_volume(VolumeId=vid)
    expect_error("InvalidVolume.NotFound", ec2.describe_volumes, VolumeIds=[vid])


def test_encryption_by_default(ec2_other):
    ec2 = ec2_other
    assert ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False
    assert ec2.enable_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True
    try:
        v = ec2.create_volume(AvailabilityZone=ZONE, Size=1)
        assert v["Encrypted"] is True
        plain = ec2.create_volume(AvailabilityZone=ZONE, Size=1, Encrypted=False)
        assert plain["Encrypted"] is False
        for x in (v, plain):
            wait_volume(ec2, x["VolumeId"], "available")
            ec2.delete_volume(VolumeId=x["VolumeId"])
    finally:
        assert ec2.disable_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False


def device_of(ip, key, vid):
    """The guest's block device whose serial is the volume's id (as EC2's NVMe shows it)."""
    serial = vid.replace("-", "")
    out = ssh(ip, key, f'for d in /sys/block/vd*; do [ "$(cat $d/serial)" = {serial} ] && echo ${{d##*/}}; done')
    return out.stdout.strip()


def test_a_volume_moves_between_running_instances_and_keeps_its_data(ec2, kiln, quickstart_images, tmp_path):
    name = f"vol-{uuid.uuid4().hex[:10]}"
    key = tmp_path / "key.pem"
    key.write_text(ec2.create_key_pair(KeyName=name)["KeyMaterial"].strip() + "\n")
    key.chmod(0o600)
    group = ec2.create_security_group(GroupName=name, Description="volumes")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    image = quickstart_images["x86_64"]["ImageId"]
    made = ec2.run_instances(ImageId=image, InstanceType="t3.micro", KeyName=name, SecurityGroupIds=[group],
                             MinCount=2, MaxCount=2, Placement={"AvailabilityZone": ZONE})["Instances"]
    a, b = (i["InstanceId"] for i in made)
    volumes = []
    snapshot = None
    snapshots = []
    try:
        ec2.get_waiter("instance_running").wait(InstanceIds=[a, b])
        ips = {}
        for i in ec2.describe_instances(InstanceIds=[a, b])["Reservations"][0]["Instances"]:
            ips[i["InstanceId"]] = i["PublicIpAddress"]
        for ip in ips.values():
            wait_ssh(ip, key, kiln)
        roots = {i: volume_of(ec2, i) for i in (a, b)}

        # A 1 GiB gp3 volume hot-plugged into a: the guest sees a 1 GiB disk.
        vid = ec2.create_volume(AvailabilityZone=ZONE, Size=1, VolumeType="gp3")["VolumeId"]
        volumes.append(vid)
        wait_volume(ec2, vid, "available")
        att = ec2.attach_volume(VolumeId=vid, InstanceId=a, Device="/dev/sdf")
        assert att["State"] == "attaching" and att["Device"] == "/dev/sdf"
        expect_error("IncorrectState", ec2.attach_volume, VolumeId=vid, InstanceId=b, Device="/dev/sdf")
        expect_error("VolumeInUse", ec2.delete_volume, VolumeId=vid)
        wait_attachment(ec2, vid, "attached")
        dev = wait_for("the disk in a", lambda: device_of(ips[a], key, vid), 30, interval=1)
        assert ssh(ips[a], key, f"cat /sys/block/{dev}/size").stdout.strip() == str(2 * 1024 * 1024)
        out = ssh(ips[a], key, f"sudo busybox mke2fs -q /dev/{dev} && sudo mkdir -p /mnt/v && "
                               f"sudo busybox mount /dev/{dev} /mnt/v && echo first | sudo tee /mnt/v/file && "
                               "sync && sudo busybox umount /mnt/v && echo done", timeout=120)
        assert out.stdout.strip().endswith("done"), out

        # Detached from a (the guest lets it go), attached to b: the file is there.
        ec2.detach_volume(VolumeId=vid)
        wait_volume(ec2, vid, "available", timeout=60)
        assert device_of(ips[a], key, vid) == ""
        ec2.attach_volume(VolumeId=vid, InstanceId=b, Device="/dev/sdg")
        wait_attachment(ec2, vid, "attached")
        dev_b = wait_for("the disk in b", lambda: device_of(ips[b], key, vid), 30, interval=1)
        out = ssh(ips[b], key, f"sudo mkdir -p /mnt/v && sudo busybox mount /dev/{dev_b} /mnt/v && "
                               "cat /mnt/v/file && sudo busybox umount /mnt/v")
        assert out.stdout.strip() == "first", out

        # A snapshot of the attached volume (live), then more writes: a volume made
        # from the snapshot has only the old content.
        snapshot = ec2.create_snapshot(VolumeId=vid, Description="live")["SnapshotId"]
        wait_for("the snapshot", lambda: ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["State"]
                 == "completed", 60, interval=0.5)
        # CreateSnapshots: b's root and data volume at one instant.
        together = ec2.create_snapshots(InstanceSpecification={"InstanceId": b}, Description="together",
                                        CopyTagsFromSource="volume")["Snapshots"]
        assert {s["VolumeId"] for s in together} == {roots[b], vid}, together
        snapshots.extend(s["SnapshotId"] for s in together)
        wait_for("the instance's snapshots", lambda: all(
            s["State"] == "completed"
            for s in ec2.describe_snapshots(SnapshotIds=[s["SnapshotId"] for s in together])["Snapshots"]), 60,
            interval=0.5)
        out = ssh(ips[b], key, f"sudo busybox mount /dev/{dev_b} /mnt/v && echo second | sudo tee /mnt/v/more && "
                               "sync && sudo busybox umount /mnt/v && echo done")
        assert out.stdout.strip().endswith("done"), out
        old = ec2.create_volume(AvailabilityZone=ZONE, SnapshotId=snapshot, VolumeType="gp3")["VolumeId"]
        volumes.append(old)
        wait_volume(ec2, old, "available")
        # SnapshotId is where a volume came from, whatever was snapshotted since.
        assert (volume(ec2, vid)["SnapshotId"], volume(ec2, old)["SnapshotId"]) == ("", snapshot)
        ec2.attach_volume(VolumeId=old, InstanceId=a, Device="/dev/sdh")
        wait_attachment(ec2, old, "attached")
        dev_old = wait_for("the snapshot's volume in a", lambda: device_of(ips[a], key, old), 30, interval=1)
        out = ssh(ips[a], key, f"sudo busybox mount /dev/{dev_old} /mnt/v && cat /mnt/v/file && "
                               "ls /mnt/v; sudo busybox umount /mnt/v")
        assert out.stdout.splitlines()[0] == "first" and "more" not in out.stdout, out

        # Forced off a while its guest has it mounted: the disk is pulled from under
        # the guest and QEMU lets go of the file at once, so the volume is free to move.
        ssh(ips[a], key, f"sudo busybox mount /dev/{dev_old} /mnt/v")
        ec2.detach_volume(VolumeId=old, Force=True)
        wait_volume(ec2, old, "available", timeout=30)
        assert not [f for f in open_files(qemu_pid_of(kiln.data_dir, a)) if old in f]

        # Grown live to 2 GiB: the guest sees the new size without a reboot.
        ec2.modify_volume(VolumeId=vid, Size=2)
        wait_for("the modification", lambda: ec2.describe_volumes_modifications(VolumeIds=[vid])[
            "VolumesModifications"][0]["ModificationState"] == "completed", 60, interval=0.5)
        wait_for("the guest to see 2 GiB", lambda: ssh(ips[b], key, f"cat /sys/block/{dev_b}/size").stdout.strip()
                 == str(4 * 1024 * 1024), 30, interval=1)

        # Terminating deletes the volumes marked DeleteOnTermination (b's root) and
        # keeps the others, available: the attached ones, and a's root once its mark
        # is taken off with ModifyInstanceAttribute.
        root_device = ec2.describe_instances(InstanceIds=[a])["Reservations"][0]["Instances"][0]["RootDeviceName"]
        ec2.modify_instance_attribute(InstanceId=a, BlockDeviceMappings=[
            {"DeviceName": root_device, "Ebs": {"DeleteOnTermination": False}}])
        expect_error("InvalidParameterValue", ec2.modify_instance_attribute, InstanceId=a, BlockDeviceMappings=[
            {"DeviceName": "/dev/sdz", "Ebs": {"DeleteOnTermination": False}}])
        assert volume(ec2, roots[a])["Attachments"][0]["DeleteOnTermination"] is False
        ec2.terminate_instances(InstanceIds=[a, b])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[a, b])
        volumes.append(roots[a])
        for v in (vid, old, roots[a]):
            wait_volume(ec2, v, "available")
        expect_error("InvalidVolume.NotFound", ec2.describe_volumes, VolumeIds=[roots[b]])
        expect_error("IncorrectInstanceState", ec2.attach_volume, VolumeId=vid, InstanceId=a, Device="/dev/sdf")
    finally:
        ec2.terminate_instances(InstanceIds=[a, b])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=[a, b])
        for v in volumes:
            wait_volume(ec2, v, "available")
            ec2.delete_volume(VolumeId=v)
        for s in snapshots + ([snapshot] if snapshot else []):
            ec2.delete_snapshot(SnapshotId=s)
        ec2.delete_key_pair(KeyName=name)
        ec2.delete_security_group(GroupId=group)


def open_files(pid):
    """The files a process has open."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def volume_of(ec2, instance_id):
    """An instance's root volume id."""
    vols = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [instance_id]}])["Volumes"]
    assert len(vols) == 1, vols
    return vols[0]["VolumeId"]


def test_snapshots_are_shared_and_copied_without_copying_data(ec2, ec2_other, ec2_west):
    vid = ec2.create_volume(AvailabilityZone=ZONE, Size=2)["VolumeId"]
    wait_volume(ec2, vid, "available")
    sid = ec2.create_snapshot(VolumeId=vid, Description="to share")["SnapshotId"]
    made = []
    try:
        other = ec2_other.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
        # Not shared: another account can neither see nor use it.
        expect_error("InvalidSnapshot.NotFound", ec2_other.create_volume, AvailabilityZone=ZONE, SnapshotId=sid)
        expect_error("InvalidSnapshot.NotFound", ec2_other.describe_snapshots, SnapshotIds=[sid])
        expect_error("InvalidSnapshot.NotFound", ec2_other.modify_snapshot_attribute, SnapshotId=sid,
                     Attribute="createVolumePermission", OperationType="add", UserIds=[other])
        expect_error("InvalidParameterValue", ec2.modify_snapshot_attribute, SnapshotId=sid,
                     Attribute="createVolumePermission", OperationType="add", UserIds=["not-an-account"])
        # Shared with the other account: it sees it (RestorableBy self) and makes a volume.
        ec2.modify_snapshot_attribute(SnapshotId=sid, CreateVolumePermission={"Add": [{"UserId": other}]})
        perms = ec2.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
        assert perms["CreateVolumePermissions"] == [{"UserId": other}], perms
        mine = ec2_other.describe_snapshots(RestorableByUserIds=["self"])["Snapshots"]
        assert sid in {s["SnapshotId"] for s in mine}
        theirs = ec2_other.create_volume(AvailabilityZone=ZONE, SnapshotId=sid)["VolumeId"]
        wait_volume(ec2_other, theirs, "available")
        ec2_other.delete_volume(VolumeId=theirs)
        # Reset: the owner's alone again.
        ec2.reset_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")
        assert ec2.describe_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission")[
            "CreateVolumePermissions"] == []
        expect_error("InvalidSnapshot.NotFound", ec2_other.create_volume, AvailabilityZone=ZONE, SnapshotId=sid)
        # Shared with everyone (group all), then unshared.
        ec2.modify_snapshot_attribute(SnapshotId=sid, Attribute="createVolumePermission", OperationType="add",
                                      GroupNames=["all"])
        assert ec2_other.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]["OwnerId"] != other
        ec2.modify_snapshot_attribute(SnapshotId=sid, CreateVolumePermission={"Remove": [{"Group": "all"}]})
        expect_error("InvalidSnapshot.NotFound", ec2_other.describe_snapshots, SnapshotIds=[sid])
        # Copied to another region: complete at once, and a volume there has its size.
        copy = ec2_west.copy_snapshot(SourceRegion="us-east-1", SourceSnapshotId=sid, Description="west")["SnapshotId"]
        made.append((ec2_west, copy))
        got = ec2_west.describe_snapshots(SnapshotIds=[copy])["Snapshots"][0]
        assert (got["State"], got["VolumeSize"], got["Description"]) == ("completed", 2, "west")
        west_vol = ec2_west.create_volume(AvailabilityZone="eu-west-1a", SnapshotId=copy)["VolumeId"]
        wait_volume(ec2_west, west_vol, "available")
        ec2_west.delete_volume(VolumeId=west_vol)
        expect_error("InvalidSnapshot.NotFound", ec2_west.copy_snapshot, SourceRegion="us-east-1",
                     SourceSnapshotId="snap-0123456789abcdef0")
        # The source goes; the copy still makes volumes (the layer stays while used).
        ec2.delete_snapshot(SnapshotId=sid)
        sid = None
        again = ec2_west.create_volume(AvailabilityZone="eu-west-1a", SnapshotId=copy)["VolumeId"]
        wait_volume(ec2_west, again, "available")
        ec2_west.delete_volume(VolumeId=again)
    finally:
        for client, s in made:
            client.delete_snapshot(SnapshotId=s)
        if sid:
            ec2.delete_snapshot(SnapshotId=sid)
        ec2.delete_volume(VolumeId=vid)


def test_the_aws_cli_drives_volumes_and_snapshots(aws):
    """Every volume and snapshot action that needs no VM, through the AWS CLI, with
    EC2's error codes on stderr and a failing exit status."""
    vol = ok(aws, "ec2", "create-volume", "--availability-zone", ZONE, "--size", "3", "--volume-type", "gp3",
             "--tag-specifications", "ResourceType=volume,Tags=[{Key=Name,Value=cli}]")
    vid = vol["VolumeId"]
    made_snaps = []
    try:
        wait_for("the volume", lambda: ok(aws, "ec2", "describe-volumes", "--volume-ids", vid)["Volumes"][0]["State"]
                 == "available", 30, interval=0.5)
        found = ok(aws, "ec2", "describe-volumes", "--filters", "Name=tag:Name,Values=cli", "Name=size,Values=3")
        assert [v["VolumeId"] for v in found["Volumes"]] == [vid]
        status = ok(aws, "ec2", "describe-volume-status", "--volume-ids", vid)["VolumeStatuses"][0]
        assert status["VolumeStatus"]["Status"] == "ok"
        ok(aws, "ec2", "modify-volume-attribute", "--volume-id", vid, "--auto-enable-io")
        attr = ok(aws, "ec2", "describe-volume-attribute", "--volume-id", vid, "--attribute", "autoEnableIO")
        assert attr["AutoEnableIO"]["Value"] is True
        mod = ok(aws, "ec2", "modify-volume", "--volume-id", vid, "--size", "4")["VolumeModification"]
        assert mod["TargetSize"] == 4
        wait_for("the modification", lambda: ok(aws, "ec2", "describe-volumes-modifications", "--volume-ids", vid)[
            "VolumesModifications"][0]["ModificationState"] == "completed", 30, interval=0.5)

        snap = ok(aws, "ec2", "create-snapshot", "--volume-id", vid, "--description", "cli")
        sid = snap["SnapshotId"]
        made_snaps.append(sid)
        wait_for("the snapshot", lambda: ok(aws, "ec2", "describe-snapshots", "--snapshot-ids", sid)["Snapshots"][0][
            "State"] == "completed", 30, interval=0.5)
        mine = ok(aws, "ec2", "describe-snapshots", "--owner-ids", "self", "--filters", f"Name=volume-id,Values={vid}")
        assert [s["SnapshotId"] for s in mine["Snapshots"]] == [sid]
        ok(aws, "ec2", "modify-snapshot-attribute", "--snapshot-id", sid, "--attribute", "createVolumePermission",
           "--operation-type", "add", "--group-names", "all")
        perms = ok(aws, "ec2", "describe-snapshot-attribute", "--snapshot-id", sid, "--attribute",
                   "createVolumePermission")
        assert perms["CreateVolumePermissions"] == [{"Group": "all"}]
        ok(aws, "ec2", "reset-snapshot-attribute", "--snapshot-id", sid, "--attribute", "createVolumePermission")
        copy = ok(aws, "ec2", "copy-snapshot", "--source-region", "us-east-1", "--source-snapshot-id", sid,
                  "--description", "copied")
        made_snaps.append(copy["SnapshotId"])
        assert ok(aws, "ec2", "get-ebs-encryption-by-default")["EbsEncryptionByDefault"] is False

        # Errors: EC2's code on stderr, a failing status, nothing changed.
        for args, code in [
            (("create-volume", "--availability-zone", ZONE, "--size", "20000", "--volume-type", "gp2"),
             "InvalidParameterValue"),
            (("create-volume", "--availability-zone", ZONE, "--size", "10", "--volume-type", "gp2", "--iops", "300"),
             "InvalidParameterCombination"),
            (("modify-volume", "--volume-id", vid, "--size", "2"), "InvalidParameterValue"),
            (("describe-volumes", "--volume-ids", "vol-0123456789abcdef0"), "InvalidVolume.NotFound"),
            (("describe-volumes", "--volume-ids", "vol-x"), "InvalidVolumeID.Malformed"),
            (("attach-volume", "--volume-id", vid, "--instance-id", "i-0123456789abcdef0", "--device", "/dev/sdf"),
             "InvalidInstanceID.NotFound"),
            (("detach-volume", "--volume-id", vid), "IncorrectState"),
            (("delete-snapshot", "--snapshot-id", "snap-0123456789abcdef0"), "InvalidSnapshot.NotFound"),
        ]:
            rc, _, err = aws("ec2", *args)
            assert rc != 0 and code in err, (args, err)
        assert ok(aws, "ec2", "describe-volumes", "--volume-ids", vid)["Volumes"][0]["Size"] == 4
    finally:
        for s in made_snaps:
            aws("ec2", "delete-snapshot", "--snapshot-id", s)
        ok(aws, "ec2", "delete-volume", "--volume-id", vid)
    rc, _, err = aws("ec2", "describe-volumes", "--volume-ids", vid)
    assert rc != 0 and "InvalidVolume.NotFound" in err
