"""Kiln on PostgreSQL with more than one API server: two `kiln serve` processes share one
database (and, on this one host, one data directory), a client alternates between them,
and one is SIGKILLed in the middle of a CreateImage, which the other finishes once the
dead server's lease lapses. And a cloud moved from SQLite to PostgreSQL with `kiln db
migrate`, its running VM adopted afterwards.

The PostgreSQL cluster is scripts/test.sh's (KILN_TEST_POSTGRES) or one these tests start
(kiln_helpers.postgres_admin_url)."""

import re
import subprocess
import time
import urllib.request
import uuid

import pytest

from instances_helpers import (
    KILN_BIN,
    Server,
    all_instances,
    kill_all_qemu,
    qemu_pid_of,
    qemu_processes,
    ready_line,
    tiny_image,
    wait_console,
    wait_for,
    waiter,
)
from kiln_helpers import expect_error, new_database, remove_host_state

BOOT = 150.0
IMAGES_TIMEOUT = 600.0
# The lease lasts 10 s without renewal (kiln/src/lead.rs); the takeover must follow it.
LEASE_TTL = 10.0


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tiny_x86(ec2, server):
    return tiny_image(ec2, server, "x86_64", IMAGES_TIMEOUT)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def holder(data_dir):
    out = subprocess.run([KILN_BIN, "db", "status", "--data-dir", str(data_dir)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    m = re.search(r"lease\s+host: held by (\S+) .*, (lapses in|lapsed)", out.stdout)
    return (m.group(1) if m else None), out.stdout


def finish(*servers):
    """Ends what the servers left: instances, VMs, namespaces, directories."""
    alive = [s for s in servers if s.proc is not None and s.proc.poll() is None]
    if alive:
        ec2 = alive[0].client("default")
        live = [i["InstanceId"] for i in all_instances(ec2) if i["State"]["Name"] != "terminated"]
        if live:
            ec2.terminate_instances(InstanceIds=live)
            wait_for("the instances to end", lambda: not qemu_processes(servers[0].data_dir), 120, 1)
    kill_all_qemu(servers[0].data_dir)
    for s in servers:
        s.stop()
    remove_host_state(servers[0].data_dir)
    servers[0].cleanup_dirs()


def test_two_servers_share_one_database_and_take_over_each_others_work():
    a = Server(pool="100.64.4.0/24")
    a.database_args = ["--database", new_database()]
    a.start()
    b = Server(pool="100.64.4.0/24")
    b.data_dir, b.database_args = a.data_dir, []  # the database is recorded in the data directory
    # B names another machine, as a server elsewhere would: A's process being gone from
    # this machine's /proc then says nothing to B, which must wait for the lapse.
    b.env = {"KILN_MACHINE_ID": "another-machine"}
    try:
        b.start()
        ea, eb = a.client("default"), b.client("default")
        image = tiny_x86(ea, a)
        # Health and readiness on both; metrics name what each has done.
        for s in (a, b):
            assert get(s.endpoint + "/healthz") == (200, "ok\n")
            assert get(s.endpoint + "/readyz")[0] == 200

        # One request on each server in turn: what one makes, the other sees at once.
        key = uid("key")
        ea.create_key_pair(KeyName=key)
        assert [k["KeyName"] for k in eb.describe_key_pairs(KeyNames=[key])["KeyPairs"]] == [key]
        group = eb.create_security_group(GroupName=uid("grp"), Description="two servers")["GroupId"]
        ea.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        rules = eb.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])
        assert any(r.get("FromPort") == 22 and not r["IsEgress"] for r in rules["SecurityGroupRules"])
        expect_error("InvalidGroup.Duplicate", eb.create_security_group,
                     GroupName=eb.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["GroupName"],
                     Description="again")

        # A ClientToken made on one server is the same launch on the other.
        token = uid("token")
        run = dict(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=key,
                   SecurityGroupIds=[group], ClientToken=token)
        first = eb.run_instances(**run)
        again = ea.run_instances(**run)
        assert again["ReservationId"] == first["ReservationId"]
        iid = first["Instances"][0]["InstanceId"]
        assert [i["InstanceId"] for i in all_instances(ea) if i["State"]["Name"] != "terminated"] == [iid]
        waiter(ea, "instance_running", [iid], BOOT, a)
        waiter(eb, "instance_status_ok", [iid], BOOT, b)

        # Pages: a token from one server is good on the other.
        names = sorted(uid("page") for _ in range(7))
        for n in names:
            (ea if len(n) % 2 else eb).create_security_group(GroupName=n, Description="paging")
        seen, token, turn = [], None, 0
        while True:
            c = (ea, eb)[turn % 2]
            page = c.describe_security_groups(MaxResults=5, **({"NextToken": token} if token else {}))
            seen += [g["GroupName"] for g in page["SecurityGroups"]]
            token, turn = page.get("NextToken"), turn + 1
            if not token:
                break
        assert turn >= 2 and set(names) <= set(seen) and len(seen) == len(set(seen)), seen

        # The first server does the host's work (it started first); kill it in the
        # middle of a CreateImage of the running instance.
        leader, status = holder(a.data_dir)
        assert leader and leader.endswith(f":127.0.0.1:{a.port}"), status
        vm = qemu_pid_of(a.data_dir, iid)
        assert vm, "the instance's QEMU"
        # And a guest that asks for DHCP while no server answers: its VM started by the
        # first server, which dies as the guest boots.
        booting = eb.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=key,
                                   SecurityGroupIds=[group])["Instances"][0]["InstanceId"]
        waiter(eb, "instance_running", [booting], BOOT, a, delay=0.2)
        made = eb.create_image(InstanceId=iid, Name=uid("taken-over"), NoReboot=True)["ImageId"]
        assert eb.describe_images(ImageIds=[made])["Images"][0]["State"] == "pending"
        killed = time.monotonic()
        a.kill9()

        # The other takes the lease once it lapses, and finishes the image.
        def b_leads():
            who, _ = holder(b.data_dir)
            return who if who and who.endswith(f":127.0.0.1:{b.port}") else None

        wait_for("the second server to take the host's work", b_leads, LEASE_TTL + 20, 0.5, diag=b.log_tail)
        took = time.monotonic() - killed
        assert took >= LEASE_TTL - 3, f"took over after {took:.1f} s, before the lease could lapse"
        eb.get_waiter("image_available").wait(ImageIds=[made], WaiterConfig={"Delay": 2, "MaxAttempts": 120})
        # The VM kept running all along: the same QEMU, and the instance is still ok.
        assert qemu_pid_of(a.data_dir, iid) == vm and vm in qemu_processes(a.data_dir)
        waiter(eb, "instance_status_ok", [iid], BOOT, b)
        assert "this server does the host's work" in b.log()
        # The guest kept asking through the failover and came up with its network (its
        # ready line follows the metadata's SSH key and user data).
        text = wait_console(eb, booting, lambda t: ready_line(booting) in t, "the ready line", BOOT, b)
        assert "no DHCP answer" not in text, text[-2000:]
        assert "the metadata service did not answer" not in text, text[-2000:]
        # The image launches, driven by the server that took over.
        second = eb.run_instances(ImageId=made, InstanceType="t3.micro", MinCount=1, MaxCount=1)
        waiter(eb, "instance_running", [second["Instances"][0]["InstanceId"]], BOOT, b)

        # Requests, workflow steps and passes are counted in Prometheus's format.
        status, metrics = get(b.endpoint + "/metrics")
        assert status == 200
        assert re.search(r'^kiln_requests_total\{action="CreateImage",outcome="ok"\} 1$', metrics, re.M), metrics
        assert re.search(r'^kiln_workflow_steps_total\{kind="create-image",outcome="ok"\} [1-9]', metrics, re.M), \
            metrics
        assert re.search(r"^kiln_reconcile_pass_duration_seconds_count [1-9]", metrics, re.M)
        assert re.search(r'^kiln_db_connections\{state="open"\} [1-9]', metrics, re.M)
        assert re.search(r"^kiln_host_work_leader 1$", metrics, re.M)
    finally:
        finish(b, a) if b.proc is not None else finish(a)


