"""Instances are real QEMU VMs: RunInstances and the lifecycle (stop/start/reboot/
terminate, guest-initiated shutdown), attributes, console output, status checks,
validation errors, idempotency, arm64 under TCG, the AWS CLI, and crash recovery
(the server SIGKILLed and restarted adopts the daemonized VMs).

This module runs its own `kiln serve` (own port and data directory, `--vcpu-quota 16`,
the shared package cache), because it kills and restarts it. Teardown terminates every
instance and fails if any QEMU process of the data directory survives that.
"""

import base64
import os
import re
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from kiln_helpers import remove_host_state

from instances_helpers import (
    USER_REASON,
    Server,
    all_instances,
    console,
    describe,
    expect_error,
    kill_all_qemu,
    make_cli,
    qemu_of,
    qemu_pid_of,
    qemu_processes,
    ready_boots,
    ready_line,
    state_of,
    tiny_accels,
    wait_console,
    wait_for,
    wait_state,
    waiter,
    xml_text,
)

IMAGES_TIMEOUT = 600.0
X86_BOOT = 90.0  # to running + status ok, generous: the 2 host cores are shared
ARM_BOOT = 240.0
STOP_TIMEOUT = 90.0  # x86 guests power off in ~5 s; arm64 may take the 45 s grace
VCPU_QUOTA = 16

UNKNOWN_AMI = "ami-0123456789abcdef0"
UNKNOWN_INSTANCE = "i-0123456789abcdef0"
UNKNOWN_SUBNET = "subnet-0123456789abcdef0"


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- fixtures ------------------------------------------------------------------------------


def _terminate_everything(srv):
    """Terminates every instance of every account (us-east-1); returns problems found."""
    problems = []
    for profile in srv.profiles():
        try:
            ec2 = srv.client(profile)
            live = [i["InstanceId"] for i in all_instances(ec2) if i["State"]["Name"] != "terminated"]
            for iid in live:
                try:
                    ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
                except Exception as e:  # noqa: BLE001 - best effort
                    problems.append(f"{profile}: clearing disableApiTermination of {iid}: {e}")
            if live:
                ec2.terminate_instances(InstanceIds=live)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    left = [i for i in all_instances(ec2, InstanceIds=live) if i["State"]["Name"] != "terminated"]
                    if not left:
                        break
                    time.sleep(1)
                else:
                    problems.append(f"{profile}: not terminated 120 s after TerminateInstances: {left}")
        except Exception as e:  # noqa: BLE001 - teardown collects everything
            problems.append(f"{profile}: terminating: {e!r}")
    return problems


@pytest.fixture(scope="module")
def srv():
    server = Server(["--vcpu-quota", str(VCPU_QUOTA)])
    bin_path = Path(os.environ.get("KILN_BIN") or Path(__file__).resolve().parents[2] / "target/debug/kiln")
    if not bin_path.exists():
        pytest.exit(f"kiln binary not found at {bin_path}", returncode=2)
    server.start()
    assert server.credentials_file.exists(), "kiln serve wrote no DIR/credentials"
    try:
        yield server
    finally:
        problems = []
        if server.proc is None or server.proc.poll() is not None:
            try:
                server.start()
            except AssertionError as e:
                problems.append(f"could not restart the server for teardown: {e}")
        if server.proc is not None and server.proc.poll() is None:
            problems += _terminate_everything(server)
        # No QEMU of this data directory may outlive its instances.
        try:
            wait_for("the QEMU processes to end", lambda: not qemu_processes(server.data_dir), 30, 0.5)
        except AssertionError:
            pass
        leftovers = kill_all_qemu(server.data_dir)
        if leftovers:
            problems.append(
                "QEMU processes remained after every instance was terminated (killed now): "
                + "; ".join(f"{pid}: {' '.join(argv[:3])}" for pid, argv in leftovers.items())
            )
        status = server.stop()
        if status != 0:
            problems.append(f"kiln serve did not exit cleanly on SIGTERM: {status}")
        log_tail = server.log_tail(80)
        # A panic's own message comes before its backtrace, which the tail may not reach.
        lines = server.log().splitlines()
        first = next((n for n, line in enumerate(lines) if "panicked at" in line), None)
        if first is not None:
            log_tail = "--- the first panic ---\n" + "\n".join(lines[first:first + 3]) + "\n" + log_tail
        remove_host_state(server.data_dir)
        server.cleanup_dirs()
        if problems:
            pytest.fail("teardown:\n" + "\n".join(problems) + "\n" + log_tail, pytrace=False)


@pytest.fixture(scope="module")
def ec2(srv):
    return srv.client("default")


@pytest.fixture(scope="module")
def images(srv, ec2):
    """{architecture: image} of the Quick Start kiln-tiny images (x86_64 and arm64)."""
    start = time.monotonic()

    def ready():
        found = {}
        for img in sorted(
            ec2.describe_images(Owners=["amazon"])["Images"], key=lambda i: i.get("CreationDate", ""), reverse=True
        ):
            if img.get("State") == "available" and img.get("Name", "").startswith("kiln-tiny-"):
                found.setdefault(img["Architecture"], img)
        if any("Quick Start image not available" in l and "kiln-tiny-" in l for l in srv.log().splitlines()):
            pytest.fail(f"the Quick Start build failed\n{srv.log_tail(80)}")
        if srv.proc.poll() is not None:
            pytest.fail(f"kiln serve exited while building the Quick Start images\n{srv.log_tail(80)}")
        return found if {"x86_64", "arm64"} <= set(found) else None

    found = wait_for("the kiln-tiny x86_64 and arm64 images", ready, IMAGES_TIMEOUT, 2, diag=srv.log_tail)
    print(f"\n[instances] Quick Start images available after {time.monotonic() - start:.0f} s", flush=True)
    for arch, img in found.items():
        assert img["Name"].startswith(f"kiln-tiny-{arch}-"), img["Name"]
    return found


