"""Ansible's amazon.aws collection as a real client: a playbook builds a VPC, gateway,
subnet, route table and security group, launches kiln-tiny, gives it an Elastic IP,
logs in through it and makes an AMI; run twice, the second run changes nothing; a
second playbook tears everything down. The collection comes with the `ansible`
package from PyPI (tests/requirements.txt)."""

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

PLAYBOOKS = Path(__file__).parent / "ansible"
ANSIBLE = Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[2] / ".venv")) / "bin" / "ansible-playbook"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="VPC networking needs root"),
    pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible is not installed in the test venv"),
]


def play(kiln, playbook, tmp, **extra):
    """Runs a playbook against the session Kiln; returns (recap counts, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(kiln.credentials_file),
        AWS_CONFIG_FILE=str(kiln.config_file),
        ANSIBLE_HOME=str(tmp / "ansible-home"),
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=str(ANSIBLE.parent / "python"),
    )
    args = [str(ANSIBLE), "-i", "localhost,", "-c", "local", str(PLAYBOOKS / playbook)]
    for k, v in {"endpoint": kiln.endpoint, **extra}.items():
        args += ["-e", f"{k}={v}"]
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"ansible-playbook {playbook} failed:\n{out[-6000:]}"
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert recap, out[-3000:]
    ok, changed, unreachable, failed = map(int, recap.groups())
    return {"ok": ok, "changed": changed, "unreachable": unreachable, "failed": failed}, out


def test_ansible_builds_uses_and_tears_down_a_network_stack(kiln, ec2, quickstart_images, tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("no ssh client")
    stack = f"ans-{uuid.uuid4().hex[:8]}"
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    vars_ = {"stack": stack, "keyfile": key, "cidr_prefix": "10.93"}
    first, out = play(kiln, "build.yml", tmp_path, **vars_)
    assert first["changed"] >= 9, out[-3000:]
    # What it made is what EC2 would show.
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [stack]}])["Vpcs"][0]
    assert ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
    inst = ec2.describe_instances(
        Filters=[{"Name": "tag:Name", "Values": [stack]}, {"Name": "instance-state-name", "Values": ["running"]}]
    )["Reservations"][0]["Instances"][0]
    eip = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [inst["InstanceId"]]}])["Addresses"][0]
    assert inst["PublicIpAddress"] == eip["PublicIp"]
    assert ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [stack]}])["Images"]
    # The second run finds everything in place.
    second, out = play(kiln, "build.yml", tmp_path, **vars_)
    assert second["changed"] == 0, out[-4000:]
    _, out = play(kiln, "teardown.yml", tmp_path, **vars_)
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [stack]}])["Vpcs"]
    assert eip["PublicIp"] not in {a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]}
    assert not ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [stack]}])["Images"]
    state = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "terminated"
