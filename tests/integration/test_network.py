"""VPC networking end to end, with the AWS CLI and ssh only, against the session server
(which runs with its own public pool, 100.64.1.0/24, and no egress NAT, so nothing is
forwarded off the machine).

The seeds' story: a key pair and a security group for SSH and HTTP; kiln-tiny launched
with user data; SSH in through the public address; a web page and a web server that
starts at boot; the page fetched from the host; CreateImage; a second instance from the
new AMI serves the same page without anyone logging into it.

Then the security checks on the same instances: a revoked port closes (and opens again),
HttpTokens=required refuses IMDSv1, a guest only ever reads its own metadata, a spoofed
source address or MAC never leaves its port (seen from the host with a packet capture on
the VPC's link), and a second VPC cannot reach the first. Everything is removed at the
end, and with it the VPCs' namespaces.
"""

import os
import re
import socket
import struct
import subprocess
import threading
import uuid

import pytest

from instances_helpers import KILN_BIN, wait_for
from story_helpers import BOOT, console, fetch, instance, launch, ok, page_with, ssh, tcp_open, wait_ssh


POOL_PREFIX = "100.64.1."
STATE: dict = {}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="VPC networking needs root")


def test_seeds_story(aws, kiln, quickstart_images, tmp_path_factory):
    work = tmp_path_factory.mktemp("story")
    token = uuid.uuid4().hex[:12]
    name = f"story-{token}"
    STATE.update(name=name, token=token, instances=[], groups=[], work=work)

    # A key pair, its private key saved for ssh.
    material = ok(aws, "ec2", "create-key-pair", "--key-name", name, "--query", "KeyMaterial", output="text")
    key = work / "key.pem"
    key.write_text(material.strip() + "\n")
    key.chmod(0o600)
    STATE["key"] = key

    # A security group for SSH and HTTP.
    group = ok(aws, "ec2", "create-security-group", "--group-name", name, "--description", "seeds story")["GroupId"]
    STATE["groups"].append(group)
    for port in ("22", "80"):
        ok(aws, "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", port,
           "--cidr", "0.0.0.0/0")
    STATE["group"] = group

    # kiln-tiny with user data (run as root at first boot).
    user_data = work / "user-data.sh"
    user_data.write_text(f"#!/bin/sh\necho {token} > /var/lib/kiln/story-user-data\n")
    image = quickstart_images["x86_64"]["ImageId"]
    a = launch(aws, image, name, group, user_data)
    STATE["instances"].append(a)
    STATE["a"] = a
    rc, _, err = aws("ec2", "wait", "instance-running", "--instance-ids", a, timeout=BOOT)
    assert rc == 0, err
    desc = instance(aws, a)
    public, private = desc["PublicIpAddress"], desc["PrivateIpAddress"]
    assert public.startswith(POOL_PREFIX), desc
    assert desc["PublicDnsName"] == f"ec2-{public.replace('.', '-')}.compute-1.amazonaws.com"
    assert desc["NetworkInterfaces"][0]["Association"]["PublicIp"] == public
    STATE.update(a_public=public, a_private=private)

    # Connect: the key reached ec2-user, DHCP gave the address DescribeInstances shows,
    # and the user data ran.
    wait_ssh(public, key, kiln)
    out = ssh(public, key, "hostname; ip -4 -o addr show eth0; cat /var/lib/kiln/story-user-data")
    assert out.returncode == 0, out.stderr
    assert f"ip-{private.replace('.', '-')}" in out.stdout
    assert f"inet {private}/" in out.stdout
    assert token in out.stdout

    # System files are root's, as on EC2's images: ec2-user cannot write rc.local, and
    # becomes root with sudo (no password).
    out = ssh(public, key, "ls -ln /etc/rc.local; echo x >> /etc/rc.local; echo rc=$?; sudo -n id -u")
    owner = out.stdout.split()[2:4]
    assert owner == ["0", "0"] and "rc=1" in out.stdout and out.stdout.strip().endswith("0"), out.stdout
    # Install: a page and a web server that starts at boot (kiln-tiny runs /etc/rc.local
    # as root at every boot).
    page = f"<h1>Hello from Kiln {token}</h1>"
    install = (
        f"mkdir -p /var/www && echo '{page}' > /var/www/index.html && "
        "printf '#!/bin/sh\\nbusybox httpd -p 80 -h /var/www\\n' | sudo tee /etc/rc.local >/dev/null && sync"
    )
    out = ssh(public, key, install)
    assert out.returncode == 0, out.stderr
    ok(aws, "ec2", "reboot-instances", "--instance-ids", a)
    body = wait_for("the page from the first instance", lambda: page_with(public, token), BOOT, interval=2,
                    diag=kiln.log_tail)
    assert page in body

    # Capture: an AMI from the running instance (rebooted for consistency).
    ami = ok(aws, "ec2", "create-image", "--instance-id", a, "--name", name, "--description", "seeds story",
             timeout=300)["ImageId"]
    STATE["ami"] = ami
    rc, _, err = aws("ec2", "wait", "image-available", "--image-ids", ami, timeout=BOOT)
    assert rc == 0, err

    # A second instance from the new AMI serves the same page; nobody logs into it.
    b = launch(aws, ami, name, group)
    STATE["instances"].append(b)
    STATE["b"] = b
    rc, _, err = aws("ec2", "wait", "instance-running", "--instance-ids", b, timeout=BOOT)
    assert rc == 0, err
    desc = instance(aws, b)
    b_public = desc["PublicIpAddress"]
    assert b_public.startswith(POOL_PREFIX) and b_public != public
    STATE.update(b_public=b_public, b_private=desc["PrivateIpAddress"])
    body = wait_for("the page from the second instance", lambda: page_with(b_public, token), BOOT, interval=2,
                    diag=kiln.log_tail)
    assert page in body