@pytest.fixture(scope="module")
def x86(images):
    return images["x86_64"]["ImageId"]


@pytest.fixture(scope="module")
def arm(images):
    return images["arm64"]["ImageId"]


@pytest.fixture(scope="module")
def cli(srv):
    return make_cli(srv)


@pytest.fixture(scope="module")
def other(srv):
    """A client for a second account, `other`."""
    if "other" not in srv.profiles():
        srv.create_account("other")
    return srv.client("other")


def run(ec2, image_id, **kwargs):
    args = {"ImageId": image_id, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1, **kwargs}
    return ec2.run_instances(**args)


def run_one(ec2, image_id, **kwargs):
    r = run(ec2, image_id, **kwargs)
    assert len(r["Instances"]) == 1, r["Instances"]
    return r["Instances"][0]["InstanceId"]


def terminate_and_wait(ec2, srv, ids, timeout=90):
    ec2.terminate_instances(InstanceIds=list(ids))
    waiter(ec2, "instance_terminated", ids, timeout, srv)


def volume_files(srv, instance):
    """(volume id, path) of each EBS mapping of a described instance."""
    out = []
    for m in instance.get("BlockDeviceMappings", []):
        vid = m["Ebs"]["VolumeId"]
        out.append((vid, srv.data_dir / "volumes" / f"{vid}.qcow2"))
    return out


def new_segment(before, now):
    """What the console printed after `before` was read: the appended part, or all of
    it if the log was started afresh (a new QEMU truncates its serial file)."""
    return now[len(before):] if now.startswith(before) else now


# --- 1. RunInstances with MaxCount=2 ------------------------------------------------------------


def test_run_two_instances_boot_and_describe(srv, ec2, x86):
    key = ec2.create_key_pair(KeyName=uid("key"))["KeyName"]
    token = uuid.uuid4().hex[:12]
    user_data = f'#!/bin/sh\necho "user-data-ran: {token}" > /dev/console\n'
    r = ec2.run_instances(
        ImageId=x86,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=2,
        KeyName=key,
        UserData=user_data,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]}],
    )
    ids = [i["InstanceId"] for i in r["Instances"]]
    try:
        assert re.fullmatch(r"r-[0-9a-f]{17}", r["ReservationId"]), r["ReservationId"]
        assert len(ids) == 2 and len(set(ids)) == 2, ids
        for i in r["Instances"]:
            assert re.fullmatch(r"i-[0-9a-f]{17}", i["InstanceId"])
            assert i["State"] == {"Code": 0, "Name": "pending"}, i["State"]
            assert i["ImageId"] == x86 and i["InstanceType"] == "t3.micro" and i["KeyName"] == key
            assert i["Architecture"] == "x86_64"
        assert sorted(i["AmiLaunchIndex"] for i in r["Instances"]) == [0, 1]

        # One reservation holds both.
        res = ec2.describe_instances(InstanceIds=ids)["Reservations"]
        assert len(res) == 1 and res[0]["ReservationId"] == r["ReservationId"], res
        assert sorted(i["InstanceId"] for i in res[0]["Instances"]) == sorted(ids)

        waiter(ec2, "instance_running", ids, X86_BOOT, srv)
        waiter(ec2, "instance_status_ok", ids, X86_BOOT, srv)

        for iid in ids:
            # Status ok may come from the guest's first metadata request, a moment
            # before the ready line.
            out = wait_console(ec2, iid, lambda t: ready_line(iid) in t, "the ready line", 60, srv)
            assert f"user-data-ran: {token}" in out, f"the user data did not run on {iid}:\n{out[-2000:]}"
            # The other instance's id must not appear: each console is its own.
            for other_id in set(ids) - {iid}:
                assert other_id not in out

        # Filters.
        def filtered(name, *values):
            got = all_instances(ec2, Filters=[{"Name": name, "Values": list(values)}])
            return {i["InstanceId"] for i in got}

        assert set(ids) <= filtered("instance-state-name", "running")
        assert not set(ids) & filtered("instance-state-name", "stopped", "terminated")
        assert filtered("tag:Name", "web") == set(ids)
        assert filtered("tag:Name", "db") == set()
        assert set(ids) <= filtered("instance-type", "t3.micro")
        assert not set(ids) & filtered("instance-type", "t3.small")
        assert set(ids) <= filtered("image-id", x86)
        assert filtered("image-id", UNKNOWN_AMI) == set()
        assert filtered("key-name", key) == set(ids)
        assert filtered("key-name", key + "-nope") == set()

        st = ec2.describe_instance_status(InstanceIds=ids)["InstanceStatuses"]
        assert sorted(s["InstanceId"] for s in st) == sorted(ids)
        for s in st:
            assert s["InstanceState"] == {"Code": 16, "Name": "running"}
            assert s["SystemStatus"]["Status"] == "ok", s
            assert s["InstanceStatus"]["Status"] == "ok", s

        for iid in ids:
            inst = describe(ec2, iid)
            assert inst["State"]["Name"] == "running"
            assert {t["Key"]: t["Value"] for t in inst.get("Tags", [])} == {"Name": "web"}
            roots = [m for m in inst["BlockDeviceMappings"] if m["DeviceName"] == inst["RootDeviceName"]]
            assert len(roots) == 1, inst["BlockDeviceMappings"]
            vid = roots[0]["Ebs"]["VolumeId"]
            assert re.fullmatch(r"vol-[0-9a-f]{17}", vid), vid
            path = srv.data_dir / "volumes" / f"{vid}.qcow2"
            assert path.is_file(), f"{path} missing"
            pid, argv = qemu_of(srv.data_dir, iid)
            assert pid is not None and any(str(path) in a for a in argv), (pid, argv)
    finally:
        terminate_and_wait(ec2, srv, ids)


