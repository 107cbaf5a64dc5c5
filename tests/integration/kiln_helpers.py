"""Small helpers shared by the integration tests."""

import re
import uuid
import xml.etree.ElementTree as ET

import pytest
import urllib3
from botocore.config import Config
from botocore.exceptions import ClientError

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"

# One attempt only: a server bug answering 5xx should fail fast, not be retried.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=20,
    max_pool_connections=16,
)


_HTTP = urllib3.PoolManager(retries=False)

# Seconds from QEMU start to the guest's ready line, by architecture (test_tiny_boot.py
# fills it; conftest prints it in the terminal summary).
BOOT_TIMES: dict = {}


class HttpResponse:
    """The little of an HTTP response the tests look at (urllib3 underneath, which
    botocore always brings along; `requests` may not be installed)."""

    def __init__(self, r):
        self.status_code = r.status
        self.content = r.data
        self.headers = r.headers  # case-insensitive

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")


def http(method, url, body=None, headers=None, timeout=15):
    """One plain HTTP request; raises urllib3's errors for connection problems."""
    if isinstance(body, str):
        body = body.encode()
    # urllib3 sets Content-Length from the body actually sent.
    headers = {k: v for k, v in (headers or {}).items() if k.lower() != "content-length"}
    r = _HTTP.request(
        method,
        url,
        body=body,
        headers=headers,
        timeout=urllib3.Timeout(connect=5, read=timeout),
        redirect=False,
    )
    return HttpResponse(r)


