"""The full Debian image, end to end: `kiln image build debian-12-amd64` (mmdebstrap from
Debian's mirror, a few minutes), then an instance of it whose cloud-init finds Kiln's
EC2 metadata service, installs the key pair for `admin` and runs user data.

Slow (a build and a full systemd boot under TCG); set KILN_SKIP_SLOW=1 to skip it.
"""

import os
import subprocess
import time
import uuid

import pytest

from conftest import KILN_BIN

pytestmark = pytest.mark.skipif(os.environ.get("KILN_SKIP_SLOW") == "1", reason="KILN_SKIP_SLOW=1")


def _console(ec2, instance_id) -> str:
    return ec2.get_console_output(InstanceId=instance_id).get("Output", "")


def test_debian_12_builds_boots_and_runs_cloud_init(kiln, ec2):
    # Built with the CLI, as an operator would, while the server runs.
    started = time.time()
    out = subprocess.run(
        [KILN_BIN, "image", "build", "debian-12-amd64", "--data-dir", str(kiln.data_dir), "--region", "us-east-1", "--public"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4/5 taking the kernel and initramfs" in out.stderr, "the build shows its progress"
    image_id = out.stdout.split()[-1]
    print(f"\n[debian] built and registered {image_id} in {time.time() - started:.0f} s")
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert image["State"] == "available"
    assert image["Name"].startswith("debian-12-amd64-")
    assert image["Architecture"] == "x86_64"

    key_name = f"deb-{uuid.uuid4().hex[:8]}"
    ec2.create_key_pair(KeyName=key_name, KeyType="ed25519")
    marker = f"KILN-USERDATA-{uuid.uuid4().hex[:8]}"
    user_data = f"#!/bin/sh\necho {marker} > /dev/console\n"
    instance_id = ec2.run_instances(
        ImageId=image_id, InstanceType="t3.small", MinCount=1, MaxCount=1, KeyName=key_name, UserData=user_data
    )["Instances"][0]["InstanceId"]
    try:
        booted = time.time()
        console = ""
        while time.time() - booted < 600:
            console = _console(ec2, instance_id)
            if "Cloud-init v." in console and "finished at" in console and marker in console:
                break
            time.sleep(5)
        print(f"[debian] cloud-init finished {time.time() - booted:.0f} s after RunInstances")
        assert "Datasource DataSourceEc2" in console, console[-3000:]
        assert "Authorized keys from /home/admin/.ssh/authorized_keys for user admin" in console, console[-3000:]
        assert key_name in console, "the key pair reached admin"
        assert marker in console, "user data ran"
        status = ec2.describe_instance_status(InstanceIds=[instance_id])["InstanceStatuses"][0]
        assert status["InstanceStatus"]["Status"] == "ok"
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        ec2.delete_key_pair(KeyName=key_name)
    waiter = ec2.get_waiter("instance_terminated")
    waiter.wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 2, "MaxAttempts": 60})
