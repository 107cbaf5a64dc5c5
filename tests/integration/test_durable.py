"""The durable core, with real VMs: concurrent ClientToken retries launch once; crafted
disk images are refused before qemu-img follows them anywhere; CreateImage answers
`pending` at once; and `kill -9` of the daemon at random moments of every workflow
(launch, stop/start, reboot, terminate, CreateImage with and without reboot, import)
loses nothing.

This module runs its own `kiln serve`, because it kills and restarts it. The crash
test runs one cycle per workflow in CI; `KILN_CRASH_CYCLES=50` runs that many random
cycles (the long form, on demand). `KILN_CRASH_SEED` fixes the random draws.
"""

import os
import random
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from kiln_helpers import remove_host_state, store
from instances_helpers import (
    Server,
    all_instances,
    console,
    describe,
    kill_all_qemu,
    qemu_processes,
    ready_line,
    state_of,
    tiny_image,
    wait_for,
    waiter,
)

X86_BOOT = 120.0
IMAGES_TIMEOUT = 600.0
WORKFLOWS = ("launch", "stop_start", "reboot", "terminate", "image_no_reboot", "image_reboot", "import", "volume",
             "snapshots")
KINDS = tuple(k for k in (os.environ.get("KILN_CRASH_KINDS") or ",".join(WORKFLOWS)).split(",") if k)
CYCLES = int(os.environ.get("KILN_CRASH_CYCLES") or len(KINDS))
SEED = int(os.environ.get("KILN_CRASH_SEED") or time.time())

# The guest keeps a counter on its disk, synced every second and shown on the console;
# at each boot it prints the last value it finds there. Any write lost across
# CreateImage and daemon crashes shows as a smaller value after a restart.
TICKS = """#!/bin/sh
cat > /etc/rc.local <<'EOF2'
#!/bin/sh
last=$(tail -n1 /var/lib/ticks 2>/dev/null)
echo "boot last tick: ${last:-0}" > /dev/console
n=${last:-0}
while true; do n=$((n+1)); echo $n >> /var/lib/ticks; sync; echo "tick $n" > /dev/console; sleep 1; done
EOF2
chmod +x /etc/rc.local
"""


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def srv():
    server = Server(["--vcpu-quota", "32"], pool="100.64.5.0/24")
    server.start()
    try:
        yield server
    finally:
        if server.proc is None or server.proc.poll() is not None:
            server.start()
        ec2 = server.client("default")
        live = [i["InstanceId"] for i in all_instances(ec2) if i["State"]["Name"] != "terminated"]
        if live:
            ec2.terminate_instances(InstanceIds=live)
            wait_for("the module's instances to end", lambda: not qemu_processes(server.data_dir), 120, 1)
        kill_all_qemu(server.data_dir)
        server.stop()
        remove_host_state(server.data_dir)
        server.cleanup_dirs()


@pytest.fixture(scope="module")
def ec2(srv):
    return srv.client("default")


@pytest.fixture(scope="module")
def x86(srv, ec2):
    return tiny_image(ec2, srv, "x86_64", IMAGES_TIMEOUT)


def launch(ec2, image, **kwargs):
    args = {"ImageId": image, "InstanceType": "t3.micro", "MinCount": 1, "MaxCount": 1, **kwargs}
    return ec2.run_instances(**args)["Instances"][0]["InstanceId"]


def db(srv):
    """The server's database, read-only (for checking invariants the API cannot show)."""
    return store(srv.data_dir, readonly=True)


# --- idempotency --------------------------------------------------------------------------


def test_concurrent_retries_with_one_client_token_launch_once(srv, ec2, x86):
    token = uid("token")
    results, errors = [], []

    def call():
        try:
            c = srv.client("default")
            r = c.run_instances(ImageId=x86, InstanceType="t3.micro", MinCount=2, MaxCount=2, ClientToken=token)
            results.append((r["ReservationId"], sorted(i["InstanceId"] for i in r["Instances"])))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(map(str, results))) == 1, results
    reservation, ids = results[0]
    assert len(ids) == 2
    found = all_instances(ec2, Filters=[{"Name": "client-token", "Values": [token]}])
    assert sorted(i["InstanceId"] for i in found) == ids, "one launch of two instances, whatever the retries"
    ec2.terminate_instances(InstanceIds=ids)


# --- import safety ------------------------------------------------------------------------


