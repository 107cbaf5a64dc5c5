"""Key pairs: creation (RSA and ED25519), import, fingerprints as EC2 computes them,
lookup, deletion, tags; with boto3 and with the AWS CLI."""

import base64
import hashlib
import os
import shutil
import subprocess

import pytest

from kiln_helpers import assert_id, expect_error, tags_dict, uid, xml_error

try:
    from cryptography.hazmat.primitives import serialization
except ImportError:  # pragma: no cover - depends on the environment
    serialization = None

SSH_KEYGEN = shutil.which("ssh-keygen")
OPENSSL = shutil.which("openssl")
needs_ssh_keygen = pytest.mark.skipif(not SSH_KEYGEN, reason="ssh-keygen is not installed")


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def pkcs8_der_of(pem: str) -> bytes:
    """The DER PKCS#8 form of a PEM private key, by `cryptography` or `openssl pkcs8`."""
    if serialization is not None:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        return key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    if OPENSSL:
        return subprocess.run(
            [OPENSSL, "pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
            input=pem.encode(),
            capture_output=True,
            check=True,
        ).stdout
    pytest.skip("neither cryptography nor openssl is available")


def spki_der_of_openssh(pub_path) -> bytes:
    """DER SubjectPublicKeyInfo of an OpenSSH RSA public key file, the way the notes
    give it: `ssh-keygen -e -m PKCS8 -f key.pub | openssl pkey -pubin -outform DER`."""
    if SSH_KEYGEN and OPENSSL:
        pem = subprocess.run(
            [SSH_KEYGEN, "-e", "-m", "PKCS8", "-f", str(pub_path)], capture_output=True, check=True
        ).stdout
        return subprocess.run(
            [OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pem, capture_output=True, check=True
        ).stdout
    if serialization is not None:
        key = serialization.load_ssh_public_key(open(pub_path, "rb").read())
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pytest.skip("cannot convert an OpenSSH key to SubjectPublicKeyInfo here")


def ssh_keygen_sha256(path) -> str:
    """The `SHA256:` fingerprint `ssh-keygen -lf` prints for a key file, without the prefix."""
    out = subprocess.run([SSH_KEYGEN, "-lf", str(path)], capture_output=True, text=True, check=True).stdout
    token = next(t for t in out.split() if t.startswith("SHA256:"))
    return token[len("SHA256:"):]


def sha256_of_public_line(line: str) -> str:
    blob = base64.b64decode(line.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def keygen(tmp_path, kind, bits=None):
    path = tmp_path / f"id_{kind}"
    cmd = [SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "kiln-it", "-f", str(path)]
    if bits:
        cmd[2:2] = ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path, path.with_name(path.name + ".pub")


def write_private(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text if text.endswith("\n") else text + "\n")
    os.chmod(path, 0o600)
    return path


def describe_one(ec2, name, **kwargs):
    (k,) = ec2.describe_key_pairs(KeyNames=[name], **kwargs)["KeyPairs"]
    return k


# --- create -----------------------------------------------------------------------------


def test_create_rsa_key_pair(ec2, tmp_path):
    name = uid("rsa")
    k = ec2.create_key_pair(KeyName=name)
    assert k["KeyName"] == name
    assert_id(k["KeyPairId"], "key")
    pem = k["KeyMaterial"]
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pem.rstrip().endswith("-----END RSA PRIVATE KEY-----")
    fp = k["KeyFingerprint"]
    assert len(fp.split(":")) == 20
    assert fp == colon_hex(hashlib.sha1(pkcs8_der_of(pem)).digest()), "SHA-1 of the PKCS#8 DER private key"
    d = describe_one(ec2, name, IncludePublicKey=True)
    assert (d["KeyPairId"], d["KeyFingerprint"], d["KeyType"]) == (k["KeyPairId"], fp, "rsa")
    assert d["PublicKey"].startswith("ssh-rsa ")
    assert d["CreateTime"]
    if SSH_KEYGEN:
        derived = subprocess.run(
            [SSH_KEYGEN, "-y", "-f", str(write_private(tmp_path, "k.pem", pem))],
            capture_output=True, text=True, check=True,
        ).stdout
        assert derived.split()[1] == d["PublicKey"].split()[1], "the stored public key belongs to the private key"


def test_create_ed25519_key_pair(ec2, tmp_path):
    name = uid("ed")
    k = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    pem = k["KeyMaterial"]
    assert pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    fp = k["KeyFingerprint"]
    assert fp.endswith("=") and len(fp) == 44
    d = describe_one(ec2, name, IncludePublicKey=True)
    assert d["KeyType"] == "ed25519" and d["KeyFingerprint"] == fp
    assert d["PublicKey"].startswith("ssh-ed25519 ")
    assert fp == sha256_of_public_line(d["PublicKey"])
    if SSH_KEYGEN:
        assert fp == ssh_keygen_sha256(write_private(tmp_path, "ed.pem", pem)) + "="


def test_create_key_pair_with_tags(ec2):
    name = uid("tagged")
    k = ec2.create_key_pair(
        KeyName=name,
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "Owner", "Value": "it"}, {"Key": "Env", "Value": ""}]}],
    )
    assert tags_dict(k) == {"Owner": "it", "Env": ""}
    assert tags_dict(describe_one(ec2, name)) == {"Owner": "it", "Env": ""}
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [k["KeyPairId"]]}])["Tags"]
    assert {(t["ResourceType"], t["Key"]) for t in rows} == {("key-pair", "Owner"), ("key-pair", "Env")}


