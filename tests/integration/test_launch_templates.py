"""Launch templates: versions with $Latest and $Default, EC2's errors changing nothing,
two accounts kept apart, and real launches from a template with RunInstances
overriding it (boto3, the AWS CLI and `kiln run --template`)."""

import base64
import json
import os
import subprocess
import uuid

import pytest

from conftest import KILN_BIN
from kiln_helpers import expect_error

ZONE = "us-east-1a"


def name(prefix="lt"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def versions(ec2, **kw):
    return ec2.describe_launch_template_versions(**kw)["LaunchTemplateVersions"]


def test_versions_defaults_and_errors(ec2, ec2_other):
    n = name()
    data = {
        "ImageId": "ami-0123456789abcdef0",
        "InstanceType": "t3.micro",
        "KeyName": "k",
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
        "UserData": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 2},
        "BlockDeviceMappings": [{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3",
                                                                  "Iops": 3000, "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}]}],
        "Placement": {"AvailabilityZone": ZONE},
        "CreditSpecification": {"CpuCredits": "unlimited"},
        "DisableApiTermination": False,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "IamInstanceProfile": {"Name": "web-role"},
    }
    token = uuid.uuid4().hex
    t = ec2.create_launch_template(LaunchTemplateName=n, VersionDescription="first", LaunchTemplateData=data,
                                   ClientToken=token,
                                   TagSpecifications=[{"ResourceType": "launch-template",
                                                       "Tags": [{"Key": "Name", "Value": n}]}])["LaunchTemplate"]
    tid = t["LaunchTemplateId"]
    try:
        assert tid.startswith("lt-") and (t["DefaultVersionNumber"], t["LatestVersionNumber"]) == (1, 1)
        assert t["Tags"] == [{"Key": "Name", "Value": n}]
        assert t["CreatedBy"].endswith(":root")
        # The same ClientToken answers the same template.
        again = ec2.create_launch_template(LaunchTemplateName=n, LaunchTemplateData=data, ClientToken=token)
        assert again["LaunchTemplate"]["LaunchTemplateId"] == tid

        v1 = versions(ec2, LaunchTemplateId=tid)[0]
        d = v1["LaunchTemplateData"]
        assert (v1["VersionNumber"], v1["DefaultVersion"], v1["VersionDescription"]) == (1, True, "first")
        assert d["ImageId"] == data["ImageId"] and d["InstanceType"] == "t3.micro"
        assert d["SecurityGroupIds"] == data["SecurityGroupIds"] and d["UserData"] == data["UserData"]
        assert d["MetadataOptions"]["HttpTokens"] == "required" and d["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
        assert d["BlockDeviceMappings"][0]["Ebs"] == {"VolumeSize": 2, "VolumeType": "gp3", "Iops": 3000,
                                                     "DeleteOnTermination": True}
        assert d["TagSpecifications"] == data["TagSpecifications"]
        assert d["CreditSpecification"] == {"CpuCredits": "unlimited"}
        assert d["IamInstanceProfile"] == {"Name": "web-role"}, "recorded, shown back"

        # A version from a source: what it gives replaces, the rest is inherited.
        v2 = ec2.create_launch_template_version(LaunchTemplateName=n, SourceVersion="1",
                                                LaunchTemplateData={"InstanceType": "t3.small"})
        v2 = v2["LaunchTemplateVersion"]
        assert (v2["VersionNumber"], v2["DefaultVersion"]) == (2, False)
        assert v2["LaunchTemplateData"]["InstanceType"] == "t3.small"
        assert v2["LaunchTemplateData"]["ImageId"] == data["ImageId"]
        # Without a source, only what is given.
        v3 = ec2.create_launch_template_version(LaunchTemplateId=tid, LaunchTemplateData={"InstanceType": "t3.nano"})
        assert v3["LaunchTemplateVersion"]["LaunchTemplateData"] == {"InstanceType": "t3.nano"}

        latest = versions(ec2, LaunchTemplateId=tid, Versions=["$Latest"])
        default = versions(ec2, LaunchTemplateName=n, Versions=["$Default"])
        assert [v["VersionNumber"] for v in latest] == [3] and [v["VersionNumber"] for v in default] == [1]
        assert [v["VersionNumber"] for v in versions(ec2, LaunchTemplateId=tid, MinVersion="2")] == [2, 3]
        assert [v["VersionNumber"] for v in versions(ec2, LaunchTemplateId=tid, MaxVersion="2")] == [1, 2]
        filtered = versions(ec2, LaunchTemplateId=tid, Filters=[{"Name": "instance-type", "Values": ["t3.small"]}])
        assert [v["VersionNumber"] for v in filtered] == [2]
        everywhere = versions(ec2, Versions=["$Default"])
        assert any(v["LaunchTemplateId"] == tid and v["VersionNumber"] == 1 for v in everywhere)
        page = ec2.describe_launch_template_versions(LaunchTemplateId=tid, MaxResults=2)
        rest = ec2.describe_launch_template_versions(LaunchTemplateId=tid, MaxResults=2, NextToken=page["NextToken"])
        assert [v["VersionNumber"] for v in page["LaunchTemplateVersions"] + rest["LaunchTemplateVersions"]] == [1, 2, 3]

        m = ec2.modify_launch_template(LaunchTemplateId=tid, DefaultVersion="2")["LaunchTemplate"]
        assert (m["DefaultVersionNumber"], m["LatestVersionNumber"]) == (2, 3)
        listed = ec2.describe_launch_templates(Filters=[{"Name": "tag:Name", "Values": [n]}])["LaunchTemplates"]
        assert [x["LaunchTemplateId"] for x in listed] == [tid]
        assert ec2.describe_launch_templates(LaunchTemplateNames=[n])["LaunchTemplates"][0]["DefaultVersionNumber"] == 2

        # Bad input: EC2's codes, and nothing changes.
        expect_error("InvalidLaunchTemplateName.AlreadyExistsException", ec2.create_launch_template,
                     LaunchTemplateName=n, LaunchTemplateData=data, status=400)
        expect_error("InvalidLaunchTemplateName.MalformedException", ec2.create_launch_template,
                     LaunchTemplateName="a b", LaunchTemplateData=data)
        expect_error("InvalidLaunchTemplateName.NotFoundException", ec2.describe_launch_templates,
                     LaunchTemplateNames=[name("missing")])
        expect_error("InvalidLaunchTemplateId.NotFound", ec2.describe_launch_templates,
                     LaunchTemplateIds=["lt-0123456789abcdef0"])
        expect_error("InvalidLaunchTemplateId.Malformed", ec2.describe_launch_templates, LaunchTemplateIds=["lt-x"])
        expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.describe_launch_template_versions,
                     LaunchTemplateId=tid, Versions=["9"])
        expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.modify_launch_template,
                     LaunchTemplateId=tid, DefaultVersion="9")
        expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.create_launch_template_version,
                     LaunchTemplateId=tid, SourceVersion="9", LaunchTemplateData={"InstanceType": "t3.micro"})
        expect_error("InvalidParameterValue", ec2.create_launch_template_version, LaunchTemplateId=tid,
                     LaunchTemplateData={"InstanceType": "t9.enormous"})
        expect_error("InvalidAMIID.Malformed", ec2.create_launch_template_version, LaunchTemplateId=tid,
                     LaunchTemplateData={"ImageId": "image-1"})
        expect_error("InvalidParameterValue", ec2.create_launch_template_version, LaunchTemplateId=tid,
                     LaunchTemplateData={"ElasticGpuSpecifications": [{"Type": "eg1.medium"}]})
        expect_error("InvalidParameterValue", ec2.create_launch_template_version, LaunchTemplateId=tid,
                     LaunchTemplateData={"TagSpecifications": [{"ResourceType": "vpc",
                                                                "Tags": [{"Key": "a", "Value": "b"}]}]})
        expect_error("DryRunOperation", ec2.create_launch_template_version, LaunchTemplateId=tid, DryRun=True,
                     LaunchTemplateData={"InstanceType": "t3.micro"})
        expect_error("DryRunOperation", ec2.delete_launch_template, LaunchTemplateId=tid, DryRun=True)
        assert ec2.describe_launch_templates(LaunchTemplateIds=[tid])["LaunchTemplates"][0]["LatestVersionNumber"] == 3

        # Another account sees nothing and changes nothing.
        expect_error("InvalidLaunchTemplateId.NotFound", ec2_other.describe_launch_templates, LaunchTemplateIds=[tid])
        expect_error("InvalidLaunchTemplateName.NotFoundException", ec2_other.delete_launch_template,
                     LaunchTemplateName=n)
        expect_error("InvalidLaunchTemplateId.NotFound", ec2_other.create_launch_template_version,
                     LaunchTemplateId=tid, LaunchTemplateData={"InstanceType": "t3.micro"})
        other = ec2_other.create_launch_template(LaunchTemplateName=n, LaunchTemplateData={"InstanceType": "t3.micro"})
        ec2_other.delete_launch_template(LaunchTemplateId=other["LaunchTemplate"]["LaunchTemplateId"])

        # Deleting versions: the default stays, a missing one is said so, others go.
        out = ec2.delete_launch_template_versions(LaunchTemplateId=tid, Versions=["1", "2", "7"])
        assert [v["VersionNumber"] for v in out["SuccessfullyDeletedLaunchTemplateVersions"]] == [1]
        bad = {v["VersionNumber"]: v["ResponseError"]["Code"] for v in out["UnsuccessfullyDeletedLaunchTemplateVersions"]}
        assert bad == {2: "unexpectedError", 7: "launchTemplateVersionDoesNotExist"}
        assert [v["VersionNumber"] for v in versions(ec2, LaunchTemplateId=tid)] == [2, 3]
        v4 = ec2.create_launch_template_version(LaunchTemplateId=tid, LaunchTemplateData={"InstanceType": "t3.micro"})
        assert v4["LaunchTemplateVersion"]["VersionNumber"] == 4, "deleted numbers are not given again"
    finally:
        gone = ec2.delete_launch_template(LaunchTemplateId=tid)["LaunchTemplate"]
    assert gone["LaunchTemplateName"] == n
    expect_error("InvalidLaunchTemplateId.NotFound", ec2.describe_launch_templates, LaunchTemplateIds=[tid])
    assert not ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [tid]}])["Tags"]