def wait_import(ec2, task_id, timeout=120):
    def done():
        t = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"][0]
        return t if t["SnapshotTaskDetail"]["Status"] != "active" else None

    return wait_for(f"import {task_id}", done, timeout, 0.5)


def test_crafted_disk_images_are_refused_and_nothing_is_stored(srv, ec2):
    imports = srv.data_dir / "imports"
    imports.mkdir(exist_ok=True)
    made = {
        # OSSA-2024-001's class: qemu-img would read the backing file into the snapshot.
        "backing.qcow2": (["-f", "qcow2", "-b", "/etc/shadow", "-F", "raw"], "backing file"),
        "datafile.qcow2": (["-f", "qcow2", "-o", f"data_file={imports / 'datafile.raw'}"], "external data file"),
        "flat.vmdk": (["-f", "vmdk", "-o", "subformat=monolithicFlat"], "spans several files"),
    }
    for name, (args, _) in made.items():
        size = [] if "-b" in args else ["1M"]
        subprocess.run(["qemu-img", "create", "-q", *args, str(imports / name), *size], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(imports / "good.qcow2"), "16M"], check=True)
    snapshots_before = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    files_before = set(os.listdir(srv.data_dir / "snapshots"))

    for name, (_, why) in made.items():
        task = ec2.import_snapshot(DiskContainer={"Format": name.split(".")[1], "Url": f"file://{imports / name}"})
        t = wait_import(ec2, task["ImportTaskId"])
        detail = t["SnapshotTaskDetail"]
        assert detail["Status"] == "deleted", detail
        assert why in detail["StatusMessage"], detail
        assert "SnapshotId" not in detail, detail
    after = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert after == snapshots_before, "a refused image left a snapshot"
    assert set(os.listdir(srv.data_dir / "snapshots")) == files_before, "a refused image left a file"

    # A plain image still imports.
    task = ec2.import_snapshot(DiskContainer={"Format": "qcow2", "Url": f"file://{imports / 'good.qcow2'}"})
    detail = wait_import(ec2, task["ImportTaskId"])["SnapshotTaskDetail"]
    assert detail["Status"] == "completed", detail
    snap = ec2.describe_snapshots(SnapshotIds=[detail["SnapshotId"]])["Snapshots"][0]
    assert snap["State"] == "completed"


# --- CreateImage answers at once ----------------------------------------------------------


def test_create_image_answers_pending_at_once(srv, ec2, x86):
    iid = launch(ec2, x86)
    waiter(ec2, "instance_status_ok", [iid], X86_BOOT, srv)
    t0 = time.monotonic()
    image = ec2.create_image(InstanceId=iid, Name=uid("pending"))["ImageId"]
    took = time.monotonic() - t0
    assert took < 5, f"CreateImage with a reboot took {took:.1f} s to answer"
    assert ec2.describe_images(ImageIds=[image])["Images"][0]["State"] == "pending"
    ec2.get_waiter("image_available").wait(ImageIds=[image], WaiterConfig={"Delay": 1, "MaxAttempts": 180})
    waiter(ec2, "instance_status_ok", [iid], X86_BOOT, srv)
    ec2.deregister_image(ImageId=image, DeleteAssociatedSnapshots=True)
    ec2.terminate_instances(InstanceIds=[iid])


# --- crash injection ----------------------------------------------------------------------


