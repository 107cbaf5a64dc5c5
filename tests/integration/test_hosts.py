"""Hosts joining a control plane with `kiln agent`: a one-time token, mutual TLS with
certificates the cloud's CA issues at join, heartbeats, `kiln host list`, drain, cordon,
activate and retire, certificate renewal, and DescribeAvailabilityZones showing a zone
`impaired` while none of its joined hosts is live.

The agents run on this machine with data directories of their own (the three-host test
puts each in a network namespace of its own). Instances placed on a joined host run
there: the host fetches the image's layers and kernel from the control plane's store
and boots from its own copies, the store serves the instance's volumes (their own
files, over those layers) to it over NBD, and the control plane drives the VM through
the host's agent."""

import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import statistics
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from instances_helpers import (KILN_BIN, READY, Server, console, describe, free_port, state_of, tiny_image, wait_for,
                               wait_state)
from kiln_helpers import net_tag, remove_host_state
from story_helpers import fetch, ssh, tcp_open, wait_ssh

ZONE = "us-east-1b"
# kiln_control::hosts: a host is live while its last heartbeat is younger than 15 s.
LIVE_FOR = 15.0
REPORT = {"hostname": "test", "architectures": ["x86_64"], "accel": "Tcg", "cpus": 1, "memory_mib": 512,
          "qemu_version": "test"}


def kiln(*args, timeout=60):
    return subprocess.run([KILN_BIN, *args], capture_output=True, text=True, timeout=timeout)


class Agent:
    def __init__(self, control, data_dir):
        self.control, self.data_dir, self.proc = control, data_dir, None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self, *extra):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [KILN_BIN, "agent", "--control", self.control, "--data-dir", str(self.data_dir), "--accel", "tcg", *extra],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    def output(self):
        return self.log.read_text() if self.log.exists() else ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def file(self, name):
        return self.data_dir / "agent" / name


def hosts(server):
    out = kiln("host", "list", "--data-dir", str(server.data_dir))
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0].startswith("h-"):
            rows[cols[0]] = {"zone": cols[1], "state": cols[2], "health": cols[3], "line": line}
    return rows, out.stdout


def zone_state(ec2, zone=ZONE):
    [z] = ec2.describe_availability_zones(ZoneNames=[zone])["AvailabilityZones"]
    return z["State"]


def call(endpoint, path, agent=None, body=None, cert=None):
    """POSTs JSON to the agents' endpoint, trusting only the cloud's CA; `cert` is a
    (cert, key) pair to present. Returns (status, text)."""
    ctx = ssl.create_default_context(cafile=str(agent.file("ca.pem")))
    if cert:
        ctx.load_cert_chain(*map(str, cert))
    req = urllib.request.Request(endpoint + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def control():
    port = free_port()
    s = Server(extra_args=["--no-quickstart", "--agent-listen", f"127.0.0.1:{port}"])
    s.agents = f"https://127.0.0.1:{port}"
    s.start()
    yield s
    s.stop()
    shutil.rmtree(s.data_dir, ignore_errors=True)


def test_hosts_join_report_and_go_impaired_when_they_stop(control, tmp_path):
    ec2 = control.client("default")
    assert zone_state(ec2) == "available"  # no joined host: this server's own host serves it
    out = kiln("host", "join-token", "--zone", "us-east-1z", "--data-dir", str(control.data_dir))
    assert out.returncode != 0 and "us-east-1z" in out.stderr, out.stderr
    assert hosts(control)[0] == {}

    token = kiln("host", "join-token", "--zone", ZONE, "--data-dir", str(control.data_dir)).stdout.strip()
    assert re.fullmatch(r"K1\.[0-9a-f]{64}\.[0-9a-f]{64}", token), token

    # A token whose CA hash is not the control plane's: the agent refuses to join.
    forged = "K1." + "0" * 64 + "." + token.split(".")[2]
    out = kiln("agent", "--control", control.agents, "--token", forged, "--data-dir", str(tmp_path / "forged"))
    assert out.returncode != 0 and "CA whose hash is not the token's" in out.stderr, out.stderr
    assert not (tmp_path / "forged" / "agent").exists()

    a = Agent(control.agents, tmp_path / "a").start("--token", token)
    try:
        wait_for("the host to join", lambda: hosts(control)[0], 30, 0.5)
        [(host_id, row)] = hosts(control)[0].items()
        assert row["zone"] == ZONE and row["state"] == "active" and row["health"] == "live", row
        assert "tcg" in row["line"] and "x86_64" in row["line"] and "QEMU" in row["line"], row
        # Its use, as the agent measured it: no VMs of its own, and this machine's MemAvailable.
        use = re.search(r"(\d+) VMs, (\d+) MiB; (\d+) MiB available", row["line"])
        assert use and use.group(1) == "0" and use.group(2) == "0", row
        available = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
        assert available / 2 < int(use.group(3)) < available * 2, (row, available)
        assert f"as host {host_id} in zone {ZONE}" in a.output()
        for name in ("key.pem", "cert.pem", "ca.pem", "host.json"):
            assert stat.S_IMODE(a.file(name).stat().st_mode) == 0o600, name
        assert zone_state(ec2) == "available"

        # The token is spent: a second host cannot join with it, and keeps nothing.
        out = kiln("agent", "--control", control.agents, "--token", token, "--data-dir", str(tmp_path / "b"))
        assert out.returncode != 0 and "unknown, used or expired" in out.stderr, out.stderr
        assert not (tmp_path / "b" / "agent").exists()
        assert len(hosts(control)[0]) == 1

        # Paths past joining need the host's certificate; one the cloud's CA did not
        # issue does not get through the handshake.
        assert call(control.agents, "/v1/heartbeat", a, REPORT)[0] == 401
        assert call(control.agents, "/v1/heartbeat", a, REPORT, (a.file("cert.pem"), a.file("key.pem")))[0] == 200
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=" + host_id, "-days", "1", "-keyout", str(tmp_path / "k.pem"),
                        "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            call(control.agents, "/v1/heartbeat", a, REPORT, (tmp_path / "c.pem", tmp_path / "k.pem"))
        if shutil.which("curl"):
            v = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version}", "--http2", "--cacert",
                                str(a.file("ca.pem")), control.agents + "/v1/ca"], capture_output=True, text=True)
            assert v.stdout == "2", v  # HTTP/2 over TLS

        # Drain, cordon, activate: the host hears its state at the next heartbeat.
        for verb, state in (("drain", "draining"), ("cordon", "cordoned"), ("activate", "active")):
            out = kiln("host", verb, host_id, "--data-dir", str(control.data_dir))
            assert out.returncode == 0 and f"is {state}" in out.stdout, out.stderr
            assert hosts(control)[0][host_id]["state"] == state
            wait_for(f"the agent to hear {state}", lambda: f"is {state}." in a.output(), 15, 0.5)
        out = kiln("host", "drain", "h-00000000000000000", "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and "no host h-00000000000000000" in out.stderr, out.stderr
        out = kiln("host", "drain", "i-0123", "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and "not a host ID" in out.stderr, out.stderr

        # The agent dies: once its heartbeats are overdue the zone is impaired, the
        # other zones are not, and the list says the host is lost.
        a.kill()
        started = time.monotonic()
        wait_for("the zone to be impaired", lambda: zone_state(ec2) == "impaired", LIVE_FOR + 15, 0.5)
        assert time.monotonic() - started > LIVE_FOR - 5
        assert zone_state(ec2, "us-east-1a") == "available"
        filtered = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["impaired"]}])
        assert [z["ZoneName"] for z in filtered["AvailabilityZones"]] == [ZONE]
        assert hosts(control)[0][host_id]["health"] == "lost"

        # It comes back without a token (its certificate is its identity) and the zone
        # with it, also across a restart of the control plane (the CA is in the store).
        control.kill9()
        control.start()
        old_cert = a.file("cert.pem").read_text()
        shutil.copy(a.file("cert.pem"), tmp_path / "old-cert.pem")
        shutil.copy(a.file("key.pem"), tmp_path / "old-key.pem")
        a.start("--renew")
        wait_for("the zone to be available", lambda: zone_state(ec2) == "available", 30, 0.5)
        assert hosts(control)[0][host_id]["health"] == "live"
        assert "Renewed host" in a.output() and a.file("cert.pem").read_text() != old_cert
        # Once the host has used its new certificate, the old one is refused.
        time.sleep(4)
        old = (tmp_path / "old-cert.pem", tmp_path / "old-key.pem")
        assert call(control.agents, "/v1/heartbeat", a, REPORT, old)[0] == 403

        # Retired: the host's certificate is refused, the agent stops, and the zone is
        # served by this server's own host again.
        out = kiln("host", "retire", host_id, "--data-dir", str(control.data_dir))
        assert out.returncode == 0, out.stderr
        wait_for("the agent to stop", lambda: a.proc.poll() is not None, 15, 0.5)
        assert "retired" in a.output(), a.output()
        assert zone_state(ec2) == "available"
    finally:
        a.kill()