# --- 5. Bad input creates nothing ----------------------------------------------------------------


def test_bad_run_instances_create_nothing(srv, ec2, x86, arm):
    before = len(all_instances(ec2))
    files_before = sorted(os.listdir(srv.data_dir / "volumes")) if (srv.data_dir / "volumes").exists() else []
    cases = [
        ("InvalidParameterValue", {"ImageId": arm}, None),  # arm64 image on an x86_64 type
        ("InvalidParameterValue", {"MinCount": 0}, None),
        ("InvalidParameterValue", {"MinCount": 3, "MaxCount": 2}, None),
        ("InvalidAMIID.NotFound", {"ImageId": UNKNOWN_AMI}, None),
        ("InvalidAMIID.Malformed", {"ImageId": "ami-xyz"}, None),
        ("InvalidKeyPair.NotFound", {"KeyName": uid("nokey")}, None),
        ("InvalidSubnetID.NotFound", {"SubnetId": UNKNOWN_SUBNET}, None),
        # 8 vCPUs fit the quota of 16; 64 GiB do not fit the host's memory.
        ("InsufficientInstanceCapacity", {"InstanceType": "r5.2xlarge"}, 500),
        # 5 x 4 vCPUs > 16.
        ("VcpuLimitExceeded", {"InstanceType": "t3.xlarge", "MinCount": 5, "MaxCount": 5}, None),
        # 96 vCPUs are over the quota before the host's capacity is looked at.
        ("VcpuLimitExceeded", {"InstanceType": "m5.24xlarge"}, None),
        # CPU credits belong to burstable types only.
        ("InvalidParameterCombination", {"InstanceType": "m5.large", "CreditSpecification": {"CpuCredits": "standard"}}, None),
        ("InvalidParameterValue", {"CreditSpecification": {"CpuCredits": "lavish"}}, None),
    ]
    failures = []
    for code, change, status in cases:
        args = {"ImageId": x86, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1, **change}
        try:
            resp = expect_error(code, ec2.run_instances, status=status, **args)
            if change.get("ImageId") == arm:
                assert "architecture" in resp["Error"]["Message"], resp["Error"]
        except (AssertionError, pytest.fail.Exception) as e:
            failures.append(f"{change}: {e}")
        now = len(all_instances(ec2))
        if now != before:
            failures.append(f"{change}: {now - before} instance(s) created")
            before = now
    assert not failures, "\n".join(failures)

    # A list of no instances, as EC2 answers it.
    status, body = srv.signed({"Action": "TerminateInstances", "Version": "2016-11-15"})
    assert status == 400 and b"InvalidParameterCombination" in body, body
    # Unknown and malformed instance ids.
    for call in (ec2.stop_instances, ec2.start_instances, ec2.terminate_instances, ec2.describe_instances):
        expect_error("InvalidInstanceID.NotFound", call, InstanceIds=[UNKNOWN_INSTANCE])
        expect_error("InvalidInstanceID.Malformed", call, InstanceIds=["i-123"])

    # DryRun: would succeed, changes nothing.
    expect_error("DryRunOperation", run, ec2, x86, DryRun=True, status=412)
    time.sleep(1.5)  # a few reconciler passes
    assert len(all_instances(ec2)) == before
    files_now = sorted(os.listdir(srv.data_dir / "volumes")) if (srv.data_dir / "volumes").exists() else []
    assert files_now == files_before, "volume files appeared for rejected or dry-run launches"


def test_private_image_of_another_account_is_not_found(srv, ec2, other, images):
    img = images["x86_64"]
    root = [m for m in img["BlockDeviceMappings"] if m["DeviceName"] == img["RootDeviceName"]][0]
    name = uid("private")
    image_id = ec2.register_image(
        Name=name,
        RootDeviceName=img["RootDeviceName"],
        Architecture="x86_64",
        BlockDeviceMappings=[{"DeviceName": img["RootDeviceName"], "Ebs": {"SnapshotId": root["Ebs"]["SnapshotId"]}}],
    )["ImageId"]
    assert [i["ImageId"] for i in ec2.describe_images(ImageIds=[image_id])["Images"]] == [image_id]
    before = len(all_instances(other))
    resp = expect_error("InvalidAMIID.NotFound", run, other, image_id)
    assert image_id in resp["Error"]["Message"]
    assert len(all_instances(other)) == before == 0


def test_client_token_idempotency(srv, ec2, x86):
    token = uuid.uuid4().hex
    before = len(all_instances(ec2))
    first = run(ec2, x86, ClientToken=token)
    ids = [i["InstanceId"] for i in first["Instances"]]
    try:
        assert len(ids) == 1
        assert len(all_instances(ec2)) == before + 1
        again = run(ec2, x86, ClientToken=token)
        assert [i["InstanceId"] for i in again["Instances"]] == ids
        assert again["ReservationId"] == first["ReservationId"]
        assert len(all_instances(ec2)) == before + 1
        expect_error("IdempotentParameterMismatch", run, ec2, x86, InstanceType="t3.small", ClientToken=token)
        assert len(all_instances(ec2)) == before + 1
        assert describe(ec2, ids[0]).get("ClientToken") == token
        waiter(ec2, "instance_running", ids, X86_BOOT, srv)  # terminating a pending one: see below
    finally:
        terminate_and_wait(ec2, srv, ids)