def need(*keys):
    missing = [k for k in keys if k not in STATE]
    if missing:
        pytest.skip(f"the story did not get as far as {missing}")


def kiln_cli(kiln, *args, env=None, timeout=60):
    return subprocess.run([KILN_BIN, *args], capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_kiln_ssh_logs_in_with_the_saved_key(kiln, aws, tmp_path):
    need("a", "key", "name", "a_private")
    a, endpoint = STATE["a"], ["--endpoint", kiln.endpoint]
    keys = tmp_path / "keys"
    env = {"KILN_KEYS_DIR": str(keys)}
    out = kiln_cli(kiln, "ssh", a, "-i", str(STATE["key"]), *endpoint, "--", "id", "-un", env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ec2-user", out
    # Without -i, the key saved under the key pair's name is used.
    out = kiln_cli(kiln, "ssh", a, *endpoint, "--", "hostname", env=env)
    assert out.returncode != 0 and f"{STATE['name']}.pem" in out.stderr, out
    keys.mkdir(exist_ok=True)
    saved = keys / f"{STATE['name']}.pem"
    saved.write_text(STATE["key"].read_text())
    saved.chmod(0o600)
    out = kiln_cli(kiln, "ssh", a, *endpoint, "--", "hostname", env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"ip-{STATE['a_private'].replace('.', '-')}", out
    # `kiln keys create` saves a new key there, private, and refuses to overwrite it.
    name = f"cli-{STATE['token']}"
    out = kiln_cli(kiln, "keys", "create", name, *endpoint, env=env)
    assert out.returncode == 0, out
    made = keys / f"{name}.pem"
    assert made.stat().st_mode & 0o777 == 0o600
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(made)], capture_output=True, text=True)
    assert public.returncode == 0 and public.stdout.startswith("ssh-ed25519 "), public
    listed = ok(aws, "ec2", "describe-key-pairs", "--key-names", name)["KeyPairs"]
    assert listed[0]["KeyType"] == "ed25519"
    again = kiln_cli(kiln, "keys", "create", name, *endpoint, env=env)
    assert again.returncode != 0 and "exists already" in again.stderr, again
    ok(aws, "ec2", "delete-key-pair", "--key-name", name)
    out = kiln_cli(kiln, "ssh", "i-0123456789abcdef0", *endpoint, env=env)
    assert out.returncode != 0 and "InvalidInstanceID.NotFound" in out.stderr, out


def test_a_revoked_port_closes_at_once(aws):
    need("b_public", "group")
    ip, group = STATE["b_public"], STATE["group"]
    assert STATE["token"] in (fetch(ip) or "")
    ok(aws, "ec2", "revoke-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "80",
       "--cidr", "0.0.0.0/0")
    wait_for("port 80 to close after the revoke", lambda: not tcp_open(ip, 80, timeout=2), 15, interval=0.5)
    assert tcp_open(ip, 22), "the revoke closed only port 80"
    ok(aws, "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "80",
       "--cidr", "0.0.0.0/0")
    wait_for("port 80 to open again", lambda: STATE["token"] in (fetch(ip) or ""), 15, interval=0.5)


IMDS_V1 = "printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' | nc -w 5 169.254.169.254 80"
IMDS_V2 = (
    "T=$(printf 'PUT /latest/api/token HTTP/1.0\\r\\nX-aws-ec2-metadata-token-ttl-seconds: 60\\r\\n\\r\\n'"
    " | nc -w 5 169.254.169.254 80 | tail -n 1); "
    "printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\nX-aws-ec2-metadata-token: %s\\r\\n\\r\\n' \"$T\""
    " | nc -w 5 169.254.169.254 80"
)


def test_tokens_required_refuses_imdsv1(aws):
    need("a", "a_public", "key")
    a, ip, key = STATE["a"], STATE["a_public"], STATE["key"]
    out = ssh(ip, key, IMDS_V1)
    assert " 200 " in out.stdout.splitlines()[0] and out.stdout.rstrip().endswith(a), out.stdout
    data = ok(aws, "ec2", "modify-instance-metadata-options", "--instance-id", a, "--http-tokens", "required")
    assert data["InstanceMetadataOptions"]["HttpTokens"] == "required"
    try:
        out = ssh(ip, key, IMDS_V1)
        assert " 401 " in out.stdout.splitlines()[0], out.stdout
        out = ssh(ip, key, IMDS_V2)
        assert " 200 " in out.stdout.splitlines()[0] and out.stdout.rstrip().endswith(a), out.stdout
    finally:
        ok(aws, "ec2", "modify-instance-metadata-options", "--instance-id", a, "--http-tokens", "optional")
    assert instance(aws, a)["MetadataOptions"]["HttpTokens"] == "optional"


def test_vpc_dns_answers_ec2_names(aws):
    need("a_public", "b_private", "b_public", "key")
    b_private, b_public = STATE["b_private"], STATE["b_public"]
    private_name = f"ip-{b_private.replace('.', '-')}.ec2.internal"
    public_name = f"ec2-{b_public.replace('.', '-')}.compute-1.amazonaws.com"
    out = ssh(STATE["a_public"], STATE["key"],
              f"cat /etc/resolv.conf; nslookup {private_name}; nslookup {public_name}; nslookup nothing.ec2.internal")
    text = out.stdout + out.stderr
    assert "nameserver 172.31.0.2" in text, text
    # Both names of B resolve to its private address inside the VPC (split horizon).
    assert text.count(f"Address: {b_private}") == 2, text
    assert "server can't find nothing.ec2.internal: NXDOMAIN" in text, text


class Capture:
    """IPv4 TCP SYNs arriving on the host end of a VPC's link, by destination port."""

    def __init__(self, ifname):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.5)
        self.seen = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                frame = self.sock.recv(65536)
            except OSError:
                continue
            ip = frame[14:]
            if len(ip) < 40 or ip[9] != 6:
                continue
            ihl = (ip[0] & 0x0F) * 4
            src = socket.inet_ntoa(ip[12:16])
            dport = struct.unpack("!H", ip[ihl + 2 : ihl + 4])[0]
            self.seen.append((src, dport))

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def link_of(public_ip):
    out = subprocess.run(["ip", "route", "get", public_ip], capture_output=True, text=True, check=True).stdout
    return re.search(r"\bdev (\S+)", out).group(1)