def test_the_control_plane_calls_a_hosts_agent_and_only_it(control, tmp_path):
    """`kiln agent --listen` serves the host interface to the control plane over mutual
    TLS: `kiln host status` asks the agent itself. Only the control plane's certificate
    may call; a host's own certificate may not, and an endpoint a host reports falsely
    reaches no other host (the control plane checks the certificate names the host)."""
    def token():
        out = kiln("host", "join-token", "--zone", ZONE, "--data-dir", str(control.data_dir))
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    out = kiln("agent", "--control", control.agents, "--token", token(), "--listen", "0.0.0.0:7000",
               "--data-dir", str(tmp_path / "wild"))
    assert out.returncode != 0 and "not 0.0.0.0" in out.stderr, out.stderr

    port_a, port_b = free_port(), free_port()
    a = Agent(control.agents, tmp_path / "a").start("--token", token(), "--listen", f"127.0.0.1:{port_a}")
    b = Agent(control.agents, tmp_path / "b").start("--token", token(), "--listen", f"127.0.0.1:{port_b}")
    quiet = Agent(control.agents, tmp_path / "quiet").start("--token", token())
    try:
        wait_for("three hosts to join", lambda: len(hosts(control)[0]) == 3, 30, 0.5)
        wait_for("the agents to listen", lambda: all("calls on" in x.output() for x in (a, b)), 15, 0.2)
        ids = {x: json.loads(x.file("host.json").read_text())["host_id"] for x in (a, b, quiet)}

        out = kiln("host", "status", ids[a], "--data-dir", str(control.data_dir))
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^endpoint\s+127\.0\.0\.1:{port_a} \(answered in \d+ ms\)$", out.stdout, re.M), out.stdout
        assert re.search(r"^accel\s+tcg$", out.stdout, re.M) and re.search(r"^vms\s+none$", out.stdout, re.M), out.stdout
        memory = int(re.search(r"^memory\s+(\d+) MiB$", out.stdout, re.M).group(1))
        total = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024
        assert abs(memory - total) < 64, (memory, total)
        out = kiln("host", "status", ids[quiet], "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and "without --listen" in out.stderr, out.stderr
        out = kiln("host", "status", "h-00000000000000000", "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and "No host h-00000000000000000" in out.stderr, out.stderr

        # Calling the agent directly: its certificate chains to the cloud's CA (the
        # name is the host's, not the address, hence no hostname check here).
        def direct(port, cert=None):
            ctx = ssl.create_default_context(cafile=str(a.file("ca.pem")))
            ctx.check_hostname = False
            if cert:
                ctx.load_cert_chain(*map(str, cert))
            req = urllib.request.Request(f"https://127.0.0.1:{port}/v1/call", data=b'{"call":"running"}',
                                         method="POST", headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        # A host's own certificate (the CA signed it) is not the control plane's.
        status, text = direct(port_b, (a.file("cert.pem"), a.file("key.pem")))
        assert status == 403 and "Only the control plane" in text, (status, text)
        # No certificate, or one the CA did not sign even with the control plane's
        # subject: the handshake itself fails.
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            direct(port_b)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=Kiln control plane", "-days", "1", "-keyout", str(tmp_path / "k.pem"),
                        "-out", str(tmp_path / "c.pem")], check=True, capture_output=True)
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            direct(port_b, (tmp_path / "c.pem", tmp_path / "k.pem"))

        # Host a, taken over, reports b's address as its own: the control plane reaches
        # b there, whose certificate does not name a, and stops.
        a.kill()
        lie = dict(REPORT, endpoint=f"127.0.0.1:{port_b}")
        assert call(control.agents, "/v1/heartbeat", a, lie, (a.file("cert.pem"), a.file("key.pem")))[0] == 200
        out = kiln("host", "status", ids[a], "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and f"did not answer at 127.0.0.1:{port_b}" in out.stderr, out.stderr
        assert "certificate" in out.stderr.lower() and "vms" not in out.stdout, (out.stdout, out.stderr)
        # b itself still answers; a, gone, does not.
        assert kiln("host", "status", ids[b], "--data-dir", str(control.data_dir)).returncode == 0
        honest = dict(REPORT, endpoint=f"127.0.0.1:{port_a}")
        assert call(control.agents, "/v1/heartbeat", a, honest, (a.file("cert.pem"), a.file("key.pem")))[0] == 200
        out = kiln("host", "status", ids[a], "--data-dir", str(control.data_dir))
        assert out.returncode != 0 and "is `kiln agent --listen" in out.stderr, out.stderr
    finally:
        for x in (a, b, quiet):
            x.kill()


@pytest.mark.skipif(os.environ.get("KILN_TEST_STORE", "sqlite") == "postgres",
                    reason="the PostgreSQL pass runs the three-host test instead")
def test_instances_run_on_their_zones_joined_host_from_layers_it_fetched(tmp_path):
    """RunInstances in a zone with a joined host places the instance there: the host
    fetches the image's layers and kernel from the store (checked against their
    hashes, made read-only) and boots from its copies, its volume stays in the store, the VM runs under the host's agent and
    not the server's, on the VPC network the host makes (its DHCP and relayed metadata,
    its security groups, its public address, reached by SSH), and a second launch from
    the same image fetches nothing. Stop, start and terminate act on that host; a zone
    no host joined still runs on the server's own host; a host that dies has its
    instances impaired, a forced stop releases them, and its stale VM is ended when it
    returns."""
    port = free_port()
    control = Server(extra_args=["--agent-listen", f"127.0.0.1:{port}"], pool="100.64.7.0/24")
    control.agents = f"https://127.0.0.1:{port}"
    control.start()
    a = None
    try:
        ec2 = control.client("default")
        image = tiny_image(ec2, control)
        token = kiln("host", "join-token", "--zone", ZONE, "--data-dir", str(control.data_dir)).stdout.strip()
        a = Agent(control.agents, tmp_path / "a").start("--token", token, "--listen", f"127.0.0.1:{free_port()}")
        wait_for("the host to listen", lambda: "calls on" in a.output(), 30, 0.2)
        host_id = json.loads(a.file("host.json").read_text())["host_id"]
        assert f"Host {host_id} gives guests VPC networking." in a.output()
        key = tmp_path / "key.pem"
        key.write_text(ec2.create_key_pair(KeyName="hosts", KeyType="ed25519")["KeyMaterial"])
        key.chmod(0o600)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        group = ec2.create_security_group(GroupName="ssh", Description="ssh", VpcId=vpc)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])

        def run(zone):
            r = ec2.run_instances(ImageId=image, InstanceType="t3.nano", MinCount=1, MaxCount=1, KeyName="hosts",
                                  SecurityGroupIds=[group], Placement={"AvailabilityZone": zone})
            return r["Instances"][0]["InstanceId"]

        def fetched():
            return a.output().count("fetched a layer")

        # Before any instance is placed on it, the host may fetch no layer at all.
        snapshot = describe_root_snapshot(ec2, image)
        [snap_file] = [p for p in (control.data_dir / "snapshots").iterdir() if p.name.startswith(snapshot)]
        layer = f"snapshots/{snap_file.name}"
        mine = (a.file("cert.pem"), a.file("key.pem"))
        assert get(control.agents, f"/v1/layers/{layer}", a, mine)[0] == 404
        assert get(control.agents, f"/v1/layers/{layer}", a)[0] == 401
        assert get(control.agents, "/v1/layers/kiln.db", a, mine)[0] == 404

        first = run(ZONE)
        wait_state(ec2, first, "running", 180, control)
        assert describe(ec2, first)["Placement"] == {"AvailabilityZone": ZONE, "GroupName": "", "HostId": host_id,
                                                      "Tenancy": "default"}
        assert (a.data_dir / "instances" / first).is_dir(), "the VM's directory is on the joined host"
        assert not (control.data_dir / "instances" / first).exists(), "and not on the server's own host"
        status = kiln("host", "status", host_id, "--data-dir", str(control.data_dir))
        assert status.returncode == 0 and first in status.stdout, (status.stdout, status.stderr)
        # Its metadata service is relayed by its host: the guest knows its own ID.
        wait_for("the guest's ready line", lambda: READY + first in console(ec2, first), 180, 2, diag=a.output)
        wait_for("status checks to pass", lambda: status_ok(ec2, first), 60, 1)

        # On the VPC network its host made: the address its host's DHCP gave, SSH
        # through its public address, and its security groups enforced there (a web
        # server in the guest is out of reach until a rule lets its port in).
        inst = describe(ec2, first)
        ip = inst["PublicIpAddress"]
        wait_ssh(ip, key, control, timeout=120)
        out = ssh(ip, key, "ip -4 -o addr show; mkdir -p /tmp/www && echo on-a-host > /tmp/www/index.html && "
                           "busybox httpd -p 8080 -h /tmp/www && echo serving")
        assert f"inet {inst['PrivateIpAddress']}/" in out.stdout and "serving" in out.stdout, (out.stdout, out.stderr)
        assert not tcp_open(ip, 8080)
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        wait_for("the host to let 8080 in", lambda: "on-a-host" in (fetch(ip, 8080) or ""), 30, 1)

        # Its root volume grows while it runs there: the host's QEMU grows the qcow2 it
        # runs over NBD from the store, into room its export was made with. The guest
        # sees the new size, and what it writes past the old end reads back after its
        # caches are dropped (from the store, through the host).
        [mapping] = inst["BlockDeviceMappings"]
        root_id = mapping["Ebs"]["VolumeId"]
        size = ec2.describe_volumes(VolumeIds=[root_id])["Volumes"][0]["Size"]
        ec2.modify_volume(VolumeId=root_id, Size=size + 1)
        wait_for("the live modification", lambda: ec2.describe_volumes_modifications(VolumeIds=[root_id])[
            "VolumesModifications"][0]["ModificationState"] == "completed", 60, 0.5, diag=a.output)
        assert ec2.describe_volumes(VolumeIds=[root_id])["Volumes"][0]["Size"] == size + 1
        dev = ssh(ip, key, f"for d in /sys/block/vd*; do [ \"$(cat $d/serial)\" = {root_id.replace('-', '')} ] "
                           "&& echo ${d##*/}; done").stdout.strip()
        assert dev, "the root volume's disk in the guest"
        wait_for("the guest to see the new size", lambda: ssh(ip, key, f"cat /sys/block/{dev}/size").stdout.strip()
                 == str((size + 1) << 21), 30, 1)
        past = size * 1024 + 512  # MiB: in the grown part
        out = ssh(ip, key, f"sudo dd if=/dev/urandom of=/tmp/past bs=1M count=4 2>/dev/null && "
                           f"sudo dd if=/tmp/past of=/dev/{dev} bs=1M seek={past} conv=notrunc 2>/dev/null && sync && "
                           f"echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null && "
                           f"sudo dd if=/dev/{dev} bs=1M skip={past} count=4 2>/dev/null | md5sum; md5sum < /tmp/past")
        sums = out.stdout.split()
        assert len(sums) == 4 and sums[0] == sums[2], (out.stdout, out.stderr)

        # A second network interface, hot-plugged into the VM on its host: the host
        # makes its port, the guest takes its address by DHCP there and reaches its
        # subnet's router through it, and detaching takes it out of the guest again.
        eni = ec2.create_network_interface(SubnetId=inst["SubnetId"], Groups=[group])["NetworkInterface"]
        eni_id = eni["NetworkInterfaceId"]

        def eni_state():
            n = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
            return (n.get("Attachment") or {}).get("Status", n["Status"])

        attachment = ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=first,
                                                  DeviceIndex=1)["AttachmentId"]
        wait_for("the interface to be attached", lambda: eni_state() == "attached", 30, 1, diag=a.output)
        wait_for("eth1 in the guest", lambda: "eth1" in ssh(ip, key, "ls /sys/class/net").stdout, 30, 1)
        [subnet] = ec2.describe_subnets(SubnetIds=[inst["SubnetId"]])["Subnets"]
        router = str(ipaddress.ip_network(subnet["CidrBlock"]).network_address + 1)
        out = ssh(ip, key, "sudo udhcpc -i eth1 -s /etc/kiln/udhcpc -q -n -t 5 -T 2 >/dev/null 2>&1; "
                           f"ip -4 -o addr show eth1; sudo ping -c 1 -W 3 -I eth1 {router}")
        assert f"inet {eni['PrivateIpAddress']}/" in out.stdout and " 0% packet loss" in out.stdout, out
        ec2.detach_network_interface(AttachmentId=attachment)
        wait_for("the interface to be available", lambda: eni_state() == "available", 30, 1, diag=a.output)
        assert "eth1" not in ssh(ip, key, "ls /sys/class/net").stdout
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)

        # What it fetched: the image's kernel and its root snapshot's layer, whole,
        # read-only, byte for byte the store's (the layer but for the name of the one
        # under it, none here). Its volume stays in the store, served to the host, and
        # the VM reads the image from the host's copy.
        layers = fetched()
        assert layers >= 2, a.output()
        kernels = [p for p in (a.data_dir / "kernels").rglob("*") if p.is_file()]
        assert kernels, list(a.data_dir.rglob("*"))
        copy = a.data_dir / "snapshots" / snap_file.name
        for c in kernels + [copy]:
            assert c.read_bytes() == (control.data_dir / c.relative_to(a.data_dir)).read_bytes(), c
            assert stat.S_IMODE(c.stat().st_mode) & 0o222 == 0
        assert not list(a.data_dir.rglob("*.part"))
        [root] = describe(ec2, first)["BlockDeviceMappings"]
        assert list((control.data_dir / "volumes").glob(f"{root['Ebs']['VolumeId']}*")), "its volume is in the store"
        assert not (a.data_dir / "volumes").exists(), "and not on the host"
        pid = int((a.data_dir / "instances" / first / "qemu.pid").read_text())
        opened = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        assert str(copy) in opened, ("the VM reads the image from the host's copy", opened)

        # A second instance from the same image: nothing more is fetched.
        second = run(ZONE)
        wait_state(ec2, second, "running", 180, control)
        assert fetched() == layers, a.output()
        assert describe(ec2, second)["Placement"]["HostId"] == host_id

        # Stop and start on the host; terminate removes the VM and its volume there.
        ec2.stop_instances(InstanceIds=[second], Force=True)
        wait_state(ec2, second, "stopped", 120, control)
        assert second not in kiln("host", "status", host_id, "--data-dir", str(control.data_dir)).stdout
        ec2.start_instances(InstanceIds=[second])
        wait_state(ec2, second, "running", 120, control)
        ec2.terminate_instances(InstanceIds=[first, second])
        wait_terminated(ec2, first, second)
        assert not (a.data_dir / "instances" / first).exists()
        assert not list((control.data_dir / "volumes").glob(f"{root['Ebs']['VolumeId']}*")), "its volume is gone"
        third = run(ZONE)

        # A zone no host has joined runs on the server's own host.
        local = run("us-east-1a")
        wait_state(ec2, local, "running", 180, control)
        assert "HostId" not in describe(ec2, local)["Placement"]
        assert (control.data_dir / "instances" / local).is_dir()

        # A host gets metadata only of the instances placed on it.
        assert relayed(control.agents, a, third, mine) == (200, third)
        status, text = relayed(control.agents, a, local, mine)
        assert status == 403 and local in text, (status, text)
        assert relayed(control.agents, a, third)[0] == 401
        # A guest's path cannot climb out of its own metadata to the host's paths.
        for climb in ("/../../renew", "/%2e%2e/x", "/latest/../../heartbeat"):
            assert relayed(control.agents, a, third, mine, climb)[0] == 400, climb
        # A host relays its own guests' DNS questions for the VPCs it runs instances
        # of, and only those.
        third_ip = describe(ec2, third)["PrivateIpAddress"]
        third_name = f"ip-{third_ip.replace('.', '-')}.ec2.internal"
        wait_for("the guests' view to have the third instance", lambda: relayed_dns(
            control.agents, a, vpc, third_name, mine, guest=third_ip)[0] == 200, 10, 0.5)
        status, answer = relayed_dns(control.agents, a, vpc, third_name, mine, guest=third_ip)
        assert status == 200 and answer[:2] == b"\x12\x34" and answer[3] & 0x0F == 0, (status, answer)
        assert answer[-4:] == bytes(int(o) for o in third_ip.split(".")), answer
        local_ip = describe(ec2, local)["PrivateIpAddress"]
        status, text = relayed_dns(control.agents, a, vpc, third_name, mine, guest=local_ip)
        assert status == 403 and local_ip in text, ("a guest on another host", status, text)
        empty = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
        status, text = relayed_dns(control.agents, a, empty, third_name, mine, guest=third_ip)
        assert status == 403 and empty in text, (status, text)
        assert relayed_dns(control.agents, a, vpc, third_name, guest=third_ip)[0] == 401
        assert relayed_dns(control.agents, a, vpc, third_name, mine, guest=None)[0] == 400
        assert relayed_dns(control.agents, a, "vpc-../x", third_name, mine, guest=third_ip)[0] in (400, 404)

        # The host dies (its agent; the VM goes on, as on a machine cut off): the
        # instance fails its system status check with an event saying why; a forced
        # stop releases it without the host; it cannot start elsewhere (its zone has no
        # other host); and when the host returns, the VM still running there is ended.
        wait_state(ec2, third, "running", 180, control)
        vm = str(a.data_dir / "instances" / third)
        a.kill()
        wait_for("the system status check to fail", lambda: system_status(ec2, third) == "impaired", LIVE_FOR + 15, 1)
        [st] = ec2.describe_instance_status(InstanceIds=[third])["InstanceStatuses"]
        assert st["SystemStatus"]["Details"][0]["Status"] == "failed" and "ImpairedSince" in st["SystemStatus"]["Details"][0]
        [event] = st["Events"]
        assert event["Code"] == "instance-stop" and host_id in event["Description"], event
        ec2.stop_instances(InstanceIds=[third], Force=True)
        wait_state(ec2, third, "stopped", 30, control)
        err = pytest.raises(Exception, ec2.start_instances, InstanceIds=[third])
        assert "InsufficientInstanceCapacity" in str(err.value) and ZONE in str(err.value), err.value
        assert subprocess.run(["pgrep", "-f", vm], capture_output=True).returncode == 0, "the stale VM runs on"
        a.start("--listen", f"127.0.0.1:{free_port()}")
        wait_for("the stale VM to be fenced", lambda: subprocess.run(["pgrep", "-f", vm]).returncode != 0, 60, 1,
                 diag=a.output)
        assert state_of(ec2, third) == "stopped"
        ec2.terminate_instances(InstanceIds=[third, local])
        wait_terminated(ec2, third, local)
    finally:
        if a:
            a.kill()
        control.stop()
        for d in (tmp_path / "a", control.data_dir):
            remove_host_state(d)
        shutil.rmtree(control.data_dir, ignore_errors=True)