def test_create_key_pair_with_wrong_tag_resource_type(ec2):
    name = uid("wrongtag")
    expect_error(
        "InvalidParameterValue",
        ec2.create_key_pair,
        KeyName=name,
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}],
    )
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[name])


def test_unknown_key_type_is_invalid(kiln, ec2):
    # boto3 does not check enums client-side, but send it raw to be sure of the wire.
    name = uid("dsa")
    r = kiln.signed({"Action": "CreateKeyPair", "Version": "2016-11-15", "KeyName": name, "KeyType": "dsa"})
    assert r.status_code == 400
    assert xml_error(r)[0] == "InvalidParameterValue"
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[name])


def test_duplicate_name(ec2, tmp_path):
    name = uid("dup")
    ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    resp = expect_error("InvalidKeyPair.Duplicate", ec2.create_key_pair, KeyName=name, status=400)
    assert name in resp["Error"]["Message"]
    line = describe_one(ec2, name, IncludePublicKey=True)["PublicKey"]
    expect_error("InvalidKeyPair.Duplicate", ec2.import_key_pair, KeyName=name, PublicKeyMaterial=line.encode())
    assert len(ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]) == 1


# --- import -----------------------------------------------------------------------------


@needs_ssh_keygen
def test_import_rsa_key_from_ssh_keygen(ec2, tmp_path):
    _, pub = keygen(tmp_path, "rsa", 2048)
    name = uid("imp-rsa")
    k = ec2.import_key_pair(KeyName=name, PublicKeyMaterial=pub.read_bytes())
    assert_id(k["KeyPairId"], "key")
    expected = colon_hex(hashlib.md5(spki_der_of_openssh(pub)).digest())
    assert k["KeyFingerprint"] == expected, "MD5 of the DER SubjectPublicKeyInfo"
    d = describe_one(ec2, name, IncludePublicKey=True)
    assert d["KeyType"] == "rsa" and d["KeyFingerprint"] == expected
    assert d["PublicKey"].split()[1] == pub.read_text().split()[1]
    assert "KeyMaterial" not in k


@needs_ssh_keygen
def test_import_rfc4716_rsa_key(ec2, tmp_path):
    # EC2 also accepts the SSH2 public key file format of RFC 4716; the fingerprint is
    # that of the same key in OpenSSH form.
    _, pub = keygen(tmp_path, "rsa", 2048)
    expected = colon_hex(hashlib.md5(spki_der_of_openssh(pub)).digest())
    ssh2 = subprocess.run([SSH_KEYGEN, "-e", "-f", str(pub)], capture_output=True, check=True).stdout
    assert ssh2.startswith(b"---- BEGIN SSH2 PUBLIC KEY ----")
    k = ec2.import_key_pair(KeyName=uid("imp-ssh2"), PublicKeyMaterial=ssh2)
    assert k["KeyFingerprint"] == expected


