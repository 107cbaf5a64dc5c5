"""Integration fixtures: one real `kiln serve` for the whole session, driven with boto3
and the AWS CLI exactly as a user would drive it (shared credentials and config files
written by Kiln, `--endpoint-url` pointing at the server).

The server builds its Quick Start catalog (kiln-tiny for x86_64, arm64, i386) in the
background as it starts; tests that need those images ask for `quickstart_images`.

Environment:
  KILN_BIN         the kiln binary (default: <repo>/target/debug/kiln)
  KILN_KEEP_DATA   keep the temporary data directory after the session
  KILN_TEST_CACHE  the Debian package cache shared by test runs (default:
                   <repo>/.kiln-test-cache, git-ignored; scripts/test.sh sets
                   ~/.cache/kiln/test, one for the machine); only the first run downloads
  KILN_TEST_STORE  `postgres` runs every test server on PostgreSQL, each on a database
                   of its own (default: `sqlite`)
  KILN_TEST_POSTGRES  the URL of a PostgreSQL cluster's `postgres` database to make those
                   databases in (scripts/test.sh starts one); without it, the tests
                   that need PostgreSQL start a cluster of their own
  KILN_TEST_QUICKSTART  the Quick Start recipes the session server builds, comma-separated,
                   or `all` (default: the three kiln-tiny recipes, which the tests use;
                   passed as `--quickstart` when the binary has that option)
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kiln_helpers import BOOT_TIMES, CLIENT_CONFIG, database_args, http, remove_host_state

REPO = Path(__file__).resolve().parents[2]
KILN_BIN = os.environ.get("KILN_BIN") or str(REPO / "target" / "debug" / "kiln")
START_TIMEOUT = 30.0
TEST_CACHE = Path(os.environ.get("KILN_TEST_CACHE") or REPO / ".kiln-test-cache")
# The Quick Start architectures and how long the first (downloading) build may take.
QUICKSTART_ARCHES = ("x86_64", "arm64", "i386")
QUICKSTART_TIMEOUT = 600.0
QUICKSTART_RECIPES = os.environ.get("KILN_TEST_QUICKSTART") or ",".join(f"kiln-tiny-{a}" for a in QUICKSTART_ARCHES)

# Variables that would make boto3 or the CLI ignore the files Kiln wrote.
_AWS_OVERRIDES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_CA_BUNDLE",
)

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_profiles(path: Path) -> dict:
    """The [profile] sections of an AWS shared-credentials file."""
    import configparser

    cp = configparser.ConfigParser()
    cp.read(path)
    return {
        name: (cp[name]["aws_access_key_id"], cp[name]["aws_secret_access_key"])
        for name in cp.sections()
    }


def _group_members(pgid: int) -> list:
    """(pid, command) of the processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                members.append((int(entry.name), cmd or stat[stat.index("(") : stat.rindex(")") + 1]))
        except (OSError, ValueError, IndexError):
            continue
    return members


def _signal_group_and_wait(pgid: int, sig, seconds: float) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + seconds
    while _group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_group(pgid: int) -> list:
    """Stops what is left of the server's process group (SIGTERM first, so that a build
    tool such as mmdebstrap can undo its mounts; then SIGKILL); returns what was left.
    They must be gone before the data directory is removed, or they write into it again."""
    left = _group_members(pgid)
    if left and not _signal_group_and_wait(pgid, signal.SIGTERM, 20):
        _signal_group_and_wait(pgid, signal.SIGKILL, 10)
    return left


def _unmount_under(path) -> list:
    """Unmounts whatever is mounted below `path` (a build's chroot: proc, sys, devpts),
    deepest first; returns the mount points that stay."""
    prefix = str(Path(path).resolve()) + "/"

    def mounts():
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].replace("\\040", " ") for line in f]
        return sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)

    for point in mounts():
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts()


def _remove_data_dir(data_dir) -> str:
    """Removes a test data directory unless something is still mounted in it (then
    rmtree could reach into the mounts); returns a warning, or ''."""
    stuck = _unmount_under(data_dir)
    if stuck:
        return f"left {data_dir} in place: still mounted there: {stuck}"
    shutil.rmtree(data_dir, ignore_errors=True)
    return ""