def system_status(ec2, instance_id):
    found = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"]
    return found[0]["SystemStatus"]["Status"] if found else None


def status_ok(ec2, instance_id):
    found = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"]
    return bool(found) and found[0]["InstanceStatus"]["Status"] == "ok"


def get(endpoint, path, agent, cert=None, headers=None, data=None, raw=False):
    """GETs (POSTs `data`) a path of the agents' endpoint, trusting only the cloud's CA;
    `cert` is a (cert, key) pair to present. Returns (status, text or bytes)."""
    ctx = ssl.create_default_context(cafile=str(agent.file("ca.pem")))
    if cert:
        ctx.load_cert_chain(*map(str, cert))
    req = urllib.request.Request(endpoint + path, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            body = r.read()
            return r.status, body if raw else body.decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def dns_query(name):
    """A DNS question for `name`'s A record (ID 0x1234, recursion desired)."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def relayed_dns(endpoint, agent, vpc, name, cert=None, guest="172.31.0.9"):
    """Asks VPC `vpc`'s resolver through the agents' endpoint as a host relays a
    guest's question."""
    headers = {"x-kiln-dns-guest": guest} if guest else {}
    return get(endpoint, f"/v1/dns/{vpc}", agent, cert, headers, dns_query(name), raw=True)


def relayed(endpoint, agent, instance_id, cert=None, path="/latest/meta-data/instance-id"):
    """GETs an instance's metadata as a host relays a guest's request: the guest's path
    in a header, to one fixed URL."""
    return get(endpoint, f"/v1/imds/{instance_id}", agent, cert, {"x-kiln-guest-path": path})


def wait_terminated(ec2, *ids):
    wait_for(f"{ids} to be terminated", lambda: all(describe(ec2, i)["State"]["Name"] == "terminated" for i in ids),
             120, 1)


def describe_root_snapshot(ec2, image):
    [img] = ec2.describe_images(ImageIds=[image])["Images"]
    return img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]