@needs_ssh_keygen
def test_import_base64_der_rsa_key(ec2, tmp_path):
    # ...and base64 DER (SubjectPublicKeyInfo).
    _, pub = keygen(tmp_path, "rsa", 2048)
    der = spki_der_of_openssh(pub)
    k = ec2.import_key_pair(KeyName=uid("imp-der"), PublicKeyMaterial=base64.b64encode(der))
    assert k["KeyFingerprint"] == colon_hex(hashlib.md5(der).digest())


@needs_ssh_keygen
def test_import_ed25519_key_from_ssh_keygen(ec2, tmp_path):
    _, pub = keygen(tmp_path, "ed25519")
    name = uid("imp-ed")
    k = ec2.import_key_pair(KeyName=name, PublicKeyMaterial=pub.read_bytes())
    assert k["KeyFingerprint"] == ssh_keygen_sha256(pub) + "="
    assert describe_one(ec2, name)["KeyType"] == "ed25519"


@needs_ssh_keygen
def test_import_ecdsa_key_is_refused(ec2, tmp_path):
    _, pub = keygen(tmp_path, "ecdsa")
    name = uid("imp-ecdsa")
    expect_error("InvalidKey.Format", ec2.import_key_pair, KeyName=name, PublicKeyMaterial=pub.read_bytes(), status=400)
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[name])


def test_import_garbage_is_refused(ec2):
    expect_error("InvalidKey.Format", ec2.import_key_pair, KeyName=uid("junk"), PublicKeyMaterial=b"not a key at all")
    expect_error(
        "InvalidKey.Format", ec2.import_key_pair, KeyName=uid("junk"), PublicKeyMaterial=b"ssh-rsa AAAAnotbase64!! x"
    )


# --- describe ---------------------------------------------------------------------------


def test_describe_by_names_ids_and_filters(ec2):
    prefix = uid("desc")
    a = ec2.create_key_pair(
        KeyName=f"{prefix}-a", KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "team", "Value": "blue"}]}],
    )
    b = ec2.create_key_pair(KeyName=f"{prefix}-b", KeyType="ed25519")
    by_names = ec2.describe_key_pairs(KeyNames=[f"{prefix}-a", f"{prefix}-b"])["KeyPairs"]
    assert {k["KeyPairId"] for k in by_names} == {a["KeyPairId"], b["KeyPairId"]}
    by_id = ec2.describe_key_pairs(KeyPairIds=[b["KeyPairId"]])["KeyPairs"]
    assert [k["KeyName"] for k in by_id] == [f"{prefix}-b"]
    wild = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"{prefix}-*"]}])["KeyPairs"]
    assert {k["KeyName"] for k in wild} == {f"{prefix}-a", f"{prefix}-b"}
    by_fp = ec2.describe_key_pairs(Filters=[{"Name": "fingerprint", "Values": [a["KeyFingerprint"]]}])["KeyPairs"]
    assert [k["KeyPairId"] for k in by_fp] == [a["KeyPairId"]]
    by_tag = ec2.describe_key_pairs(
        Filters=[{"Name": "tag:team", "Values": ["blue"]}, {"Name": "key-name", "Values": [f"{prefix}-*"]}]
    )["KeyPairs"]
    assert [k["KeyName"] for k in by_tag] == [f"{prefix}-a"]
    by_id_filter = ec2.describe_key_pairs(Filters=[{"Name": "key-pair-id", "Values": [a["KeyPairId"]]}])["KeyPairs"]
    assert [k["KeyName"] for k in by_id_filter] == [f"{prefix}-a"]
    everything = {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
    assert {f"{prefix}-a", f"{prefix}-b"} <= everything


def test_public_key_only_when_asked(ec2):
    name = uid("pub")
    ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    assert "PublicKey" not in describe_one(ec2, name)
    assert describe_one(ec2, name, IncludePublicKey=True)["PublicKey"].startswith("ssh-ed25519 ")


def test_unknown_name_is_not_found(ec2):
    missing = uid("missing")
    resp = expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[missing], status=400)
    assert missing in resp["Error"]["Message"]


def test_lookup_is_all_or_nothing(ec2):
    name = uid("half")
    ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[name, uid("missing")])


def test_malformed_key_pair_id(ec2):
    expect_error("InvalidKeyPairId.Malformed", ec2.describe_key_pairs, KeyPairIds=["key-nothex"], status=400)
    expect_error("InvalidKeyPairId.Malformed", ec2.describe_key_pairs, KeyPairIds=["sg-0123456789abcdef0"])
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"])