def test_terminate_while_the_vm_is_being_started(srv, ec2, x86):
    """TerminateInstances on pending instances ends them terminated, also when it lands
    while the host is starting their VMs (the moment their root volume file appears)."""
    r = run(ec2, x86, MinCount=2, MaxCount=2)
    ids = [i["InstanceId"] for i in r["Instances"]]
    files = [p for i in r["Instances"] for _, p in volume_files(srv, i)]
    assert len(files) == 2, r["Instances"]
    try:
        wait_for("a root volume file", lambda: any(p.exists() for p in files), 30, 0.005)
        changes = ec2.terminate_instances(InstanceIds=ids)["TerminatingInstances"]
        for ch in changes:
            assert ch["CurrentState"]["Name"] == "shutting-down", ch
            assert ch["PreviousState"]["Name"] in ("pending", "running"), ch
        time.sleep(2)
        states = {i: describe(ec2, i)["State"]["Name"] for i in ids}
        assert not [s for s in states.values() if s in ("pending", "running")], (
            f"TerminateInstances was lost: {states} (the reconciler wrote 'running' over 'shutting-down')"
        )
        waiter(ec2, "instance_terminated", ids, 60, srv)
        reasons = {i: describe(ec2, i).get("StateReason") for i in ids}
        assert all((r or {}).get("Code") == "Client.UserInitiatedShutdown" for r in reasons.values()), reasons
    finally:
        for iid in ids:
            wait_for(f"{iid} to leave pending", lambda: state_of(ec2, iid) != "pending", 60, 0.5)
        left = [i for i in ids if state_of(ec2, i) != "terminated"]
        if left:
            terminate_and_wait(ec2, srv, left)


# --- 2. Persistence and the lifecycle ---------------------------------------------------------


PERSIST_USER_DATA = r"""#!/bin/sh
mkdir -p /var/lib
echo MARKER > /var/lib/marker
printf '#!/bin/sh\necho "marker: $(cat /var/lib/marker)" > /dev/console\n' > /etc/rc.local
chmod +x /etc/rc.local
sync
"""