def check_invariants(srv, ec2):
    """Nothing half-made, nothing orphaned, nothing doubled."""
    with db(srv) as c:
        running = c.execute("SELECT kind, step FROM workflows WHERE status IN ('running', 'queued')").fetchall()
        pending_images = c.execute("SELECT id FROM images WHERE state = 'pending' AND recipe_hash IS NULL").fetchall()
        vols = {r[0] for r in c.execute("SELECT file FROM volumes")}
        snaps = {r[0] for r in c.execute("SELECT file FROM snapshots")}
        dup_names = c.execute(
            "SELECT name, count(*) FROM images GROUP BY account_id, region, name HAVING count(*) > 1"
        ).fetchall()
        live = {r[0] for r in c.execute("SELECT id FROM instances WHERE state IN ('pending', 'running', 'stopping')")}
        tokens = c.execute(
            "SELECT client_token, count(DISTINCT reservation_id) FROM instances WHERE client_token IS NOT NULL "
            "GROUP BY client_token HAVING count(DISTINCT reservation_id) > 1"
        ).fetchall()
        active_imports = c.execute("SELECT id FROM import_tasks WHERE status = 'active'").fetchall()
        orphan_tags = c.execute(
            "SELECT resource_id FROM tags WHERE resource_id LIKE 'i-%' AND resource_id NOT IN (SELECT id FROM instances)"
        ).fetchall()
    assert not running, f"workflows left running: {running}"
    assert not pending_images, f"images left pending: {pending_images}"
    assert not active_imports, f"imports left active: {active_imports}"
    assert not dup_names, f"duplicate images: {dup_names}"
    assert not tokens, f"a ClientToken launched twice: {tokens}"
    assert not orphan_tags, f"tags of purged instances: {orphan_tags}"
    known = vols | snaps
    for f in known:
        assert (srv.data_dir / f).exists(), f"the store names {f}, which is missing"
    for sub in ("volumes", "snapshots"):
        d = srv.data_dir / sub
        for name in os.listdir(d) if d.exists() else []:
            assert f"{sub}/{name}" in known, f"orphan file {sub}/{name}"
    # (The KVM probe of a freshly started server runs under `timeout`: not an orphan.)
    procs = qemu_processes(srv.data_dir)
    owners = {(re.search(r"kiln-(i-[0-9a-f]+)", " ".join(argv)) or re.search("(.*)", " ".join(argv))).group(1)
              for argv in procs.values()}
    assert owners <= live, f"QEMU without a live instance: {owners - live}"


def settle(srv, ec2, what, fn, timeout=X86_BOOT):
    return wait_for(what, fn, timeout, 0.5, diag=lambda: srv.log_tail(40))


def last_tick(text):
    ticks = re.findall(r"tick (\d+)", text)
    return int(ticks[-1]) if ticks else 0