def _serve_has_option(option: str) -> bool:
    try:
        out = subprocess.run([KILN_BIN, "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"^\s*{re.escape(option)}\b", out, re.M) is not None


class Kiln:
    """A running `kiln serve` and what is needed to talk to it."""

    def __init__(self, proc, port, data_dir, log_path):
        self.proc = proc
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.credentials_file = self.data_dir / "credentials"
        self.config_file = self.data_dir / "config"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def log_tail(self, lines=60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def profiles(self) -> dict:
        return _read_profiles(self.credentials_file)

    def credentials(self, profile="default") -> Credentials:
        akid, secret = self.profiles()[profile]
        return Credentials(akid, secret)

    def client(self, profile="default", region="us-east-1", **kwargs):
        session = boto3.session.Session(profile_name=profile)
        return session.client(
            "ec2",
            region_name=region,
            endpoint_url=self.endpoint,
            config=CLIENT_CONFIG,
            **kwargs,
        )

    def signed(
        self,
        params,
        profile="default",
        region="us-east-1",
        credentials=None,
        method="POST",
        timeout=15,
    ):
        """Sends `params` (a dict, list of pairs or an encoded string) signed with
        botocore's SigV4Auth, the way boto3 signs; returns an HttpResponse."""
        body = params if isinstance(params, (str, bytes)) else urllib.parse.urlencode(params)
        creds = credentials or self.credentials(profile)
        if method == "POST":
            req = AWSRequest(
                method="POST",
                url=self.endpoint + "/",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            )
        else:
            req = AWSRequest(method=method, url=f"{self.endpoint}/?{body}")
        SigV4Auth(creds, "ec2", region).add_auth(req)
        prepared = req.prepare()
        return http(prepared.method, prepared.url, prepared.body, dict(prepared.headers), timeout)


@pytest.fixture(scope="session")
def kiln():
    if not os.path.exists(KILN_BIN):
        pytest.exit(f"kiln binary not found at {KILN_BIN} (set KILN_BIN)", returncode=2)
    saved_env = {k: os.environ.pop(k) for k in _AWS_OVERRIDES if k in os.environ}
    data_dir = tempfile.mkdtemp(prefix="kiln-it-")
    log_dir = tempfile.mkdtemp(prefix="kiln-it-log-")
    log_path = os.path.join(log_dir, "kiln.log")
    port = _free_port()
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    args = [
        KILN_BIN,
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        data_dir,
        "--cache-dir",
        str(TEST_CACHE),
        *database_args(),
    ]
    if QUICKSTART_RECIPES != "all" and _serve_has_option("--quickstart"):
        args += ["--quickstart", QUICKSTART_RECIPES]
    if _serve_has_option("--public-ip-pool"):
        # A pool of its own (test_instances.py runs a second server), and nothing
        # forwarded off the machine. KILN_TEST_POOL lets a second run share the machine.
        args += ["--public-ip-pool", os.environ.get("KILN_TEST_POOL", "100.64.1.0/24"), "--no-egress-nat"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        # Its own process group, so that whatever it starts (the Quick Start build's
        # dpkg-deb/mkfs/qemu-img, VMs) can be stopped with it at the end.
        start_new_session=True,
    )
    server = Kiln(proc, port, data_dir, log_path)
    global SESSION_SERVER
    SESSION_SERVER = server

    def fail(why):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _stop_group(proc.pid)
        log.close()
        text = server.log()
        if not os.environ.get("KILN_KEEP_DATA"):
            warning = _remove_data_dir(data_dir)
            if warning:
                why += f"\n[kiln] {warning}"
            shutil.rmtree(log_dir, ignore_errors=True)
        pytest.exit(f"{why}\n--- kiln log ---\n{text}", returncode=3)

    deadline = time.monotonic() + START_TIMEOUT
    while not _port_answers(port):
        if proc.poll() is not None:
            fail(f"kiln serve exited with {proc.returncode} before answering on port {port}")
        if time.monotonic() > deadline:
            fail(f"kiln serve did not answer on port {port} within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)
    if not server.credentials_file.exists() or not server.config_file.exists():
        fail("kiln serve did not write DIR/credentials and DIR/config on first start")

    created = subprocess.run(
        [KILN_BIN, "account", "create", "other", "--data-dir", data_dir],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if created.returncode != 0:
        fail(f"`kiln account create other` failed:\n{created.stdout}\n{created.stderr}")

    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(server.credentials_file)
    os.environ["AWS_CONFIG_FILE"] = str(server.config_file)
    server.account_create_output = created.stdout
    try:
        yield server
    finally:
        os.environ.pop("AWS_SHARED_CREDENTIALS_FILE", None)
        os.environ.pop("AWS_CONFIG_FILE", None)
        os.environ.update(saved_env)
        exited = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                exited = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                exited = "still running 15 s after SIGTERM"
                proc.kill()
                proc.wait()
        else:
            exited = ("already exited", proc.returncode)
        left = _stop_group(proc.pid)
        gone = remove_host_state(data_dir)
        if gone:
            print(f"\n[kiln] removed what the session's instances left on the host: {', '.join(gone)}", flush=True)
        if left:
            # Children that outlived the server (e.g. a Quick Start build step still
            # writing into DATA_DIR/builds/*.partial): stopped here, reported there.
            shown = "; ".join(f"{pid} {cmd[:100]}" for pid, cmd in left)
            print(f"\n[kiln] processes left running after kiln serve exited: {shown}", flush=True)
        log.close()
        text = server.log()
        if not os.environ.get("KILN_KEEP_DATA"):
            warning = _remove_data_dir(data_dir)
            if warning:
                print(f"\n[kiln] {warning}", flush=True)
            shutil.rmtree(log_dir, ignore_errors=True)
        assert exited == 0, (
            f"kiln serve did not shut down gracefully on SIGTERM (status {exited})\n"
            f"--- kiln log ---\n{text}"
        )


@pytest.fixture(scope="session")
def data_dir(kiln) -> Path:
    """The session server's data directory (builds/, snapshots/, kiln.db, ...)."""
    return kiln.data_dir


def _quickstart_ready(images):
    """{arch: image} for the available Quick Start images, newest first per arch."""
    ready = {}
    for img in sorted(images, key=lambda i: i.get("CreationDate", ""), reverse=True):
        if (
            img.get("State") == "available"
            and img.get("Name", "").startswith("kiln-tiny-")
            and img.get("Architecture") in QUICKSTART_ARCHES
        ):
            ready.setdefault(img["Architecture"], img)
    return ready


@pytest.fixture(scope="session")
def quickstart_images(kiln, ec2):
    """Waits until the Quick Start catalog is registered in us-east-1 (the server
    builds it in the background as it starts); returns {architecture: image}."""
    start = time.monotonic()
    deadline = start + QUICKSTART_TIMEOUT
    last, last_print = None, 0.0
    while True:
        ready = _quickstart_ready(ec2.describe_images(Owners=["amazon"])["Images"])
        missing = [a for a in QUICKSTART_ARCHES if a not in ready]
        elapsed = time.monotonic() - start
        if not missing:
            print(
                f"\n[quickstart] all {len(QUICKSTART_ARCHES)} images available after {elapsed:.0f} s: "
                + ", ".join(f"{a}={ready[a]['ImageId']}" for a in QUICKSTART_ARCHES),
                flush=True,
            )
            return ready
        log = kiln.log()
        if "Quick Start image not available" in log:
            pytest.fail(
                "the Quick Start build failed (the server gave up on a recipe)\n"
                f"--- kiln log (tail) ---\n{kiln.log_tail(80)}"
            )
        if kiln.proc.poll() is not None:
            pytest.fail(
                f"kiln serve exited ({kiln.proc.returncode}) while building the Quick Start images\n"
                f"--- kiln log (tail) ---\n{kiln.log_tail(80)}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"Quick Start images not available within {QUICKSTART_TIMEOUT:.0f} s "
                f"(missing: {', '.join(missing)})\n--- kiln log (tail) ---\n{kiln.log_tail(80)}"
            )
        # Progress: the builder's last step line, e.g. "[kiln-tiny-arm64] 3/6 assembling ...".
        steps = [l for l in log.splitlines() if l.startswith("[kiln-tiny-")]
        status = (sorted(ready), steps[-1] if steps else "")
        if status != last or elapsed - last_print >= 30:
            print(
                f"[quickstart] {elapsed:4.0f} s: ready {status[0] or '-'}, waiting for {missing}"
                + (f"; {status[1]}" if status[1] else ""),
                flush=True,
            )
            last, last_print = status, elapsed
        time.sleep(2)


@pytest.fixture(scope="session")
def ec2(kiln):
    return kiln.client("default", "us-east-1")


@pytest.fixture(scope="session")
def ec2_other(kiln):
    return kiln.client("other", "us-east-1")


@pytest.fixture(scope="session")
def ec2_west(kiln):
    return kiln.client("default", "eu-west-1")


def _cli_base():
    # Prefer the interpreter's own awscli, so the venv's version is the one tested.
    try:
        import awscli  # noqa: F401

        return [sys.executable, "-m", "awscli"]
    except ImportError:
        aws = shutil.which("aws")
        if not aws:
            pytest.skip("neither the awscli package nor an `aws` executable is available")
        return [aws]


@pytest.fixture(scope="session")
def aws(kiln):
    """Runs the AWS CLI against Kiln: aws(*args, profile=, region=, output=) returns
    (returncode, parsed JSON or None — or the raw text for other outputs, stderr)."""
    base = _cli_base()
    env = {k: v for k, v in os.environ.items() if k not in _AWS_OVERRIDES}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(kiln.credentials_file),
        AWS_CONFIG_FILE=str(kiln.config_file),
        AWS_PAGER="",
        AWS_MAX_ATTEMPTS="1",
        AWS_RETRY_MODE="standard",
    )

    def run(*args, profile="default", region="us-east-1", output="json", timeout=60):
        cmd = [
            *base,
            *args,
            "--endpoint-url",
            kiln.endpoint,
            "--region",
            region,
            "--profile",
            profile,
            "--output",
            output,
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if output != "json":
            return p.returncode, p.stdout, p.stderr
        data = None
        if p.stdout.strip():
            try:
                data = json.loads(p.stdout)
            except ValueError:
                data = None
        return p.returncode, data, p.stderr

    return run


# The session's server, once started: a failing test shows what it logged meanwhile.
SESSION_SERVER = None
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    server = SESSION_SERVER
    try:
        item.kiln_log_from = server.log_path.stat().st_size if server else 0
    except OSError:
        item.kiln_log_from = 0
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = SESSION_SERVER
    if not report.failed or server is None or "kiln" not in getattr(item, "fixturenames", ()):
        return
    try:
        with open(server.log_path, "rb") as f:
            f.seek(getattr(item, "kiln_log_from", 0))
            lines = _ANSI.sub("", f.read().decode(errors="replace")).splitlines()
    except OSError:
        return
    # Every warning and error of the test's time, then its last lines.
    loud = [l for l in lines if " WARN " in l or " ERROR " in l][-80:]
    text = "\n".join(["warnings and errors:", *loud, "", "last lines:", *lines[-60:]])
    report.sections.append((f"kiln serve's log during {call.when}", text))


def pytest_terminal_summary(terminalreporter):
    if BOOT_TIMES:
        terminalreporter.section("kiln-tiny boot times (QEMU TCG, to the ready line)")
        for arch, info in BOOT_TIMES.items():
            secs = info.get("ready_seconds")
            took = f"{secs:6.1f} s" if secs is not None else f"  failed: {info.get('error', '?')}"
            terminalreporter.write_line(f"{arch:8} {took}  image {info['image']}  build {info['build']}")