def test_stop_start_reboot_modify_terminate(srv, ec2, x86):
    marker = uuid.uuid4().hex
    iid = run_one(
        ec2,
        x86,
        UserData=PERSIST_USER_DATA.replace("MARKER", marker),
        Monitoring={"Enabled": True},
        EbsOptimized=True,
        CreditSpecification={"CpuCredits": "standard"},
    )
    mark_line = f"marker: {marker}"
    done = False
    try:
        waiter(ec2, "instance_running", [iid], X86_BOOT, srv)
        waiter(ec2, "instance_status_ok", [iid], X86_BOOT, srv)
        first = wait_console(ec2, iid, lambda t: mark_line in t and ready_line(iid) in t, "the marker", 60, srv)
        assert "kiln-tiny: running user data" in first
        root_vols = volume_files(srv, describe(ec2, iid))
        assert root_vols and all(p.is_file() for _, p in root_vols)
        # Launch options show back.
        inst = describe(ec2, iid)
        assert inst["Monitoring"] == {"State": "enabled"} and inst["EbsOptimized"] is True, inst
        specs = ec2.describe_instance_credit_specifications(InstanceIds=[iid])["InstanceCreditSpecifications"]
        assert specs == [{"InstanceId": iid, "CpuCredits": "standard"}]
        # The default subnet maps public addresses; the test server's pool is 100.64.2.0/24.
        first_public = describe(ec2, iid)["PublicIpAddress"]
        assert first_public.startswith("100.64.2."), first_public
        pid1, _ = qemu_of(srv.data_dir, iid)
        assert pid1 is not None

        # instanceType and userData change only while stopped.
        expect_error(
            "IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, InstanceType={"Value": "t3.small"}
        )
        expect_error(
            "IncorrectInstanceState", ec2.modify_instance_attribute, InstanceId=iid, UserData={"Value": b"#!/bin/sh\n"}
        )
        assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")["InstanceType"]["Value"] == "t3.micro"

        # Stop.
        [ch] = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"]
        assert ch["InstanceId"] == iid
        assert ch["CurrentState"] == {"Code": 64, "Name": "stopping"}, ch
        assert ch["PreviousState"] == {"Code": 16, "Name": "running"}, ch
        waiter(ec2, "instance_stopped", [iid], STOP_TIMEOUT, srv)
        inst = describe(ec2, iid)
        assert inst["State"] == {"Code": 80, "Name": "stopped"}
        assert inst.get("StateReason", {}).get("Code") == "Client.UserInitiatedShutdown", inst.get("StateReason")
        assert USER_REASON.fullmatch(inst["StateTransitionReason"]), inst["StateTransitionReason"]
        assert qemu_of(srv.data_dir, iid) == (None, None), "QEMU still runs for a stopped instance"
        assert "PublicIpAddress" not in inst, "a stopped instance gives its public address back, as on EC2"
        stopped = ec2.describe_instances(
            Filters=[{"Name": "state-reason-code", "Values": ["Client.UserInitiatedShutdown"]}]
        )["Reservations"]
        assert iid in {i["InstanceId"] for r in stopped for i in r["Instances"]}
        assert all(p.is_file() for _, p in root_vols), "stop lost the root volume"
        # Stop is idempotent for a stopped instance.
        [ch] = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"]
        assert ch["CurrentState"]["Name"] == "stopped" and ch["PreviousState"]["Name"] == "stopped", ch
        before = console(ec2, iid)

        # Attributes while stopped.
        ec2.modify_instance_attribute(InstanceId=iid, InstanceType={"Value": "t3.small"})
        assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceType")["InstanceType"]["Value"] == "t3.small"
        new_ud = "#!/bin/sh\necho second-user-data > /dev/console\n"
        ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": new_ud.encode()})
        got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
        assert base64.b64decode(got).decode() == new_ud

        # Start: the same disk (the marker and rc.local survived; user data does not run again).
        [ch] = ec2.start_instances(InstanceIds=[iid])["StartingInstances"]
        assert ch["CurrentState"] == {"Code": 0, "Name": "pending"}, ch
        assert ch["PreviousState"] == {"Code": 80, "Name": "stopped"}, ch
        waiter(ec2, "instance_running", [iid], X86_BOOT, srv)
        assert describe(ec2, iid)["PublicIpAddress"].startswith("100.64.2."), "a started instance has an address again"
        waiter(ec2, "instance_status_ok", [iid], X86_BOOT, srv)
        after = wait_console(
            ec2,
            iid,
            lambda t: mark_line in new_segment(before, t) and ready_line(iid) in new_segment(before, t),
            "the marker after start",
            60,
            srv,
        )
        seg = new_segment(before, after)
        assert "running user data" not in seg, "user data ran again after a stop/start"
        assert "second-user-data" not in seg
        inst = describe(ec2, iid)
        assert inst["InstanceType"] == "t3.small"
        pid2, argv = qemu_of(srv.data_dir, iid)
        assert pid2 is not None and pid2 != pid1
        assert "2048M" in argv, f"t3.small should get 2 GiB: {argv}"

        # Reboot: same state, a second boot on the same console.
        before = console(ec2, iid)
        status, body = srv.signed({"Action": "RebootInstances", "Version": "2016-11-15", "InstanceId.1": iid})
        assert status == 200, body
        assert xml_text(body, "return") == "true", body
        rebooted = wait_console(
            ec2,
            iid,
            lambda t: ready_line(iid) in new_segment(before, t) and mark_line in new_segment(before, t),
            "the ready line after reboot",
            90,
            srv,
        )
        assert rebooted.startswith(before), "a reboot should keep the console log"
        assert state_of(ec2, iid) == "running"
        assert qemu_of(srv.data_dir, iid)[0] == pid2, "a reboot is a reset, not a new QEMU"

        # disableApiTermination.
        ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": True})
        attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
        assert attr["DisableApiTermination"]["Value"] is True
        expect_error("OperationNotPermitted", ec2.terminate_instances, InstanceIds=[iid])
        assert state_of(ec2, iid) == "running"
        ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})

        # Stop protection, then the attributes tools read and set while it runs.
        ec2.modify_instance_attribute(InstanceId=iid, DisableApiStop={"Value": True})
        assert ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiStop")["DisableApiStop"]["Value"] is True
        expect_error("OperationNotPermitted", ec2.stop_instances, InstanceIds=[iid])
        assert state_of(ec2, iid) == "running"
        ec2.modify_instance_attribute(InstanceId=iid, DisableApiStop={"Value": False})
        ec2.modify_instance_attribute(InstanceId=iid, SourceDestCheck={"Value": False})
        assert describe(ec2, iid)["SourceDestCheck"] is False
        ec2.unmonitor_instances(InstanceIds=[iid])
        assert describe(ec2, iid)["Monitoring"] == {"State": "disabled"}
        done_specs = ec2.modify_instance_credit_specification(
            InstanceCreditSpecifications=[{"InstanceId": iid, "CpuCredits": "unlimited"}]
        )
        assert done_specs["SuccessfulInstanceCreditSpecifications"] == [{"InstanceId": iid}]
        groups = describe(ec2, iid)["SecurityGroups"]
        extra = ec2.create_security_group(GroupName=uid("extra"), Description="second group")["GroupId"]
        ec2.modify_instance_attribute(InstanceId=iid, Groups=[groups[0]["GroupId"], extra])
        got = ec2.describe_instance_attribute(InstanceId=iid, Attribute="groupSet")["Groups"]
        assert [g["GroupId"] for g in got] == [groups[0]["GroupId"], extra]
        expect_error("InvalidGroup.NotFound", ec2.modify_instance_attribute, InstanceId=iid, Groups=["sg-0123456789abcdef0"])
        # The primary interface is the instance's: the same groups through its own API.
        eni = describe(ec2, iid)["NetworkInterfaces"][0]["NetworkInterfaceId"]
        [iface] = ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
        )["NetworkInterfaces"]
        assert iface["NetworkInterfaceId"] == eni and iface["Attachment"]["InstanceId"] == iid
        assert [g["GroupId"] for g in iface["Groups"]] == [groups[0]["GroupId"], extra]
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[groups[0]["GroupId"]])
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, SourceDestCheck={"Value": True})
        assert describe(ec2, iid)["SourceDestCheck"] is True
        assert [g["GroupId"] for g in describe(ec2, iid)["SecurityGroups"]] == [groups[0]["GroupId"]]
        expect_error(
            "InvalidNetworkInterfaceID.NotFound", ec2.modify_network_interface_attribute,
            NetworkInterfaceId="eni-0123456789abcdef0", SourceDestCheck={"Value": True},
        )
        ec2.delete_security_group(GroupId=extra)
        # Every attribute EC2 has answers.
        for attr in ("kernel", "ramdisk", "productCodes", "sriovNetSupport", "enaSupport", "ebsOptimized",
                     "sourceDestCheck", "enclaveOptions", "rootDeviceName", "blockDeviceMapping"):
            ec2.describe_instance_attribute(InstanceId=iid, Attribute=attr)
        # Tags on instances.
        ec2.create_tags(Resources=[iid], Tags=[{"Key": "role", "Value": "web"}])
        assert {"Key": "role", "Value": "web"} in describe(ec2, iid)["Tags"]
        ec2.delete_tags(Resources=[iid], Tags=[{"Key": "role"}])

        # Terminate.
        vols = volume_files(srv, describe(ec2, iid))
        [ch] = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
        assert ch["CurrentState"] == {"Code": 32, "Name": "shutting-down"}, ch
        assert ch["PreviousState"] == {"Code": 16, "Name": "running"}, ch
        waiter(ec2, "instance_terminated", [iid], 90, srv)
        done = True
        for vid, path in vols:
            assert not path.exists(), f"{vid} of a terminated instance is still on disk"
        assert qemu_of(srv.data_dir, iid) == (None, None)
        inst = describe(ec2, iid)
        assert inst["State"] == {"Code": 48, "Name": "terminated"}
        assert iid in {i["InstanceId"] for i in all_instances(ec2)}
        expect_error("IncorrectInstanceState", ec2.start_instances, InstanceIds=[iid])
        expect_error("IncorrectInstanceState", ec2.stop_instances, InstanceIds=[iid])
        [ch] = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"]
        assert ch["CurrentState"]["Name"] == "terminated" and ch["PreviousState"]["Name"] == "terminated", ch
    finally:
        if not done:
            ec2.modify_instance_attribute(InstanceId=iid, DisableApiTermination={"Value": False})
            terminate_and_wait(ec2, srv, [iid])