def test_kill_9_during_every_workflow_loses_nothing(srv, x86):
    rng = random.Random(SEED)
    ec2 = srv.client("default")
    imports = srv.data_dir / "imports"
    imports.mkdir(exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(imports / "crash.qcow2"), "8M"], check=True)
    subject = launch(ec2, x86, UserData=TICKS)
    waiter(ec2, "instance_status_ok", [subject], X86_BOOT, srv)
    settle(srv, ec2, "the guest's ticks", lambda: last_tick(console(ec2, subject)) > 0)
    counts = {w: 0 for w in WORKFLOWS}
    kinds = list(KINDS) if CYCLES == len(KINDS) else [rng.choice(KINDS) for _ in range(CYCLES)]
    print(f"\n[crash] seed {SEED}, {len(kinds)} cycles", flush=True)
    for n, kind in enumerate(kinds):
        delay = rng.uniform(0, 2.5)

        def crash():
            time.sleep(delay)
            srv.kill9()
            srv.start()
            return srv.client("default")

        if kind == "launch":
            token = uid("crash")
            first = ec2.run_instances(ImageId=x86, InstanceType="t3.micro", MinCount=1, MaxCount=1, ClientToken=token)
            ec2 = crash()
            again = ec2.run_instances(ImageId=x86, InstanceType="t3.micro", MinCount=1, MaxCount=1, ClientToken=token)
            iid = first["Instances"][0]["InstanceId"]
            assert again["Instances"][0]["InstanceId"] == iid, "the retry after the crash launched again"
            settle(srv, ec2, f"{iid} running", lambda: state_of(ec2, iid) == "running")
            ec2.terminate_instances(InstanceIds=[iid])
        elif kind == "stop_start":
            ec2.stop_instances(InstanceIds=[subject])
            ec2 = crash()
            settle(srv, ec2, "the subject stopped", lambda: state_of(ec2, subject) == "stopped")
            ec2.start_instances(InstanceIds=[subject])
            ec2 = crash()
            settle(srv, ec2, "the subject running", lambda: state_of(ec2, subject) == "running")
            waiter(ec2, "instance_status_ok", [subject], X86_BOOT, srv)
        elif kind == "reboot":
            boots = console(ec2, subject).count("boot last tick:")
            ec2.reboot_instances(InstanceIds=[subject])
            ec2 = crash()
            settle(srv, ec2, "the reboot", lambda: console(ec2, subject).count("boot last tick:") > boots)
        elif kind == "terminate":
            iid = launch(ec2, x86)
            ec2.terminate_instances(InstanceIds=[iid])
            ec2 = crash()
            settle(srv, ec2, f"{iid} terminated", lambda: state_of(ec2, iid) == "terminated")
        elif kind in ("image_no_reboot", "image_reboot"):
            name = uid(kind)
            image = ec2.create_image(InstanceId=subject, Name=name, NoReboot=kind == "image_no_reboot")["ImageId"]
            ec2 = crash()

            def made():
                imgs = ec2.describe_images(Filters=[{"Name": "name", "Values": [name]}])["Images"]
                assert len(imgs) == 1, imgs
                return imgs[0]["State"] if imgs[0]["State"] != "pending" else None

            assert settle(srv, ec2, f"image {image}", made, 180) == "available"
            settle(srv, ec2, "the subject running", lambda: state_of(ec2, subject) == "running")
        elif kind == "import":
            description = uid("crash-import")
            task = ec2.import_snapshot(
                Description=description,
                DiskContainer={"Format": "qcow2", "Url": f"file://{imports / 'crash.qcow2'}"},
            )["ImportTaskId"]
            ec2 = crash()
            detail = wait_import(ec2, task)["SnapshotTaskDetail"]
            assert detail["Status"] == "completed", detail
            with db(srv) as c:
                n_snaps = c.execute(
                    "SELECT count(*) FROM snapshots WHERE description = ?", (description,)
                ).fetchone()[0]
            assert n_snaps == 1, f"import made {n_snaps} snapshots"
        elif kind == "volume":
            zone = ec2.describe_instances(InstanceIds=[subject])["Reservations"][0]["Instances"][0]["Placement"][
                "AvailabilityZone"]
            vid = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
            ec2 = crash()
            vol = lambda: ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]  # noqa: E731
            settle(srv, ec2, f"{vid} available", lambda: vol()["State"] == "available")
            ec2.attach_volume(VolumeId=vid, InstanceId=subject, Device="/dev/sdf")
            ec2 = crash()
            settle(srv, ec2, f"{vid} attached", lambda: vol()["Attachments"][0]["State"] == "attached")
            ec2.detach_volume(VolumeId=vid)
            ec2 = crash()
            settle(srv, ec2, f"{vid} detached", lambda: vol()["State"] == "available", 120)
            ec2.delete_volume(VolumeId=vid)
        elif kind == "snapshots":
            made = ec2.create_snapshots(InstanceSpecification={"InstanceId": subject})["Snapshots"]
            ids = [m["SnapshotId"] for m in made]
            ec2 = crash()
            settle(srv, ec2, "the instance's snapshots", lambda: all(
                x["State"] == "completed" for x in ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]), 120)
            settle(srv, ec2, "the subject running", lambda: state_of(ec2, subject) == "running")
        # Quiet for a moment (terminations finish), then the invariants.
        settle(srv, ec2, "the workflows to finish", lambda: not db(srv).execute(
            "SELECT 1 FROM workflows WHERE status IN ('running', 'queued') UNION ALL "
            "SELECT 1 FROM instances WHERE state IN ('shutting-down', 'stopping', 'pending')").fetchall())
        check_invariants(srv, ec2)
        counts[kind] += 1
        print(f"[crash] cycle {n + 1}: {kind}, killed {delay:.2f} s after the request: invariants hold", flush=True)

    # No guest write was lost: the last tick the guest showed before a clean stop is on
    # its disk at the next boot.
    waiter(ec2, "instance_status_ok", [subject], X86_BOOT, srv)
    time.sleep(2)
    before_stop = console(ec2, subject)
    shown = last_tick(before_stop)
    print("[crash] before the stop:", [l for l in before_stop.splitlines() if "boot last tick" in l], flush=True)
    ec2.stop_instances(InstanceIds=[subject])
    settle(srv, ec2, "the subject stopped", lambda: state_of(ec2, subject) == "stopped")
    ec2.start_instances(InstanceIds=[subject])
    # Status ok again means the new QEMU runs (its console starts empty) and is up.
    waiter(ec2, "instance_status_ok", [subject], X86_BOOT, srv)
    text = settle(srv, ec2, "the boot line", lambda: (lambda t: t if "boot last tick:" in t else None)(console(ec2, subject)))
    found = int(re.findall(r"boot last tick: (\d+)", text)[-1])
    assert found >= shown, (
        f"guest writes were lost: the guest showed tick {shown}, its disk holds {found}\n"
        + "\n".join(l for l in text.splitlines() if "tick" in l or "Linux version" in l)[-3000:]
        + "\n" + srv.log_tail(120)
    )
    print(f"[crash] counts: {counts}; last tick shown {shown}, on disk after restart {found}", flush=True)
