"""Egress to the outside through NAT on the host. The outside is a network namespace
this test makes (198.51.100.0/24, TEST-NET-2, behind a veth pair), so nothing leaves
the machine. A server of its own runs with egress NAT on (the session server has it
off). An instance with a public address reaches the outside, masqueraded as the host;
one without a public address does not (as on EC2 without a NAT gateway).
"""

import os
import subprocess
import time

import pytest

from instances_helpers import Server, console, wait_for, waiter
from kiln_helpers import remove_host_state

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="VPC networking needs root")

NS = "kiln-test-outside"
HOST_END, OUTSIDE = "198.51.100.1", "198.51.100.2"
BOOT = 240


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """An HTTP server in the outside namespace; yields the file its requests are logged to."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True)
    subprocess.run(["ip", "link", "del", "kto0"], capture_output=True)
    work = tmp_path_factory.mktemp("outside")
    log = work / "requests.log"
    sh("ip", "netns", "add", NS)
    server = None
    try:
        sh("ip", "link", "add", "kto0", "type", "veth", "peer", "name", "eth0", "netns", NS)
        sh("ip", "addr", "add", f"{HOST_END}/24", "dev", "kto0")
        sh("ip", "link", "set", "kto0", "up")
        sh("ip", "-n", NS, "addr", "add", f"{OUTSIDE}/24", "dev", "eth0")
        sh("ip", "-n", NS, "link", "set", "eth0", "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        sh("ip", "-n", NS, "route", "add", "default", "via", HOST_END)
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS, "python3", "-m", "http.server", "8080", "--bind", OUTSIDE],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),
        )
        yield log
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", "kto0"], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


def run_one(ec2, image, **kwargs):
    r = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, **kwargs)
    return r["Instances"][0]["InstanceId"]


def probe(path):
    return (
        "#!/bin/sh\n"
        "for i in 1 2 3 4 5; do\n"
        f"  r=$(printf 'GET /{path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {OUTSIDE} 8080 | head -n 1)\n"
        '  [ -n "$r" ] && break; sleep 1\n'
        "done\n"
        'echo "kiln-test: outside said: $r." > /dev/console\n'
    )


def test_public_instances_reach_the_outside_through_nat(outside):
    srv = Server(pool="100.64.3.0/24", egress_nat=True)
    srv.start()
    ids = []
    try:
        ec2 = srv.client("default")
        image = wait_for(
            "the kiln-tiny x86_64 image",
            lambda: next(
                (i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                 if i["Architecture"] == "x86_64" and i["State"] == "available"),
                None,
            ),
            600,
            2,
            diag=srv.log_tail,
        )
        public = run_one(ec2, image, UserData=probe("from-public"))
        ids.append(public)
        private = run_one(
            ec2,
            image,
            UserData=probe("from-private"),
            NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": False}],
        )
        ids.append(private)
        said = {}
        for i in ids:
            said[i] = wait_for(
                f"the probe of {i}",
                lambda i=i: next((l for l in console(ec2, i).splitlines() if "outside said:" in l), None),
                BOOT,
                2,
                diag=srv.log_tail,
            )
        assert "HTTP/1.0 404" in said[public], said[public]
        assert said[private].endswith("outside said: ."), "an instance without a public address reached out"
        requests = outside.read_text()
        assert f'{HOST_END} - - ' in requests and "GET /from-public" in requests, requests
        assert "from-private" not in requests, requests
        assert "100.64.3." not in requests and "172.31." not in requests, "the source was not masqueraded"
    finally:
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            waiter(ec2, "instance_terminated", ids, 90, srv)
            time.sleep(1)
        srv.stop()
        remove_host_state(srv.data_dir)
        srv.cleanup_dirs()