def test_spoofed_sources_never_leave_the_port_and_metadata_is_ones_own(aws, kiln, quickstart_images):
    need("a_public", "b_private", "key", "group")
    link = link_of(STATE["a_public"])
    probe = STATE["work"] / "probe.sh"
    host = "169.254.255.1"
    # As root at first boot: SYNs to the host from the guest's own address (port 7001),
    # from another instance's address (7002) and from a forged MAC (7003), then what the
    # metadata service says to this guest.
    probe.write_text(
        f"""#!/bin/sh
# kiln-probe
say() {{ echo "kiln-test: $*" > /dev/console; }}
GW=$(ip route | awk '/^default/ {{print $3}}')
for i in 1 2 3; do nc -w 1 {host} 7001 </dev/null; done
ip addr add {STATE['b_private']}/32 dev eth0
ip route replace {host}/32 via $GW dev eth0 src {STATE['b_private']}
for i in 1 2 3; do nc -w 1 {host} 7002 </dev/null; done
ip route replace {host}/32 via $GW dev eth0
say "imds-instance-id=$(printf 'GET /latest/meta-data/instance-id HTTP/1.0\\r\\n\\r\\n' | nc -w 5 169.254.169.254 80 | tail -n 1)"
say "imds-user-data=$(printf 'GET /latest/user-data HTTP/1.0\\r\\n\\r\\n' | nc -w 5 169.254.169.254 80 | grep -c '^# kiln-probe$')"
ip link set eth0 down; ip link set eth0 address 02:00:00:de:ad:01; ip link set eth0 up
ip route add default via $GW dev eth0 2>/dev/null
for i in 1 2 3; do nc -w 1 {host} 7003 </dev/null; done
say "probes done"
"""
    )
    capture = Capture(link)
    try:
        d = launch(aws, quickstart_images["x86_64"]["ImageId"], STATE["name"], STATE["group"], probe)
        STATE["instances"].append(d)
        text = wait_for("the probe to finish", lambda: (lambda c: c if "probes done" in c else None)(console(aws, d)),
                        BOOT, interval=2, diag=kiln.log_tail)
    finally:
        capture.close()
    d_public = instance(aws, d)["PublicIpAddress"]
    ports = {}
    for src, dport in capture.seen:
        ports.setdefault(dport, set()).add(src)
    assert ports.get(7001) == {d_public}, f"the guest's own SYNs should arrive, NAT'd to its public address: {ports}"
    assert 7002 not in ports, f"a SYN from another instance's address left the port: {ports}"
    assert 7003 not in ports, f"a SYN from a forged MAC left the port: {ports}"
    assert f"imds-instance-id={d}" in text, text
    assert "imds-user-data=1" in text, text