def sh(*args, check=True):
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert not check or out.returncode == 0, (args, out.stdout, out.stderr)
    return out


class Underlay:
    """A network between hosts on this machine: a bridge with the control plane's
    address, and a namespace per host (and one for "outside") linked to it."""

    def __init__(self):
        self.tag = f"{os.getpid() % 10000:04d}"
        self.bridge = f"kbr{self.tag}"
        self.prefix = "192.168.231"
        self.namespaces = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def namespace(self, name, last_octet):
        ns, link = f"ku{self.tag}{name}", f"ku{self.tag}{name}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", "underlay", "netns", ns)
        sh("ip", "link", "set", link, "master", self.bridge, "up")
        sh("ip", "-n", ns, "addr", "add", f"{self.prefix}.{last_octet}/24", "dev", "underlay")
        sh("ip", "-n", ns, "link", "set", "underlay", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def remove(self):
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


def ping_times(out):
    """Each round trip ping reports, ms."""
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]


@pytest.mark.skipif(os.environ.get("KILN_TEST_STORE", "sqlite") != "postgres",
                    reason="a control plane on PostgreSQL: runs in the PostgreSQL pass")
def test_a_vpc_spans_three_hosts_in_namespaces_of_their_own(tmp_path):
    """Three hosts, each a network namespace with its own `kiln agent` and data
    directory, joined over an underlay bridge to one control plane on PostgreSQL; two
    zones, two hosts in one. Instances land on their zone's hosts, instances of one VPC
    on different hosts reach each other by private address over VXLAN with their
    security groups applied on the receiving host, and SSH reaches each through its
    public address from an "outside" namespace, which the underlay delivers to the
    instance's host; an instance in a zone no host joined (on the control plane's own
    machine) is on the same overlay. Each VPC's resolver answers on joined hosts. An
    image made on one host boots on another from that host's copies of its layers; a
    live snapshot on a joined host switches its VM to the new top and seals the old
    one; a volume written on one host is read on the other host of its zone; a dead
    host's instance, forced stopped, starts on the other host of its zone with its
    data, and the VM left on the dead host is ended when it returns."""
    net = Underlay()
    agents = []
    port = free_port()
    control = Server(extra_args=["--agent-listen", f"{net.prefix}.1:{port}"], pool="100.64.11.0/24")
    try:
        outside = net.namespace("o", 100)
        sh("ip", "-n", outside, "route", "add", "100.64.11.0/24", "dev", "underlay")
        control.start()
        ec2 = control.client("default")
        image = tiny_image(ec2, control)
        zones = {"h1": "us-east-1a", "h2": "us-east-1a", "h3": "us-east-1b"}
        host_ids, by_name = {}, {}

        def start_agent(a, n, *extra):
            a.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{a.ns}", KILN_BIN, "agent", "--control", a.control, "--data-dir",
                 str(a.data_dir), "--accel", "tcg", "--network", "vpc", "--no-egress-nat",
                 "--listen", f"{net.prefix}.{11 + n}:{a.port}", *extra],
                stdout=open(a.log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            wait_for(f"{a.data_dir.name} to listen", lambda: a.output().count("calls on") > a.starts, 30, 0.2,
                     diag=a.output)
            a.starts += 1

        for n, (name, zone) in enumerate(zones.items()):
            token = kiln("host", "join-token", "--zone", zone, "--data-dir", str(control.data_dir)).stdout.strip()
            a = Agent(f"https://{net.prefix}.1:{port}", tmp_path / name)
            a.ns, a.port, a.n, a.starts = net.namespace(name, 11 + n), free_port(), n, 0
            a.data_dir.mkdir(parents=True)
            start_agent(a, n, "--token", token)
            agents.append(a)
            by_name[name] = a
            host_ids[name] = json.loads(a.file("host.json").read_text())["host_id"]
        by_id = {v: k for k, v in host_ids.items()}

        key = tmp_path / "key.pem"
        key.write_text(ec2.create_key_pair(KeyName="fleet", KeyType="ed25519")["KeyMaterial"])
        key.chmod(0o600)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        ssh_anywhere = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        front = ec2.create_security_group(GroupName="front", Description="front", VpcId=vpc)["GroupId"]
        back = ec2.create_security_group(GroupName="back", Description="back", VpcId=vpc)["GroupId"]
        for g in (front, back):
            ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=ssh_anywhere)
        # The front's members answer each other's pings; the back answers nobody's yet.
        ec2.authorize_security_group_ingress(GroupId=front, IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "UserIdGroupPairs": [{"GroupId": front}]}])

        def run(zone, group, count=1, placement_group=None, image=image):
            placement = {"AvailabilityZone": zone, **({"GroupName": placement_group} if placement_group else {})}
            r = ec2.run_instances(ImageId=image, InstanceType="t3.nano", MinCount=count, MaxCount=count,
                                  KeyName="fleet", SecurityGroupIds=[group], Placement=placement)
            return [i["InstanceId"] for i in r["Instances"]]

        # Two on one host (a cluster group), a third in their zone on the other host
        # (the one with the most room), a fourth in the other zone.
        ec2.create_placement_group(GroupName="together", Strategy="cluster")
        a1, a3 = run("us-east-1a", front, 2, "together")
        [a2] = run("us-east-1a", front)
        [b1] = run("us-east-1b", back)
        # And one in a zone no host joined: on the control plane's own machine, which
        # is on the hosts' network too (--agent-listen).
        [c0] = run("us-east-1c", front)
        everyone = (a1, a2, a3, b1)
        for i in everyone:
            wait_state(ec2, i, "running", 240, control)
        on = {i: by_id.get(describe(ec2, i)["Placement"].get("HostId")) for i in everyone}
        assert on[a1] == on[a3] and {on[a1], on[a2]} == {"h1", "h2"}, on
        assert on[b1] == "h3", on
        inst = {i: describe(ec2, i) for i in everyone}
        public = {i: inst[i]["PublicIpAddress"] for i in inst}
        private = {i: inst[i]["PrivateIpAddress"] for i in inst}

        def outside_ssh(i, command, timeout=30):
            public[i] = describe(ec2, i)["PublicIpAddress"]
            return subprocess.run(
                ["ip", "netns", "exec", outside, "ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
                 "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o",
                 "LogLevel=ERROR", f"ec2-user@{public[i]}", command],
                capture_output=True, text=True, errors="replace", timeout=timeout)

        def ssh_up(i):
            try:
                return outside_ssh(i, "echo up", 20).stdout.strip() == "up"
            except subprocess.TimeoutExpired:
                return False

        # SSH from outside, through each public address, to whichever host runs it.
        for i in everyone:
            wait_for(f"ssh to {i} on {on[i]} from outside", lambda: ssh_up(i), 180, 2,
                     diag=lambda: control.log_tail() + "".join(a.output()[-2000:] for a in agents))

        def ping(src, dst, count=3):
            return outside_ssh(src, f"sudo ping -c {count} -W 2 {private[dst]}", 60)

        # Across hosts in one VPC, by private address: the front's two hosts reach
        # each other; the back's host refuses pings until its group lets them in.
        out = ping(a1, a2)
        assert " 0% packet loss" in out.stdout, (out.stdout, out.stderr)
        out = ping(a2, a1)
        assert " 0% packet loss" in out.stdout, (out.stdout, out.stderr)
        out = ping(a1, b1, 2)
        assert "100% packet loss" in out.stdout, (out.stdout, out.stderr)
        ec2.authorize_security_group_ingress(GroupId=back, IpPermissions=[
            {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "UserIdGroupPairs": [{"GroupId": front}]}])
        wait_for("the back to answer the front's pings", lambda: " 0% packet loss" in ping(a1, b1, 1).stdout, 30, 1)
        # And TCP across hosts, from the back (whose address the front does not let in
        # but for SSH, which is open to all).
        out = outside_ssh(b1, f"echo | nc -w 3 {private[a1]} 22 | head -c 4")
        assert out.stdout.startswith("SSH-"), (out.stdout, out.stderr)

        # The VPC's resolver answers on joined hosts as on the server's own: EC2's names
        # of an instance on another host, inside the VPC its public name too (split
        # horizon), and NXDOMAIN for a name that names nothing.
        private_name = f"ip-{private[a2].replace('.', '-')}.ec2.internal"
        public_name = f"ec2-{public[a2].replace('.', '-')}.compute-1.amazonaws.com"
        out = outside_ssh(b1, f"cat /etc/resolv.conf; nslookup {private_name}; nslookup {public_name}; "
                              "nslookup nothing.ec2.internal", 60)
        text = out.stdout + out.stderr
        assert "nameserver 172.31.0.2" in text, text
        assert text.count(f"Address: {private[a2]}") == 2, text
        assert "server can't find nothing.ec2.internal: NXDOMAIN" in text, text

        # The control plane's own machine is on the overlay: its guest and the joined
        # hosts' reach each other by private address, and its guest's public address is
        # answered for on the hosts' network.
        wait_state(ec2, c0, "running", 240, control)
        inst[c0] = describe(ec2, c0)
        assert "HostId" not in inst[c0]["Placement"], inst[c0]["Placement"]
        private[c0] = inst[c0]["PrivateIpAddress"]
        wait_for("ssh to c0 on the control plane's machine from outside", lambda: ssh_up(c0), 180, 2,
                 diag=control.log_tail)
        for src in (a1, a2):
            out = ping(src, c0)
            assert " 0% packet loss" in out.stdout, (src, out.stdout, out.stderr)
        out = outside_ssh(c0, f"sudo ping -c 3 -W 2 {private[b1]}; echo | nc -w 3 {private[a2]} 22 | head -c 4", 60)
        assert " 0% packet loss" in out.stdout and "SSH-" in out.stdout, (out.stdout, out.stderr)

        # Figures: round trips on one host and between hosts (TCG guests, so mostly
        # emulation), medians of interleaved rounds.
        same = ping_times(ping(a1, a3, 5).stdout)
        cross = ping_times(ping(a1, a2, 5).stdout)
        assert same and cross, (same, cross)
        print(f"\nping within a VPC, median of {len(same)}: same host {statistics.median(same):.2f} ms, "
              f"across hosts {statistics.median(cross):.2f} ms "
              f"({statistics.median(cross) / statistics.median(same):.2f}x)")

        def volume_state(v):
            return ec2.describe_volumes(VolumeIds=[v])["Volumes"][0]["State"]

        def ssh_again(i):
            wait_for(f"ssh to {i}", lambda: ssh_up(i), 180, 2, diag=control.log_tail)

        # An image made on one host launches on another: its layer is made in the
        # store, where the instance's volume is.
        out = outside_ssh(a1, "echo from-the-image > mark && sync && echo marked")
        assert "marked" in out.stdout, (out.stdout, out.stderr)
        made = ec2.create_image(InstanceId=a1, Name="made-on-a-host")["ImageId"]
        wait_for("the image", lambda: ec2.describe_images(ImageIds=[made])["Images"][0]["State"] == "available", 240,
                 2, diag=control.log_tail)
        [c1] = run("us-east-1b", back, image=made)
        wait_state(ec2, c1, "running", 240, control)
        assert by_id[describe(ec2, c1)["Placement"]["HostId"]] == "h3"
        ssh_again(c1)
        out = outside_ssh(c1, "cat mark")
        assert out.stdout.strip() == "from-the-image", (out.stdout, out.stderr)
        # h3 booted it from its own copies of the image's layers (fetched: they are
        # frozen), the new one cut back to its qcow2 from the length its server gave it.
        c1_pid = int((by_name["h3"].data_dir / "instances" / c1 / "qemu.pid").read_text())
        opened = {os.readlink(f"/proc/{c1_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{c1_pid}/fd")}
        # (A layer keeps the name it had as a volume's top: volumes/ of the store.)
        copies = [p for p in opened if p.endswith(".qcow2") and p.startswith(str(by_name["h3"].data_dir))]
        assert len(copies) >= 2, opened
        for copy in copies:
            stored = control.data_dir / Path(copy).relative_to(by_name["h3"].data_dir)
            assert stored.stat().st_size < 512 << 20, (stored, stored.stat().st_size)

        # A snapshot of a running instance's volume on a joined host: its VM goes on to
        # the new top (exported by its server) at once and keeps writing.
        ssh_again(a1)
        out = outside_ssh(a1, "echo before-the-snapshot > mark2 && sync && echo marked")
        assert "marked" in out.stdout, (out.stdout, out.stderr)
        root_vol = describe(ec2, a1)["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        snap = ec2.create_snapshot(VolumeId=root_vol)["SnapshotId"]
        wait_for("the live snapshot", lambda: ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"]
                 == "completed", 120, 1, diag=control.log_tail)
        out = outside_ssh(a1, "echo after-the-snapshot > mark3 && sync && cat mark2 mark3")
        assert out.stdout.split() == ["before-the-snapshot", "after-the-snapshot"], (out.stdout, out.stderr)
        # The file it was on is a layer now: served read-only and sealed (cut back to its
        # qcow2, read-only in the store), and the VM still reads what it holds.
        out = outside_ssh(a1, "sync; echo 3 | sudo tee /proc/sys/vm/drop_caches >/dev/null; cat mark mark2", 60)
        assert out.stdout.split() == ["from-the-image", "before-the-snapshot"], (out.stdout, out.stderr)
        files = sorted((control.data_dir / "volumes").glob(f"{root_vol}*"))
        layers = [f for f in files if stat.S_IMODE(f.stat().st_mode) & 0o222 == 0]
        assert len(layers) >= 2 and len(files) > len(layers), files
        for f in layers:
            assert f.stat().st_size < 512 << 20, (f, f.stat().st_size)

        # A volume written through an instance on one host, detached, and attached to
        # an instance on the other host of the zone keeps its data.
        vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
        wait_for("the volume", lambda: volume_state(vol) == "available", 60, 1)
        ssh_again(a1)
        for i, command in ((a2, "echo moved-data | sudo dd of=/dev/vdb 2>/dev/null && sync && echo written"),
                           (a1, "sudo head -c 10 /dev/vdb")):
            ec2.attach_volume(VolumeId=vol, InstanceId=i, Device="/dev/sdf")
            wait_for(f"{vol} on {i}", lambda: volume_state(vol) == "in-use", 60, 1)
            wait_for(f"{i}'s new disk", lambda: outside_ssh(i, "[ -b /dev/vdb ] && echo disk").stdout.strip() == "disk",
                     60, 1)
            out = outside_ssh(i, command)
            ec2.detach_volume(VolumeId=vol)
            wait_for(f"{vol} to be detached", lambda: volume_state(vol) == "available", 90, 1, diag=control.log_tail)
        assert out.stdout.startswith("moved-data"), (out.stdout, out.stderr)

        # A host dies (its agent is killed and its link cut; its VMs run on, cut off):
        # its instance goes impaired, a forced stop and a start bring it up on the
        # other host of its zone with its data, and when the dead host returns, the
        # VM left there is ended.
        out = outside_ssh(a2, "echo survives > mark && sync && echo marked")
        assert "marked" in out.stdout, (out.stdout, out.stderr)
        dead = by_name[on[a2]]
        dead.kill()
        sh("ip", "link", "set", f"ku{net.tag}{on[a2]}", "down")
        wait_for("a2 to be impaired", lambda: system_status(ec2, a2) == "impaired", LIVE_FOR + 20, 1)
        ec2.stop_instances(InstanceIds=[a2], Force=True)
        wait_state(ec2, a2, "stopped", 60, control)
        ec2.start_instances(InstanceIds=[a2])
        wait_state(ec2, a2, "running", 240, control)
        moved_to = by_id[describe(ec2, a2)["Placement"]["HostId"]]
        assert moved_to != on[a2] and zones[moved_to] == "us-east-1a", (moved_to, on[a2])
        ssh_again(a2)
        out = outside_ssh(a2, "cat mark")
        assert out.stdout.strip() == "survives", (out.stdout, out.stderr)
        stale = str(dead.data_dir / "instances" / a2)
        assert subprocess.run(["pgrep", "-f", stale], capture_output=True).returncode == 0, "the stale VM runs on"
        sh("ip", "link", "set", f"ku{net.tag}{on[a2]}", "up")
        start_agent(dead, dead.n)
        wait_for("the stale VM to be fenced", lambda: subprocess.run(["pgrep", "-f", stale]).returncode != 0, 60, 1,
                 diag=dead.output)
        assert state_of(ec2, a2) == "running"

        everyone = (*everyone, c1, c0)
        ec2.terminate_instances(InstanceIds=list(everyone))
        wait_terminated(ec2, *everyone)
        # Each host removes the VPC's network with its last instance there.
        for a in agents:
            wait_for("the host's VPC networks to go", lambda: not any(
                n.startswith(f"kiln-{net_tag(a.data_dir)}-") for n in sh("ip", "netns", "list").stdout.split()), 30, 1)
    finally:
        for a in agents:
            a.kill()
        control.stop()
        for d in [a.data_dir for a in agents] + [control.data_dir]:
            remove_host_state(d)
        net.remove()
        shutil.rmtree(control.data_dir, ignore_errors=True)