# --- 3. The guest powers itself off -------------------------------------------------------------


def test_the_only_instance_of_a_vpc_stopped_and_started_at_once_gets_its_network(srv, ec2, x86):
    """Stopping a VPC's only instance removes the VPC's namespace; a start right after
    makes it again, where the tap can get the same interface index as before. The
    guest's DHCP, metadata and DNS must be served on the new namespace, not left on
    sockets of the old one (which once left a restarted guest without network)."""
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    iid = run_one(ec2, x86, SubnetId=subnet)
    try:
        waiter(ec2, "instance_running", [iid], X86_BOOT, srv)
        text = wait_console(ec2, iid, lambda t: ready_boots(t, iid), "the first ready line", 60, srv)
        seen = set(ready_boots(text, iid))
        for n in range(4):
            ec2.stop_instances(InstanceIds=[iid])
            waiter(ec2, "instance_stopped", [iid], STOP_TIMEOUT, srv, delay=1)
            ec2.start_instances(InstanceIds=[iid])

            # A boot not seen before: a fresh QEMU's console can print the very lines
            # of the boot before, so the text alone does not tell the two apart.
            def ready(t):
                assert "ready instance-id=unknown" not in t, f"start {n + 1}: the guest got no network:\n{t[-1500:]}"
                return set(ready_boots(t, iid)) - seen

            text = wait_console(ec2, iid, ready, f"the ready line of a new boot after start {n + 1}", 60, srv)
            seen |= set(ready_boots(text, iid))
    finally:
        terminate_and_wait(ec2, srv, [iid])
        wait_for("the subnet to be deletable", lambda: _deleted(ec2, subnet, vpc), 60)


def _deleted(ec2, subnet, vpc):
    try:
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)
        return True
    except botocore.exceptions.ClientError:
        return False


def test_guest_initiated_shutdown(srv, ec2, x86):
    ud = "#!/bin/sh\n(sleep 2; poweroff) &\n"
    term = run_one(ec2, x86, UserData=ud, InstanceInitiatedShutdownBehavior="terminate")
    stop = run_one(ec2, x86, UserData=ud)
    try:
        attr = lambda i: ec2.describe_instance_attribute(  # noqa: E731
            InstanceId=i, Attribute="instanceInitiatedShutdownBehavior"
        )["InstanceInitiatedShutdownBehavior"]["Value"]
        assert attr(term) == "terminate"
        assert attr(stop) == "stop"
        term_vols = volume_files(srv, describe(ec2, term))
        assert term_vols, "no volumes recorded at launch"
        seen_term = wait_state(ec2, term, "terminated", 150, srv)
        seen_stop = wait_state(ec2, stop, "stopped", 150, srv)
        assert "stopping" not in seen_term, seen_term
        # Checked last, so that the rest is checked too when this fails.
        reasons = {}
        for iid in (term, stop):
            inst = describe(ec2, iid)
            reasons[iid] = (inst["State"]["Name"], inst.get("StateReason"), inst.get("StateTransitionReason"))
        out = console(ec2, stop)
        assert ready_line(stop) in out, "the stop-behavior guest never came up"
        assert not any(p.exists() for _, p in term_vols), "volumes of the terminated guest remain"
        stop_vols = volume_files(srv, describe(ec2, stop))
        assert stop_vols and all(p.is_file() for _, p in stop_vols)
        assert qemu_of(srv.data_dir, stop) == (None, None)
        assert qemu_of(srv.data_dir, term) == (None, None)
        wrong = {
            iid: r for iid, r in reasons.items() if (r[1] or {}).get("Code") != "Client.InstanceInitiatedShutdown"
        }
        assert not wrong, f"StateReason is not Client.InstanceInitiatedShutdown: {wrong}"
    finally:
        terminate_and_wait(ec2, srv, [term, stop])


# --- 4. arm64 ---------------------------------------------------------------------------------


def test_arm64_instance_boots(srv, ec2, arm):
    t0 = time.monotonic()
    r = run(ec2, arm, InstanceType="a1.medium")
    iid = r["Instances"][0]["InstanceId"]
    try:
        assert r["Instances"][0]["Architecture"] == "arm64"
        waiter(ec2, "instance_running", [iid], 60, srv)
        pid, argv = qemu_of(srv.data_dir, iid)
        assert pid is not None and os.path.basename(argv[0]) == "qemu-system-aarch64", argv
        wait_console(ec2, iid, lambda t: ready_line(iid) in t, "the arm64 ready line", ARM_BOOT, srv)
        print(f"\n[instances] arm64 ready after {time.monotonic() - t0:.0f} s", flush=True)
        assert describe(ec2, iid)["InstanceType"] == "a1.medium"
    finally:
        terminate_and_wait(ec2, srv, [iid])
    assert qemu_of(srv.data_dir, iid) == (None, None)


# --- The AWS CLI ------------------------------------------------------------------------------