def test_run_instances_from_a_template_with_overrides(kiln, ec2, quickstart_images, aws):
    image = quickstart_images["x86_64"]["ImageId"]
    n = name()
    key = name("key")
    ec2.create_key_pair(KeyName=key, KeyType="ed25519")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=name("group"), Description="lt", VpcId=vpc)["GroupId"]
    t = ec2.create_launch_template(LaunchTemplateName=n, LaunchTemplateData={
        "ImageId": image, "InstanceType": "t3.micro", "KeyName": key, "SecurityGroupIds": [group],
        "MetadataOptions": {"HttpTokens": "required"},
        "Placement": {"AvailabilityZone": ZONE},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "from-template"},
                                                                   {"Key": "team", "Value": "a"}]}],
    })["LaunchTemplate"]
    tid = t["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=tid, SourceVersion="$Latest",
                                       LaunchTemplateData={"InstanceType": "t3.small"})
    made = []
    try:
        # $Latest (version 2), with the request's tag winning over the template's.
        r = ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate={"LaunchTemplateName": n, "Version": "$Latest"},
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "b"}]}])
        i = r["Instances"][0]
        made.append(i["InstanceId"])
        assert (i["ImageId"], i["InstanceType"], i["KeyName"]) == (image, "t3.small", key)
        assert [g["GroupId"] for g in i["SecurityGroups"]] == [group]
        assert i["Placement"]["AvailabilityZone"] == ZONE
        assert i["MetadataOptions"]["HttpTokens"] == "required"
        tags = {x["Key"]: x["Value"] for x in i["Tags"]}
        assert tags == {"Name": "from-template", "team": "b", "aws:ec2launchtemplate:id": tid,
                        "aws:ec2launchtemplate:version": "2"}
        # The default version ($Default is 1), with the type overridden, by id.
        r = ec2.run_instances(MinCount=1, MaxCount=1, InstanceType="t3.nano", LaunchTemplate={"LaunchTemplateId": tid})
        j = r["Instances"][0]
        made.append(j["InstanceId"])
        assert j["InstanceType"] == "t3.nano"
        assert {x["Key"]: x["Value"] for x in j["Tags"]}["aws:ec2launchtemplate:version"] == "1"
        ec2.get_waiter("instance_running").wait(InstanceIds=made, WaiterConfig={"Delay": 2, "MaxAttempts": 90})

        # GetLaunchTemplateData reads a running instance back as template data.
        got = ec2.get_launch_template_data(InstanceId=made[0])["LaunchTemplateData"]
        assert (got["ImageId"], got["InstanceType"], got["KeyName"]) == (image, "t3.small", key)
        assert got["NetworkInterfaces"][0]["Groups"] == [group]
        assert got["MetadataOptions"]["HttpTokens"] == "required"
        assert got["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True
        assert {"Key": "team", "Value": "b"} in got["TagSpecifications"][0]["Tags"]

        # A version that does not exist launches nothing.
        before = len(ec2.describe_instances(Filters=[{"Name": "tag:aws:ec2launchtemplate:id", "Values": [tid]}])
                     ["Reservations"])
        expect_error("InvalidLaunchTemplateId.VersionNotFound", ec2.run_instances, MinCount=1, MaxCount=1,
                     LaunchTemplate={"LaunchTemplateId": tid, "Version": "9"})
        expect_error("InvalidLaunchTemplateName.NotFoundException", ec2.run_instances, MinCount=1, MaxCount=1,
                     LaunchTemplate={"LaunchTemplateName": name("missing")})
        after = len(ec2.describe_instances(Filters=[{"Name": "tag:aws:ec2launchtemplate:id", "Values": [tid]}])
                    ["Reservations"])
        assert before == after == 2

        # The AWS CLI: describe, and a dry run of a launch from the template.
        rc, out, err = aws("ec2", "describe-launch-template-versions", "--launch-template-id", tid,
                           "--versions", "$Latest")
        assert rc == 0, err
        assert out["LaunchTemplateVersions"][0]["LaunchTemplateData"]["InstanceType"] == "t3.small"
        rc, out, err = aws("ec2", "run-instances", "--launch-template", f"LaunchTemplateName={n},Version=2",
                           "--count", "1", "--dry-run")
        assert rc != 0 and "DryRunOperation" in err, err
        rc, out, err = aws("ec2", "run-instances", "--launch-template", f"LaunchTemplateId={tid},Version=0",
                           "--count", "1")
        assert rc != 0 and "InvalidLaunchTemplateId.VersionNotFound" in err, err

        # `kiln run --template NAME:VERSION`, overriding the type.
        p = subprocess.run([KILN_BIN, "run", "--template", f"{n}:1", "--type", "t3.nano", "--endpoint", kiln.endpoint,
                            "--output", "json"], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        listed = json.loads(p.stdout)
        made.extend(x["id"] for x in listed)
        k = ec2.describe_instances(InstanceIds=[listed[0]["id"]])["Reservations"][0]["Instances"][0]
        assert k["InstanceType"] == "t3.nano" and k["ImageId"] == image
        assert {x["Key"]: x["Value"] for x in k["Tags"]}["aws:ec2launchtemplate:version"] == "1"
    finally:
        if made:
            ec2.terminate_instances(InstanceIds=made)
            ec2.get_waiter("instance_terminated").wait(InstanceIds=made, WaiterConfig={"Delay": 2, "MaxAttempts": 60})
        ec2.delete_launch_template(LaunchTemplateId=tid)
        ec2.delete_security_group(GroupId=group)
        ec2.delete_key_pair(KeyName=key)