def main_table(aws, vpc):
    return ok(aws, "ec2", "describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc}",
              "Name=association.main,Values=true")["RouteTables"][0]["RouteTableId"]


def open_to_internet(aws, vpc):
    """An internet gateway attached to `vpc` and a 0.0.0.0/0 route to it in its main table."""
    igw = ok(aws, "ec2", "create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
    ok(aws, "ec2", "attach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    ok(aws, "ec2", "create-route", "--route-table-id", main_table(aws, vpc), "--destination-cidr-block", "0.0.0.0/0",
       "--gateway-id", igw)
    return igw


def close_vpc(aws, vpc):
    """Detaches and deletes `vpc`'s gateways, deletes its subnets and the VPC."""
    gws = ok(aws, "ec2", "describe-internet-gateways", "--filters", f"Name=attachment.vpc-id,Values={vpc}")
    for g in gws["InternetGateways"]:
        ok(aws, "ec2", "detach-internet-gateway", "--internet-gateway-id", g["InternetGatewayId"], "--vpc-id", vpc)
        ok(aws, "ec2", "delete-internet-gateway", "--internet-gateway-id", g["InternetGatewayId"])
    for s in ok(aws, "ec2", "describe-subnets", "--filters", f"Name=vpc-id,Values={vpc}")["Subnets"]:
        ok(aws, "ec2", "delete-subnet", "--subnet-id", s["SubnetId"])
    ok(aws, "ec2", "delete-vpc", "--vpc-id", vpc)


def test_routes_and_elastic_ips_decide_public_reachability(aws, kiln, quickstart_images):
    """A VPC built from scratch: its instance's public address works only while the
    subnet routes to an attached gateway; an Elastic IP takes over the address and
    survives stop and start."""
    need("key", "name")
    key = STATE["key"]
    vpc = ok(aws, "ec2", "create-vpc", "--cidr-block", "10.78.0.0/16")["Vpc"]["VpcId"]
    STATE["routed_vpc"] = vpc
    subnet = ok(aws, "ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", "10.78.1.0/24")["Subnet"]["SubnetId"]
    group = ok(aws, "ec2", "create-security-group", "--group-name", "routed", "--description", "routes", "--vpc-id",
               vpc)["GroupId"]
    STATE["groups"].append(group)
    ok(aws, "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "tcp", "--port", "22",
       "--cidr", "0.0.0.0/0")
    # No gateway: EIP association is refused, as on EC2.
    alloc = ok(aws, "ec2", "allocate-address", "--domain", "vpc")
    STATE["eip"] = alloc["AllocationId"]
    d = launch(aws, quickstart_images["x86_64"]["ImageId"], STATE["name"], group,
               extra=("--subnet-id", subnet, "--associate-public-ip-address"))
    STATE["instances"].append(d)
    rc, _, err = aws("ec2", "wait", "instance-running", "--instance-ids", d, timeout=BOOT)
    assert rc == 0, err
    rc, _, err = aws("ec2", "associate-address", "--allocation-id", alloc["AllocationId"], "--instance-id", d)
    assert rc != 0 and "Gateway.NotAttached" in err, err
    private = instance(aws, d)["PrivateIpAddress"]
    # The guest is up (its status checks pass), yet its public address is not reachable.
    public = wait_for("a public address", lambda: instance(aws, d).get("PublicIpAddress"), 30)
    rc, _, err = aws("ec2", "wait", "instance-status-ok", "--instance-ids", d, timeout=BOOT)
    assert rc == 0, err
    assert not tcp_open(public, 22, timeout=3), "reachable without a gateway"
    # A gateway and a route: SSH works.
    igw = open_to_internet(aws, vpc)
    wait_ssh(public, key, kiln)
    # Delete the route: SSH stops within a reconcile pass.
    table = main_table(aws, vpc)
    ok(aws, "ec2", "delete-route", "--route-table-id", table, "--destination-cidr-block", "0.0.0.0/0")
    wait_for("the public address to stop answering", lambda: not tcp_open(public, 22, timeout=2), 30, interval=1)
    # Back again, then an Elastic IP takes over.
    ok(aws, "ec2", "create-route", "--route-table-id", table, "--destination-cidr-block", "0.0.0.0/0",
       "--gateway-id", igw)
    eip = alloc["PublicIp"]
    assoc = ok(aws, "ec2", "associate-address", "--allocation-id", alloc["AllocationId"], "--instance-id", d)
    assert assoc["AssociationId"].startswith("eipassoc-")
    assert instance(aws, d)["PublicIpAddress"] == eip
    owner = instance(aws, d)["NetworkInterfaces"][0]["Association"]["IpOwnerId"]
    assert owner.isdigit() and len(owner) == 12, f"an Elastic IP is the account's, not {owner}"
    wait_ssh(eip, key, kiln)
    out = ssh(eip, key, "ip -4 -o addr show eth0")
    assert f"inet {private}/" in out.stdout, out
    # Stop and start: the same Elastic IP, working again.
    ok(aws, "ec2", "stop-instances", "--instance-ids", d)
    rc, _, err = aws("ec2", "wait", "instance-stopped", "--instance-ids", d, timeout=BOOT)
    assert rc == 0, err
    assert instance(aws, d)["PublicIpAddress"] == eip
    ok(aws, "ec2", "start-instances", "--instance-ids", d)
    rc, _, err = aws("ec2", "wait", "instance-running", "--instance-ids", d, timeout=BOOT)
    assert rc == 0, err
    wait_ssh(eip, key, kiln)
    # A network ACL deny entry on port 22 blocks SSH though the group allows it;
    # deleting the entry lets it through again.
    acl = ok(aws, "ec2", "describe-network-acls", "--filters", f"Name=vpc-id,Values={vpc}",
             "Name=default,Values=true")["NetworkAcls"][0]["NetworkAclId"]
    ok(aws, "ec2", "create-network-acl-entry", "--network-acl-id", acl, "--rule-number", "50", "--protocol", "6",
       "--rule-action", "deny", "--ingress", "--cidr-block", "0.0.0.0/0", "--port-range", "From=22,To=22")
    wait_for("the ACL to block SSH", lambda: not tcp_open(eip, 22, timeout=2), 30, interval=1)
    ok(aws, "ec2", "delete-network-acl-entry", "--network-acl-id", acl, "--rule-number", "50", "--ingress")
    wait_ssh(eip, key, kiln)
    # A DHCP options set: the guest's next lease carries its domain and name servers.
    dopt = ok(aws, "ec2", "create-dhcp-options", "--dhcp-configurations",
              "Key=domain-name,Values=corp.example", "Key=domain-name-servers,Values=AmazonProvidedDNS,192.0.2.53")[
        "DhcpOptions"]["DhcpOptionsId"]
    STATE["dopt"] = dopt
    ok(aws, "ec2", "associate-dhcp-options", "--dhcp-options-id", dopt, "--vpc-id", vpc)
    before = console(aws, d)
    ok(aws, "ec2", "reboot-instances", "--instance-ids", d)
    wait_for("the reboot to begin", lambda: console(aws, d) != before, 60, interval=1)
    wait_ssh(eip, key, kiln)
    resolv = wait_for("the new lease", lambda: (lambda t: t if "corp.example" in t else None)(
        ssh(eip, key, "cat /etc/resolv.conf").stdout), 60, interval=2)
    assert "search corp.example" in resolv and "nameserver 10.78.0.2" in resolv and "192.0.2.53" in resolv, resolv
    ok(aws, "ec2", "associate-dhcp-options", "--dhcp-options-id", "default", "--vpc-id", vpc)
    # A second network interface: hot-plugged into the running VM, the guest takes its
    # address by DHCP on it, and detaching takes it out of the guest again.
    eni = ok(aws, "ec2", "create-network-interface", "--subnet-id", subnet, "--groups", group, "--description",
             "second")["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    STATE["eni"] = eni_id
    assert eni["Status"] == "available" and eni["Description"] == "second", eni

    def eni_state():
        n = ok(aws, "ec2", "describe-network-interfaces", "--network-interface-ids", eni_id)["NetworkInterfaces"][0]
        return (n.get("Attachment") or {}).get("Status", n["Status"])

    attach = ok(aws, "ec2", "attach-network-interface", "--network-interface-id", eni_id, "--instance-id", d,
                "--device-index", "1")
    wait_for("the interface to be attached", lambda: eni_state() == "attached", 30, interval=1)
    wait_for("eth1 in the guest", lambda: "eth1" in ssh(eip, key, "ls /sys/class/net").stdout, 30, interval=1)
    out = ssh(eip, key, "sudo udhcpc -i eth1 -s /etc/kiln/udhcpc -q -n -t 5 -T 2 >/dev/null 2>&1; "
                        "ip -4 -o addr show eth1; sudo ping -c 1 -W 3 -I eth1 10.78.1.1")
    assert f"inet {eni['PrivateIpAddress']}/24" in out.stdout and " 0% packet loss" in out.stdout, out
    shown = {n["NetworkInterfaceId"]: n["Attachment"]["DeviceIndex"] for n in instance(aws, d)["NetworkInterfaces"]}
    assert shown.get(eni_id) == 1 and len(shown) == 2, shown
    rc, _, err = aws("ec2", "delete-network-interface", "--network-interface-id", eni_id)
    assert rc != 0 and "InvalidNetworkInterface.InUse" in err, err
    ok(aws, "ec2", "detach-network-interface", "--attachment-id", attach["AttachmentId"])
    wait_for("the interface to be available", lambda: eni_state() == "available", 30, interval=1)
    assert "eth1" not in ssh(eip, key, "ls /sys/class/net").stdout
    wait_ssh(eip, key, kiln)
    ok(aws, "ec2", "delete-network-interface", "--network-interface-id", eni_id)
    del STATE["eni"]
    # A gateway with mapped addresses is not detached.
    rc, _, err = aws("ec2", "detach-internet-gateway", "--internet-gateway-id", igw, "--vpc-id", vpc)
    assert rc != 0 and "DependencyViolation" in err, err
    # Disassociated, the instance gets a pool address again; the EIP is released.
    ok(aws, "ec2", "disassociate-address", "--association-id", assoc["AssociationId"])
    fresh = wait_for("a pool address again", lambda: (instance(aws, d).get("PublicIpAddress") or "") != eip
                     and instance(aws, d).get("PublicIpAddress"), 30)
    assert fresh.startswith(POOL_PREFIX)
    ok(aws, "ec2", "release-address", "--allocation-id", alloc["AllocationId"])
    del STATE["eip"]


def test_a_second_vpc_cannot_reach_the_first(aws, kiln, quickstart_images):
    need("a_public", "a_private", "b_private", "key")
    key = STATE["key"]
    # Same VPC: A reaches B's private address on port 22 (the group allows it).
    out = ssh(STATE["a_public"], key, f"echo | nc -w 3 {STATE['b_private']} 22")
    assert "SSH-" in out.stdout, out
    vpc = ok(aws, "ec2", "create-vpc", "--cidr-block", "10.77.0.0/16")["Vpc"]["VpcId"]
    STATE["vpc"] = vpc
    subnet = ok(aws, "ec2", "create-subnet", "--vpc-id", vpc, "--cidr-block", "10.77.1.0/24")["Subnet"]["SubnetId"]
    # Reachable from the host only through an internet gateway and a route to it.
    open_to_internet(aws, vpc)
    group = ok(aws, "ec2", "create-security-group", "--group-name", "other", "--description", "second vpc", "--vpc-id",
               vpc)["GroupId"]
    STATE["groups"].append(group)
    ok(aws, "ec2", "authorize-security-group-ingress", "--group-id", group, "--protocol", "-1", "--cidr", "0.0.0.0/0")
    c = launch(aws, quickstart_images["x86_64"]["ImageId"], STATE["name"], group,
               extra=("--subnet-id", subnet, "--associate-public-ip-address"))
    STATE["instances"].append(c)
    rc, _, err = aws("ec2", "wait", "instance-running", "--instance-ids", c, timeout=BOOT)
    assert rc == 0, err
    desc = instance(aws, c)
    assert desc["PrivateIpAddress"].startswith("10.77.1.")
    c_public = desc["PublicIpAddress"]
    wait_ssh(c_public, key, kiln)
    out = ssh(c_public, key, f"echo | nc -w 3 {STATE['a_private']} 22; echo exit=$?")
    assert "SSH-" not in out.stdout, f"the second VPC reached the first: {out.stdout}"
    assert "exit=" in out.stdout, out


def test_everything_goes_with_its_instances(aws):
    need("instances")
    ids = STATE["instances"]
    vpcs = {instance(aws, i)["VpcId"] for i in ids}
    assert vpcs, "no instance had a VPC"
    ok(aws, "ec2", "terminate-instances", "--instance-ids", *ids)
    rc, _, err = aws("ec2", "wait", "instance-terminated", "--instance-ids", *ids, timeout=BOOT)
    assert rc == 0, err

    def gone():
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return not any(v in names for v in vpcs)

    wait_for("the VPCs' namespaces to go", gone, 20, interval=0.5)

    def routes_gone():
        # The pool's routes (each address's, and the pool's unreachable one) go with
        # the last network, just after its namespace.
        return POOL_PREFIX not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout

    wait_for("the pool's routes to go", routes_gone, 10, interval=0.5)
    if "ami" in STATE:
        ok(aws, "ec2", "deregister-image", "--image-id", STATE["ami"])
    for g in STATE["groups"]:
        ok(aws, "ec2", "delete-security-group", "--group-id", g)
    if "eip" in STATE:
        ok(aws, "ec2", "release-address", "--allocation-id", STATE["eip"])
    if "dopt" in STATE:
        ok(aws, "ec2", "delete-dhcp-options", "--dhcp-options-id", STATE["dopt"])
    if "eni" in STATE:
        ok(aws, "ec2", "delete-network-interface", "--network-interface-id", STATE["eni"])
    for key in ("vpc", "routed_vpc"):
        if key in STATE:
            close_vpc(aws, STATE[key])
    ok(aws, "ec2", "delete-key-pair", "--key-name", STATE["name"])