def test_cli_run_describe_terminate(srv, ec2, cli, x86):
    rc, out, err = cli("ec2", "run-instances", "--image-id", x86, "--count", "1", "--instance-type", "t3.micro")
    assert rc == 0, err
    [inst] = out["Instances"]
    iid = inst["InstanceId"]
    try:
        assert inst["State"]["Name"] == "pending" and inst["InstanceType"] == "t3.micro"
        assert out["ReservationId"].startswith("r-")
        rc, out, err = cli("ec2", "describe-instances", "--instance-ids", iid)
        assert rc == 0, err
        found = [i for r in out["Reservations"] for i in r["Instances"]]
        assert [i["InstanceId"] for i in found] == [iid]
        assert found[0]["ImageId"] == x86
        waiter(ec2, "instance_running", [iid], X86_BOOT, srv)
        rc, out, err = cli("ec2", "terminate-instances", "--instance-ids", iid)
        assert rc == 0, err
        [ch] = out["TerminatingInstances"]
        assert ch["InstanceId"] == iid
        assert ch["CurrentState"]["Name"] in ("shutting-down", "terminated"), ch
        assert ch["PreviousState"]["Name"] in ("pending", "running"), ch
        waiter(ec2, "instance_terminated", [iid], 60, srv)
        rc, out, err = cli("ec2", "describe-instances", "--instance-ids", "i-0123456789abcdef0")
        assert rc != 0 and "InvalidInstanceID.NotFound" in err, (rc, err)
    finally:
        if state_of(ec2, iid) != "terminated":
            terminate_and_wait(ec2, srv, [iid])


# --- 6. Crash recovery ---------------------------------------------------------------------------


def wait_images(ec2, srv, image_ids, timeout=180):
    """Waits until the images are available (fails at once on `failed`)."""

    def ready():
        images = ec2.describe_images(ImageIds=list(image_ids))["Images"]
        failed = [i for i in images if i["State"] == "failed"]
        assert not failed, failed
        return all(i["State"] == "available" for i in images)

    wait_for(f"images {image_ids} to be available", ready, timeout, 0.5, diag=srv.log_tail)


def test_create_image_carries_the_instance_disk(srv, ec2, x86):
    """CreateImage from a running instance (NoReboot, and the default reboot) and from a
    stopped one: each AMI carries what the instance wrote, without copying the disk."""
    marker = f"persisted-{uuid.uuid4().hex[:10]}"
    user_data = (
        "#!/bin/sh\n"
        f"echo {marker} > /var/lib/marker\n"
        "printf '#!/bin/sh\\necho \"marker: $(cat /var/lib/marker)\"> /dev/console\\n' > /etc/rc.local\n"
        "chmod +x /etc/rc.local\nsync\n"
    )
    src = run_one(ec2, x86, UserData=user_data)
    waiter(ec2, "instance_status_ok", [src], X86_BOOT, srv)
    wait_console(ec2, src, lambda t: f"marker: {marker}" in t, "the marker", X86_BOOT, srv)
    made = []
    try:
        live = ec2.create_image(InstanceId=src, Name=uid("live"), NoReboot=True,
                                TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": "kind", "Value": "live"}]}])["ImageId"]
        made.append(live)
        reboot = ec2.create_image(InstanceId=src, Name=uid("reboot"))["ImageId"]
        made.append(reboot)
        # CreateImage answers `pending` at once, as EC2 does; the second waits for the first.
        assert {i["State"] for i in ec2.describe_images(ImageIds=[live, reboot])["Images"]} <= {"pending", "available"}
        wait_images(ec2, srv, [live, reboot])
        assert state_of(ec2, src) == "running", "the default CreateImage restarts the instance"
        waiter(ec2, "instance_status_ok", [src], X86_BOOT, srv)
        ec2.stop_instances(InstanceIds=[src])
        waiter(ec2, "instance_stopped", [src], STOP_TIMEOUT, srv)
        # A mapping that would drop the root, or add a device of no size, changes nothing.
        bad_name = uid("bad")
        expect_error("InvalidBlockDeviceMapping", ec2.create_image, InstanceId=src, Name=bad_name,
                     BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "NoDevice": ""}])
        expect_error("InvalidBlockDeviceMapping", ec2.create_image, InstanceId=src, Name=bad_name,
                     BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeType": "gp3"}}])
        assert ec2.describe_images(Filters=[{"Name": "name", "Values": [bad_name]}])["Images"] == []
        # From the stopped instance: the root grown to 2 GiB and an empty 1 GiB disk added.
        stopped = ec2.create_image(
            InstanceId=src,
            Name=uid("stopped"),
            Description="from a stopped instance",
            BlockDeviceMappings=[
                {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 2}},
                {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "gp3"}},
            ],
        )["ImageId"]
        made.append(stopped)
        wait_images(ec2, srv, [stopped])
        images = {i["ImageId"]: i for i in ec2.describe_images(ImageIds=made)["Images"]}
        for image_id in made:
            img = images[image_id]
            assert img["State"] == "available"
            assert img["SourceInstanceId"] == src
            root = [m for m in img["BlockDeviceMappings"] if m["DeviceName"] == img["RootDeviceName"]]
            assert root[0]["Ebs"]["SnapshotId"].startswith("snap-")
        assert {"Key": "kind", "Value": "live"} in images[live].get("Tags", [])
        mapping = {m["DeviceName"]: m["Ebs"] for m in images[stopped]["BlockDeviceMappings"]}
        assert mapping["/dev/xvda"]["VolumeSize"] == 2 and mapping["/dev/xvda"]["SnapshotId"].startswith("snap-")
        assert mapping["/dev/sdf"]["VolumeSize"] == 1 and "SnapshotId" not in mapping["/dev/sdf"], mapping
        # The same name again, and a terminated instance, are refused.
        expect_error("InvalidAMIName.Duplicate", ec2.create_image, InstanceId=src, Name=images[live]["Name"])
        # A new instance of each image boots with the marker, never logged into.
        launched = [run_one(ec2, image_id) for image_id in (live, stopped)]
        for i in launched:
            wait_console(ec2, i, lambda t: f"marker: {marker}" in t, "the marker from the image", X86_BOOT, srv)
            # ... and runs as its source did: with kiln-tiny's own translation cache.
            argv = qemu_of(srv.data_dir, i)[1]
            assert argv and argv[argv.index("-accel") + 1] in tiny_accels(), argv
        devices = {m["DeviceName"] for m in describe(ec2, launched[1])["BlockDeviceMappings"]}
        assert devices == {"/dev/xvda", "/dev/sdf"}, devices
        # Deregistered while an instance still runs from it: asked for by id, EC2
        # answers no image rather than an error; once the instance is gone, NotFound.
        live_snaps = [m["Ebs"]["SnapshotId"] for m in images[live]["BlockDeviceMappings"] if "SnapshotId" in m.get("Ebs", {})]
        ec2.deregister_image(ImageId=live)
        made.remove(live)
        assert ec2.describe_images(ImageIds=[live])["Images"] == []
        terminate_and_wait(ec2, srv, launched + [src])
        expect_error("InvalidAMIID.NotFound", ec2.describe_images, ImageIds=[live])
        for s in live_snaps:
            ec2.delete_snapshot(SnapshotId=s)
        expect_error("IncorrectInstanceState", ec2.create_image, InstanceId=src, Name=uid("late"))
    finally:
        # With their snapshots, so that the frozen layers go too (newest first).
        for image_id in reversed(made):
            ec2.deregister_image(ImageId=image_id, DeleteAssociatedSnapshots=True)
    leftovers = [p.name for p in (srv.data_dir / "volumes").iterdir() if "-" in p.stem[4:]]
    assert leftovers == [], f"frozen layers outlived their snapshots: {leftovers}"


