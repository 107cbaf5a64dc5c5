"""Terraform's AWS provider as a real client, where the machine has both: `terraform`
on the PATH and the hashicorp/aws provider in a local mirror (KILN_TF_PLUGINS, default
/opt/tf-plugins; this machine reaches no Terraform registry). The stack of
terraform/main.tf is applied, SSH answers on its Elastic IP, a second plan is empty,
and destroy removes everything."""

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from story_helpers import wait_ssh

STACK = Path(__file__).parent / "terraform"
PLUGINS = Path(os.environ.get("KILN_TF_PLUGINS", "/opt/tf-plugins"))
PROVIDER = PLUGINS / "registry.terraform.io" / "hashicorp" / "aws"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="VPC networking needs root"),
    pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform on this machine"),
    pytest.mark.skipif(not PROVIDER.is_dir(), reason=f"no hashicorp/aws provider under {PLUGINS}"),
]


def test_terraform_applies_and_destroys_the_network_stack(kiln, ec2, quickstart_images, tmp_path):
    work = tmp_path / "stack"
    shutil.copytree(STACK, work)
    version = sorted(p.name for p in PROVIDER.iterdir())[-1]
    (work / "main.tf").write_text((work / "main.tf").read_text().replace('"5.100.0"', f'"{version}"'))
    (tmp_path / "cli.tfrc").write_text(
        'provider_installation {\n'
        f'  filesystem_mirror {{\n    path = "{PLUGINS}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n'
    )
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = f"tf-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(tmp_path / "cli.tfrc"), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    variables = {
        "endpoint": kiln.endpoint,
        "credentials": str(kiln.credentials_file),
        "name": name,
        "public_key": (tmp_path / "key.pub").read_text().strip(),
        "cidr_prefix": "10.94",
    }
    args = [f"-var={k}={v}" for k, v in variables.items()]

    def tf(*cmd, timeout=900):
        return subprocess.run(["terraform", *cmd], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)

    p = tf("init", "-input=false", "-no-color")
    assert p.returncode == 0, p.stdout + p.stderr
    applied = False
    try:
        p = tf("apply", "-auto-approve", "-input=false", "-no-color", *args)
        assert p.returncode == 0, f"apply failed:\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}"
        applied = True
        out = json.loads(tf("output", "-json").stdout)
        ip, instance = out["public_ip"]["value"], out["instance_id"]["value"]
        desc = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        assert desc["PublicIpAddress"] == ip
        assert (desc["Placement"]["GroupName"], desc["Placement"]["PartitionNumber"]) == (name, 2)
        assert desc["Placement"]["GroupId"] == out["placement_group_id"]["value"]
        vol = ec2.describe_volumes(VolumeIds=[out["volume_id"]["value"]])["Volumes"][0]
        assert [(a["InstanceId"], a["Device"], a["State"]) for a in vol["Attachments"]] == [(instance, "/dev/sdf", "attached")]
        templated = ec2.describe_instances(InstanceIds=[out["templated_id"]["value"]])["Reservations"][0]["Instances"][0]
        tags = {t["Key"]: t["Value"] for t in templated["Tags"]}
        assert tags["aws:ec2launchtemplate:id"] == out["template_id"]["value"]
        assert tags["Name"] == f"{name}-templated" and templated["MetadataOptions"]["HttpTokens"] == "required"
        wait_ssh(ip, key, kiln)
        # What was applied is what Kiln reads back: a second plan has nothing to do.
        p = tf("plan", "-detailed-exitcode", "-input=false", "-no-color", *args)
        assert p.returncode == 0, f"the second plan is not empty:\n{p.stdout[-6000:]}\n{p.stderr[-3000:]}"
    finally:
        if applied or (work / "terraform.tfstate").exists():
            p = tf("destroy", "-auto-approve", "-input=false", "-no-color", *args)
            assert p.returncode == 0, f"destroy failed:\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}"
    assert not ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [name]}])["Vpcs"]
    assert ip not in {a["PublicIp"] for a in ec2.describe_addresses()["Addresses"]}