def uid(prefix="it"):
    """A name unique to this test run (the server is shared across the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def expect_error(code, call, *args, status=None, **kwargs):
    """Calls `call(*args, **kwargs)`, which must fail with EC2 error `code` (and HTTP
    `status` when given); returns the botocore error response."""
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    resp = info.value.response
    got = resp["Error"]["Code"]
    assert got == code, f"expected {code}, got {got}: {resp['Error'].get('Message')}"
    if status is not None:
        got_status = resp["ResponseMetadata"]["HTTPStatusCode"]
        assert got_status == status, f"{code}: expected HTTP {status}, got {got_status}"
    return resp


def xml_error(response):
    """(Code, Message, RequestID, root tag) of an EC2 error document."""
    root = ET.fromstring(response.content)
    code = root.findtext("./Errors/Error/Code")
    message = root.findtext("./Errors/Error/Message")
    request_id = root.findtext("./RequestID")
    return code, message, request_id, root.tag


def strip_ns(tag):
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def ids_of(items, key):
    return [i[key] for i in items]


def assert_id(value, prefix):
    assert re.fullmatch(rf"{prefix}-[0-9a-f]{{17}}", value), f"{value!r} is not a {prefix}- id"


def tags_dict(obj):
    return {t["Key"]: t["Value"] for t in obj.get("Tags", []) or []}


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1, vpcs
    return vpcs[0]


def new_vpc(ec2, cidr=None, **kwargs):
    """Creates a non-default VPC with a random 10.x.0.0/16 block."""
    if cidr is None:
        cidr = f"10.{uuid.uuid4().int % 250 + 1}.0.0/16"
    return ec2.create_vpc(CidrBlock=cidr, **kwargs)["Vpc"]


def new_group(ec2, vpc_id=None, name=None, description="integration test", **kwargs):
    args = {"GroupName": name or uid("grp"), "Description": description, **kwargs}
    if vpc_id:
        args["VpcId"] = vpc_id
    return ec2.create_security_group(**args)["GroupId"]


def describe_group(ec2, group_id):
    groups = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    assert len(groups) == 1
    return groups[0]


def flatten_permissions(perms):
    """EC2's aggregated IpPermissions as a set of
    (protocol, from, to, peer kind, peer, description) tuples."""
    out = set()
    for p in perms:
        key = (p["IpProtocol"], p.get("FromPort"), p.get("ToPort"))
        for r in p.get("IpRanges", []):
            out.add((*key, "cidr", r["CidrIp"], r.get("Description")))
        for r in p.get("Ipv6Ranges", []):
            out.add((*key, "cidr6", r["CidrIpv6"], r.get("Description")))
        for g in p.get("UserIdGroupPairs", []):
            out.add((*key, "group", g["GroupId"], g.get("Description")))
        for pl in p.get("PrefixListIds", []):
            out.add((*key, "prefix-list", pl["PrefixListId"], pl.get("Description")))
    return out


def net_tag(data_dir):
    """The tag `kiln serve` gives its namespaces, links and host table (from the
    canonical data directory)."""
    import hashlib
    import os

    return hashlib.sha256(os.path.realpath(str(data_dir)).encode()).hexdigest()[:4]


def remove_host_state(data_dir):
    """After a test server has stopped: ends the VMs and volume servers it left running
    (they outlive the daemon by design) and removes its VPC namespaces and host table, so no test leaves
    networks behind. Returns what it removed."""
    import os
    import signal
    import subprocess

    removed = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if ("qemu-system" in cmd or "qemu-storage-daemon" in cmd) and str(data_dir) in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
                removed.append(f"qemu {pid}")
            except OSError:
                pass
    tag = net_tag(data_dir)
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for ns in (n for n in names if n.startswith(f"kiln-{tag}-")):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        removed.append(f"netns {ns}")
    subprocess.run(["nft", "delete", "table", "ip", f"kiln_{tag}"], capture_output=True)
    return removed


_CLUSTER = {}


def postgres_admin_url():
    """The URL of a PostgreSQL cluster's `postgres` database, as a superuser, for tests
    that make databases: KILN_TEST_POSTGRES (scripts/test.sh starts a cluster and sets
    it), else a cluster of this process's own, started here with scripts/lib.sh's
    start_postgres in a temporary directory and stopped when the process exits."""
    import atexit
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    if os.environ.get("KILN_TEST_POSTGRES"):
        return os.environ["KILN_TEST_POSTGRES"]
    if "url" not in _CLUSTER:
        lib = Path(__file__).resolve().parents[2] / "scripts" / "lib.sh"
        where = tempfile.mkdtemp(prefix="kiln-pg-")
        p = subprocess.run(
            ["bash", "-c", f'source "{lib}"; start_postgres "$1" && echo "$KILN_TEST_POSTGRES"', "-", where],
            capture_output=True, text=True, timeout=300,
        )
        assert p.returncode == 0, f"cannot start PostgreSQL for the tests:\n{p.stdout}\n{p.stderr}"
        _CLUSTER["url"] = p.stdout.strip().splitlines()[-1]

        def stop():
            subprocess.run(["bash", "-c", f'source "{lib}"; stop_postgres "$1"', "-", where],
                           capture_output=True, timeout=120)
            import shutil

            shutil.rmtree(where, ignore_errors=True)

        atexit.register(stop)
    return _CLUSTER["url"]


def new_database():
    """A new, empty PostgreSQL database; its URL."""
    import urllib.parse

    import psycopg

    admin = postgres_admin_url()
    name = f"kiln_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    u = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def database_args():
    """`--database URL` (a new database of its own) for a new test server when the suite
    runs Kiln on PostgreSQL (KILN_TEST_STORE=postgres); else [] (SQLite)."""
    import os

    if os.environ.get("KILN_TEST_STORE", "sqlite") != "postgres":
        return []
    return ["--database", new_database()]


class _Postgres:
    """A psycopg connection that takes SQLite's `?` placeholders, so that tests read
    either store with the same SQL."""

    def __init__(self, url):
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def execute(self, sql, params=()):
        return self.conn.execute(sql.replace("%", "%%").replace("?", "%s"), params)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def store(data_dir, readonly=False):
    """The database of the cloud in `data_dir`, as a DB-API connection: the PostgreSQL
    database the server recorded in DATA_DIR/database, else DATA_DIR/kiln.db. For
    checking what the API cannot show."""
    import sqlite3
    from pathlib import Path

    recorded = Path(data_dir) / "database"
    if recorded.exists() and recorded.read_text().strip().startswith("postgres"):
        return _Postgres(recorded.read_text().strip())
    path = Path(data_dir) / "kiln.db"
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    return sqlite3.connect(str(path), timeout=10)