def test_a_sqlite_cloud_moves_to_postgres_and_keeps_its_running_instances():
    s = Server(pool="100.64.10.0/24")
    s.database_args = []  # starts on SQLite, whatever the suite runs on
    s.start()
    try:
        ec2 = s.client("default")
        image = tiny_x86(ec2, s)
        key = uid("key")
        ec2.create_key_pair(KeyName=key)
        group = ec2.create_security_group(GroupName=uid("grp"), Description="moved")["GroupId"]
        ec2.create_tags(Resources=[group], Tags=[{"Key": "moved", "Value": "yes"}])
        iid = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, KeyName=key,
                                SecurityGroupIds=[group])["Instances"][0]["InstanceId"]
        waiter(ec2, "instance_status_ok", [iid], BOOT, s)
        vm = qemu_pid_of(s.data_dir, iid)
        before = {
            "images": sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]),
            "groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
            "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
        }
        target = new_database()
        # Refused while the server runs.
        busy = subprocess.run([KILN_BIN, "db", "migrate", "--from", f"sqlite:{s.data_dir}", "--to", target],
                              capture_output=True, text=True, timeout=120)
        assert busy.returncode != 0 and "stop it first" in busy.stderr, busy.stderr
        assert s.stop() == 0
        moved = subprocess.run([KILN_BIN, "db", "migrate", "--from", f"sqlite:{s.data_dir}", "--to", target],
                               capture_output=True, text=True, timeout=300)
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "every count matches" in moved.stdout, moved.stdout
        assert re.search(r"^\s+instances\s+1 rows$", moved.stdout, re.M), moved.stdout
        # Into a database that already holds a cloud: refused, nothing changed.
        again = subprocess.run([KILN_BIN, "db", "migrate", "--from", f"sqlite:{s.data_dir}", "--to", target],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode != 0 and "already holds a cloud" in again.stderr, again.stderr

        # The next start uses PostgreSQL (recorded in the data directory) and adopts the VM.
        s.start()
        _, status = holder(s.data_dir)
        assert "postgres://" in status and "version" in status, status
        assert qemu_pid_of(s.data_dir, iid) == vm
        waiter(ec2, "instance_status_ok", [iid], BOOT, s)
        after = {
            "images": sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]),
            "groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
            "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
        }
        assert after == before
        tags = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [group]}])["Tags"]
        assert [(t["Key"], t["Value"]) for t in tags] == [("moved", "yes")]
        assert [k["KeyName"] for k in ec2.describe_key_pairs(KeyNames=[key])["KeyPairs"]] == [key]
        # Still a working cloud: stop and start the adopted instance.
        ec2.stop_instances(InstanceIds=[iid])
        waiter(ec2, "instance_stopped", [iid], BOOT, s)
        ec2.start_instances(InstanceIds=[iid])
        waiter(ec2, "instance_running", [iid], BOOT, s)
    finally:
        if s.proc is None or s.proc.poll() is not None:
            try:
                s.start()
            except AssertionError:
                pass
        finish(s)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_need_no_signature_and_show_no_account(kiln, path):
    accounts = {v["OwnerId"] for v in kiln.client("default").describe_vpcs()["Vpcs"]}
    accounts |= {v["OwnerId"] for v in kiln.client("other").describe_vpcs()["Vpcs"]}
    status, body = get(kiln.endpoint + path)
    assert status == 200
    assert accounts and not any(a in body for a in accounts), "no account id in a probe"


def test_readiness_follows_the_database():
    import psycopg

    from kiln_helpers import postgres_admin_url

    url = new_database()
    name = url.rsplit("/", 1)[1]
    s = Server(pool="100.64.10.0/24")
    s.database_args = ["--database", url]
    s.start()
    admin = psycopg.connect(postgres_admin_url(), autocommit=True)
    try:
        assert get(s.endpoint + "/readyz")[0] == 200
        # The database stops taking connections and drops the server's.
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        status, body = wait_for("readiness to fail", lambda: (r := get(s.endpoint + "/readyz"))[0] == 503 and r,
                                30, 0.5)
        assert "database" in body and "postgres://" not in body, body
        assert get(s.endpoint + "/healthz") == (200, "ok\n"), "the process itself is alive"
        # A request that needs the database fails as EC2's InternalError (500), not a hang.
        expect_error("InternalError", s.client("default").describe_vpcs, status=500)
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        wait_for("readiness to come back", lambda: get(s.endpoint + "/readyz")[0] == 200, 30, 0.5)
        assert s.client("default").describe_vpcs()["Vpcs"]
    finally:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        admin.close()
        s.stop()
        remove_host_state(s.data_dir)
        s.cleanup_dirs()