def leads_at_once(srv):
    """The restarted server took its dead predecessor's host-work lease without waiting
    the 10 s for it to lapse (on SQLite and on PostgreSQL alike): the process is gone
    from this machine."""
    wait_for("the restarted server to do the host's work at once",
             lambda: "this server does the host's work" in srv.log().rsplit("===== start", 1)[-1], 5, 0.2,
             diag=srv.log_tail)


def test_crash_recovery_adopts_vms(srv, ec2, x86):
    # A clean slate: nothing else runs, so the QEMU count below is exact.
    live = [i["InstanceId"] for i in all_instances(ec2) if i["State"]["Name"] != "terminated"]
    if live:
        terminate_and_wait(ec2, srv, live)
    wait_for("no QEMU of earlier tests", lambda: not qemu_processes(srv.data_dir), 30, 0.5)

    first = run_one(ec2, x86)
    ids = [first]
    try:
        waiter(ec2, "instance_running", [first], X86_BOOT, srv)
        # Its boot is over before any kill: a guest asking for its metadata while no
        # server answers goes on without it (its ready line then names no instance).
        booted = wait_console(ec2, first, lambda t: ready_line(first) in t, "the ready line", X86_BOOT, srv)
        r = run(ec2, x86, MaxCount=2)
        srv.kill9()  # right after the second launch was accepted
        ids += [i["InstanceId"] for i in r["Instances"]]
        assert len(ids) == 3
        srv.start()
        leads_at_once(srv)
        ec2 = srv.client("default")
        waiter(ec2, "instance_running", ids, X86_BOOT, srv)
        procs = wait_for(
            "three QEMU processes",
            lambda: (lambda p: p if len(p) == 3 else None)(qemu_processes(srv.data_dir)),
            30,
            0.5,
            diag=lambda: qemu_processes(srv.data_dir),
        )
        pids = {iid: qemu_pid_of(srv.data_dir, iid) for iid in ids}
        assert set(pids.values()) == set(procs), (pids, sorted(procs))
        for iid, pid in pids.items():
            assert f"kiln-{iid}" in procs[pid], (iid, pid, procs[pid][:3])

        # A crash while running: the VM is adopted, not restarted.
        waiter(ec2, "instance_status_ok", [first], X86_BOOT, srv)
        pid_first = pids[first]
        srv.kill9()
        assert os.path.exists(f"/proc/{pid_first}"), "the VM died with the server"
        srv.start()
        leads_at_once(srv)
        ec2 = srv.client("default")
        time.sleep(3)  # several reconciler passes
        inst = describe(ec2, first)
        assert inst["State"]["Name"] == "running", inst["State"]
        assert qemu_pid_of(srv.data_dir, first) == pid_first
        assert qemu_of(srv.data_dir, first)[0] == pid_first, "the VM was restarted, not adopted"
        assert len(qemu_processes(srv.data_dir)) == 3
        st = ec2.describe_instance_status(InstanceIds=[first])["InstanceStatuses"]
        assert st and st[0]["InstanceStatus"]["Status"] == "ok", st
        # The same boot, still there: its console reads as it did, ready line and all.
        after = wait_console(ec2, first, lambda t: ready_line(first) in t, "the ready line", 60, srv)
        assert after.count(ready_line(first)) == booted.count(ready_line(first)) == 1, after

        terminate_and_wait(ec2, srv, ids)
        wait_for("no QEMU after terminating all", lambda: not qemu_processes(srv.data_dir), 30, 0.5,
                 diag=lambda: qemu_processes(srv.data_dir))
        vols = srv.data_dir / "volumes"
        left = sorted(os.listdir(vols)) if vols.exists() else []
        assert left == [], f"volume files remain after terminating everything: {left}"
    finally:
        if srv.proc is None or srv.proc.poll() is not None:
            srv.start()
        c = srv.client("default")
        live = [i for i in ids if state_of(c, i) != "terminated"]
        if live:
            terminate_and_wait(c, srv, live)
