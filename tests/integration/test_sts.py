"""STS on Kiln's endpoint: GetCallerIdentity answers each account's own identity to
boto3 and the AWS CLI (tools and SDK fixtures ask it first); other STS actions get
InvalidAction in STS's error envelope."""

import boto3
import botocore.exceptions
import pytest

from kiln_helpers import CLIENT_CONFIG


def sts(kiln, profile):
    session = boto3.session.Session(profile_name=profile)
    return session.client("sts", region_name="us-east-1", endpoint_url=kiln.endpoint, config=CLIENT_CONFIG)


def owner(ec2):
    return ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["OwnerId"]


def test_get_caller_identity_names_each_account(kiln, ec2, ec2_other):
    me, other = owner(ec2), owner(ec2_other)
    assert me != other
    mine = sts(kiln, "default").get_caller_identity()
    assert mine["Account"] == me
    assert mine["Arn"] == f"arn:aws:iam::{me}:root"
    assert mine["UserId"] == me
    assert sts(kiln, "other").get_caller_identity()["Account"] == other


def test_the_cli_asks_sts_on_the_same_endpoint(aws, ec2):
    rc, data, err = aws("sts", "get-caller-identity")
    assert rc == 0, err
    assert data["Account"] == owner(ec2)


def test_other_sts_actions_are_invalid_in_sts_format(kiln):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts(kiln, "default").get_session_token()
    assert e.value.response["Error"]["Code"] == "InvalidAction"
    assert "GetCallerIdentity" in e.value.response["Error"]["Message"]


def test_a_bad_signature_is_refused_in_sts_format(kiln):
    session = boto3.session.Session(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="nope")
    client = session.client("sts", region_name="us-east-1", endpoint_url=kiln.endpoint, config=CLIENT_CONFIG)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.get_caller_identity()
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
