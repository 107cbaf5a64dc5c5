"""The console's server side: `kiln account password`, sign-in for temporary
credentials (an access key, a secret and a session token) that SigV4 accepts with
X-Amz-Security-Token, a refused password, rate limiting, expiry, sign-out, and
sessions confined to their own account; the assets at /console/ and the redirect of a
browser opening the endpoint."""

import json
import subprocess
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import KILN_BIN
from kiln_helpers import expect_error, store

PASSWORD = "a console password"


def set_password(kiln, name, password):
    p = subprocess.run([KILN_BIN, "account", "password", name, "--data-dir", str(kiln.data_dir)],
                       input=password + "\n", capture_output=True, text=True, timeout=60)
    return p


def post(kiln, path, body):
    req = urllib.request.Request(kiln.endpoint + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def session_client(kiln, s, token=True):
    return boto3.client(
        "ec2", endpoint_url=kiln.endpoint, region_name="us-east-1",
        aws_access_key_id=s["accessKeyId"], aws_secret_access_key=s["secretAccessKey"],
        aws_session_token=s["sessionToken"] if token else None,
        config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def passwords(kiln):
    for name in ("operator", "other"):
        p = set_password(kiln, name, PASSWORD)
        assert p.returncode == 0, p.stderr
    return PASSWORD


def test_sign_in_gives_credentials_that_sigv4_accepts_until_sign_out(kiln, passwords, ec2):
    status, s = post(kiln, "/console/api/signin", {"account": "operator", "password": passwords})
    assert status == 200, s
    assert s["accessKeyId"].startswith("ASIA") and len(s["secretAccessKey"]) == 40 and s["sessionToken"]
    assert s["accountName"] == "operator" and s["accountId"] == ec2.describe_security_groups()[
        "SecurityGroups"][0]["OwnerId"]
    c = session_client(kiln, s)
    assert len(c.describe_regions()["Regions"]) == 33
    # The same key without its token, or with another, is refused.
    expect_error("AuthFailure", session_client(kiln, s, token=False).describe_regions)
    expect_error("AuthFailure", session_client(kiln, {**s, "sessionToken": "forged"}).describe_regions)
    # STS knows the caller too.
    sts = boto3.client("sts", endpoint_url=kiln.endpoint, region_name="us-east-1",
                       aws_access_key_id=s["accessKeyId"], aws_secret_access_key=s["secretAccessKey"],
                       aws_session_token=s["sessionToken"])
    assert sts.get_caller_identity()["Account"] == s["accountId"]
    # Sign-out revokes at once; a second sign-out is harmless.
    assert post(kiln, "/console/api/signout", {"accessKeyId": s["accessKeyId"],
                                               "sessionToken": s["sessionToken"]})[0] == 204
    expect_error("AuthFailure", c.describe_regions)
    assert post(kiln, "/console/api/signout", {"accessKeyId": s["accessKeyId"],
                                               "sessionToken": s["sessionToken"]})[0] == 204
    # The password is stored as an argon2 hash, never as itself.
    with store(kiln.data_dir) as db:
        stored = db.execute("SELECT console_password FROM accounts WHERE name = 'operator'").fetchone()[0]
    assert stored.startswith("$argon2id$") and passwords not in stored


def test_expired_credentials_get_expired_token(kiln, passwords):
    status, s = post(kiln, "/console/api/signin", {"account": "other", "password": passwords})
    assert status == 200, s
    c = session_client(kiln, s)
    c.describe_key_pairs()
    with store(kiln.data_dir) as db:
        db.execute("UPDATE console_sessions SET expires_at = '2020-01-01T00:00:00Z' WHERE access_key_id = ?",
                   (s["accessKeyId"],))
    expect_error("ExpiredToken", c.describe_key_pairs, status=400)


def test_sessions_act_only_on_their_own_account(kiln, passwords, ec2):
    name = f"console-{uuid.uuid4().hex[:8]}"
    ec2.create_key_pair(KeyName=name)
    try:
        status, s = post(kiln, "/console/api/signin", {"account": "other", "password": passwords})
        assert status == 200, s
        c = session_client(kiln, s)
        expect_error("InvalidKeyPair.NotFound", c.describe_key_pairs, KeyNames=[name])
        c.delete_key_pair(KeyName=name)  # EC2 answers success for a name it does not have
        assert ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"], "the operator's key is untouched"
    finally:
        ec2.delete_key_pair(KeyName=name)


def test_bad_passwords_are_refused_then_rate_limited(kiln, passwords):
    # An account of its own, so that shutting it out holds up no other test.
    name = f"locked-{uuid.uuid4().hex[:6]}"
    made = subprocess.run([KILN_BIN, "account", "create", name, "--data-dir", str(kiln.data_dir)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # A name with no password, an unknown name and a wrong password look the same.
    status, body = post(kiln, "/console/api/signin", {"account": name, "password": passwords})
    assert status == 401 and body["code"] == "AuthFailure", body
    p = set_password(kiln, name, "short")
    assert p.returncode != 0 and "8 to 128" in p.stderr
    assert set_password(kiln, name, passwords).returncode == 0
    for account, password in [(name, "wrong password"), ("nobody-here", passwords), (name, "")]:
        status, body = post(kiln, "/console/api/signin", {"account": account, "password": password})
        assert status == 401 and body["code"] == "AuthFailure", (account, status, body)
        assert "Incorrect account name or password" in body["message"]
    status, body = post(kiln, "/console/api/signin", {"account": name})
    assert status == 400 and body["code"] == "MissingParameter"
    # Five failures shut the name out for a while, even with the right password.
    for _ in range(2):
        post(kiln, "/console/api/signin", {"account": name, "password": "wrong again"})
    status, body = post(kiln, "/console/api/signin", {"account": name, "password": passwords})
    assert status == 429 and body["code"] == "Throttling", body
    # Another account is not shut out by it.
    status, body = post(kiln, "/console/api/signin", {"account": "other", "password": passwords})
    assert status == 200, body


def test_the_console_is_served_and_a_browser_is_sent_there(kiln):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(kiln.endpoint + "/", timeout=10)
    assert info.value.code in (302, 303) and info.value.headers["Location"] == "/console/"
    with urllib.request.urlopen(kiln.endpoint + "/console/", timeout=10) as r:
        page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "<html" in page.lower()
    # A client route is the app too; a path out of the console is not a file.
    with urllib.request.urlopen(kiln.endpoint + "/console/instances", timeout=10) as r:
        assert r.read().decode() == page
    with urllib.request.urlopen(kiln.endpoint + "/console/..%2f..%2fkiln.db", timeout=10) as r:
        assert r.read().decode() == page
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(kiln.endpoint + "/console/assets/gone-0000.js", timeout=10)
    assert info.value.code == 404
    # API requests, GET with a query included, are unaffected.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(kiln.endpoint + "/?Action=DescribeRegions&Version=2016-11-15", timeout=10)
    assert info.value.code in (400, 401, 403)
    assert b"<Code>" in info.value.read(), "an EC2 error document, not the console"


# --- the dashboard's capacity figures ---------------------------------------------------

KILN_ACCOUNT_ATTRS = ["kiln:vcpu-limit", "kiln:vcpus-in-use"]
KILN_HOST_ATTRS = ["kiln:host-vcpus", "kiln:host-vcpus-in-use", "kiln:host-memory-mib",
                   "kiln:host-memory-mib-in-use", "kiln:host-instances"]


def attribute_values(ec2, names):
    attrs = ec2.describe_account_attributes(AttributeNames=names)["AccountAttributes"]
    return {a["AttributeName"]: int(a["AttributeValues"][0]["AttributeValue"]) for a in attrs}


def vcpus_held(ec2):
    """vCPUs of the caller's instances in the region that hold capacity (not stopped or
    terminated), from DescribeInstances and the type catalogue."""
    held = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("stopped", "terminated")]
    types = {i["InstanceType"] for i in held}
    sizes = {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"]
             for t in (ec2.describe_instance_types(InstanceTypes=sorted(types))["InstanceTypes"] if types else [])}
    return sum(sizes[i["InstanceType"]] for i in held)


def test_capacity_attributes_show_the_quota_to_all_and_the_host_to_the_operator(ec2, ec2_other):
    # A plain call answers as EC2 does: none of Kiln's own attributes.
    plain = {a["AttributeName"] for a in ec2.describe_account_attributes()["AccountAttributes"]}
    assert "max-instances" in plain and not any(n.startswith("kiln:") for n in plain)

    # The operator (the default profile) sees its quota and the host's offer and use.
    for _ in range(5):
        before = vcpus_held(ec2)
        mine = attribute_values(ec2, KILN_ACCOUNT_ATTRS + KILN_HOST_ATTRS)
        if vcpus_held(ec2) == before:
            break
    assert mine["kiln:vcpus-in-use"] == before
    assert mine["kiln:vcpu-limit"] > 0
    assert mine["kiln:host-vcpus"] >= 1 and mine["kiln:host-memory-mib"] >= 256
    assert 0 <= mine["kiln:host-vcpus-in-use"] and 0 <= mine["kiln:host-memory-mib-in-use"]
    assert mine["kiln:host-instances"] >= 0
    assert mine["kiln:host-vcpus-in-use"] >= mine["kiln:vcpus-in-use"]

    # Another tenant sees its own quota, never the host's.
    theirs = attribute_values(ec2_other, KILN_ACCOUNT_ATTRS)
    assert theirs["kiln:vcpus-in-use"] == vcpus_held(ec2_other)
    assert theirs["kiln:vcpu-limit"] == mine["kiln:vcpu-limit"]
    err = expect_error("UnauthorizedOperation", ec2_other.describe_account_attributes,
                       AttributeNames=["kiln:host-vcpus"], status=403)
    assert "operator" in err["Error"]["Message"]
    expect_error("InvalidParameterValue", ec2.describe_account_attributes, AttributeNames=["kiln:no-such"], status=400)