def test_bad_filter_name(ec2):
    expect_error("InvalidParameterValue", ec2.describe_key_pairs, Filters=[{"Name": "colour", "Values": ["x"]}])


# --- delete -----------------------------------------------------------------------------


def test_delete_by_name_and_id(ec2):
    name = uid("del")
    k = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    resp = ec2.delete_key_pair(KeyName=name)
    assert resp["Return"] is True
    assert resp.get("KeyPairId") == k["KeyPairId"]
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=[name])
    other = ec2.create_key_pair(KeyName=uid("del"), KeyType="ed25519")
    assert ec2.delete_key_pair(KeyPairId=other["KeyPairId"])["Return"] is True
    expect_error("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyPairIds=[other["KeyPairId"]])


def test_deleting_a_missing_key_succeeds(ec2):
    assert ec2.delete_key_pair(KeyName=uid("never"))["Return"] is True
    assert ec2.delete_key_pair(KeyPairId="key-0123456789abcdef0")["Return"] is True


def test_delete_removes_the_tags(ec2):
    name = uid("deltag")
    k = ec2.create_key_pair(
        KeyName=name, KeyType="ed25519",
        TagSpecifications=[{"ResourceType": "key-pair", "Tags": [{"Key": "x", "Value": "y"}]}],
    )
    ec2.delete_key_pair(KeyName=name)
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [k["KeyPairId"]]}])["Tags"]
    assert rows == []


def test_a_name_is_free_again_after_delete(ec2):
    name = uid("reuse")
    first = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    ec2.delete_key_pair(KeyName=name)
    second = ec2.create_key_pair(KeyName=name, KeyType="ed25519")
    assert second["KeyPairId"] != first["KeyPairId"]


# --- the AWS CLI ------------------------------------------------------------------------


def test_cli_create_describe_delete(aws, ec2, tmp_path):
    name = uid("cli")
    rc, material, err = aws("ec2", "create-key-pair", "--key-name", name, "--query", "KeyMaterial", output="text")
    assert rc == 0, err
    assert material.startswith("-----BEGIN RSA PRIVATE KEY-----")
    pem_path = write_private(tmp_path, f"{name}.pem", material)
    rc, out, err = aws("ec2", "describe-key-pairs", "--key-names", name, "--include-public-key")
    assert rc == 0, err
    (k,) = out["KeyPairs"]
    assert k["KeyName"] == name and k["KeyType"] == "rsa"
    assert k["KeyFingerprint"] == colon_hex(hashlib.sha1(pkcs8_der_of(pem_path.read_text())).digest())
    if SSH_KEYGEN:
        derived = subprocess.run([SSH_KEYGEN, "-y", "-f", str(pem_path)], capture_output=True, text=True, check=True)
        assert derived.stdout.split()[1] == k["PublicKey"].split()[1]
    rc, out, err = aws("ec2", "delete-key-pair", "--key-name", name)
    assert rc == 0, err
    rc, out, err = aws("ec2", "describe-key-pairs", "--key-names", name)
    assert rc != 0
    assert "InvalidKeyPair.NotFound" in err


@needs_ssh_keygen
def test_cli_import_and_ed25519(aws, tmp_path):
    _, pub = keygen(tmp_path, "ed25519")
    name = uid("cli-imp")
    rc, out, err = aws("ec2", "import-key-pair", "--key-name", name, "--public-key-material", f"fileb://{pub}")
    assert rc == 0, err
    assert out["KeyName"] == name
    assert out["KeyFingerprint"] == ssh_keygen_sha256(pub) + "="
    rc, out, err = aws("ec2", "import-key-pair", "--key-name", name, "--public-key-material", f"fileb://{pub}")
    assert rc != 0 and "InvalidKeyPair.Duplicate" in err
    created = uid("cli-ed")
    rc, out, err = aws("ec2", "create-key-pair", "--key-name", created, "--key-type", "ed25519")
    assert rc == 0, err
    assert out["KeyMaterial"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert out["KeyFingerprint"] == ssh_keygen_sha256(write_private(tmp_path, "cli-ed", out["KeyMaterial"])) + "="
