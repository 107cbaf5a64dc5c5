"""Helpers for test_instances.py: a `kiln serve` the module owns (it must be killed
with SIGKILL and restarted on the same port and data directory), its clients, the
QEMU processes it leaves on the host, and polling."""

import base64
import configparser
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
import tomllib
import urllib.parse
import xml.etree.ElementTree as ET
from pathlib import Path

import boto3
import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import WaiterError

from kiln_helpers import database_args, expect_error  # noqa: F401  (expect_error re-exported for test_instances)

REPO = Path(__file__).resolve().parents[2]
KILN_BIN = os.environ.get("KILN_BIN") or str(REPO / "target" / "debug" / "kiln")
TEST_CACHE = Path(os.environ.get("KILN_TEST_CACHE") or REPO / ".kiln-test-cache")
REGION = "us-east-1"

# One attempt: a 5xx (InsufficientInstanceCapacity) must not be retried.
CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=30)

# Variables that would make boto3 or the CLI ignore the files Kiln wrote.
AWS_OVERRIDES = (
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

READY = "kiln-tiny: ready instance-id="


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Server:
    """A `kiln serve` on a fixed port and data directory that can be SIGKILLed and
    started again (the log file is appended to across restarts)."""

    def __init__(self, extra_args=(), pool="100.64.2.0/24", egress_nat=False):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="kiln-inst-"))
        self.log_dir = Path(tempfile.mkdtemp(prefix="kiln-inst-log-"))
        self.log_path = self.log_dir / "kiln.log"
        self.extra_args = list(extra_args)
        # A pool apart from the session server's; by default nothing is forwarded off
        # the machine.
        self.network_args = ["--public-ip-pool", pool] + ([] if egress_nat else ["--no-egress-nat"])
        self.database_args = database_args()
        # More environment for the server (e.g. KILN_MACHINE_ID, to look like another machine).
        self.env = {}
        self.proc = None
        self.starts = 0

    @property
    def credentials_file(self):
        return self.data_dir / "credentials"

    @property
    def config_file(self):
        return self.data_dir / "config"

    def start(self, timeout=30.0):
        TEST_CACHE.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    KILN_BIN,
                    "serve",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--data-dir",
                    str(self.data_dir),
                    "--cache-dir",
                    str(TEST_CACHE),
                    # Only the images these tests boot: a debian-12 build (minutes, and
                    # mounts inside the data dir) must not run under a kill -9.
                    "--quickstart",
                    "kiln-tiny-x86_64,kiln-tiny-arm64",
                    *self.network_args,
                    *self.database_args,
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), **self.env},
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not port_answers(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"kiln serve exited with {self.proc.returncode} before answering\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"kiln serve did not answer on {self.port} in {timeout} s\n{self.log_tail()}")
            time.sleep(0.05)

    def kill9(self):
        """SIGKILL, as a crash: the daemonized VMs stay."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        # The port is free again once the process is gone.
        deadline = time.monotonic() + 10
        while port_answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit status, or a string saying it had to be killed."""
        if self.proc is None:
            return "never started"
        if self.proc.poll() is not None:
            return ("already exited", self.proc.returncode)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"still running {timeout:.0f} s after SIGTERM"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"

    def log_tail(self, lines=60):
        return "--- kiln log (tail) ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def profiles(self):
        cp = configparser.ConfigParser()
        cp.read(self.credentials_file)
        return {s: (cp[s]["aws_access_key_id"], cp[s]["aws_secret_access_key"]) for s in cp.sections()}

    def client(self, profile="default"):
        akid, secret = self.profiles()[profile]
        session = boto3.session.Session(aws_access_key_id=akid, aws_secret_access_key=secret, region_name=REGION)
        return session.client("ec2", region_name=REGION, endpoint_url=self.endpoint, config=CONFIG)

    def create_account(self, name):
        p = subprocess.run(
            [KILN_BIN, "account", "create", name, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 0, f"kiln account create {name}: {p.stdout}\n{p.stderr}"

    def signed(self, params, profile="default"):
        """A raw SigV4-signed POST (as boto3 signs); returns (status, body bytes)."""
        akid, secret = self.profiles()[profile]
        req = AWSRequest(
            method="POST",
            url=self.endpoint + "/",
            data=urllib.parse.urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        SigV4Auth(Credentials(akid, secret), "ec2", REGION).add_auth(req)
        prepared = req.prepare()
        r = urllib3.PoolManager(retries=False).request(
            "POST", prepared.url, body=prepared.body, headers=dict(prepared.headers), timeout=30
        )
        return r.status, r.data

    def cleanup_dirs(self):
        if os.environ.get("KILN_KEEP_DATA"):
            return
        # A background image build may still be finishing writes as the server exits.
        for _ in range(10):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.log_dir, ignore_errors=True)
            if not self.data_dir.exists() and not self.log_dir.exists():
                return
            time.sleep(0.5)


def xml_text(body, name):
    """The text of the first element called `name` (any namespace) in an XML body."""
    root = ET.fromstring(body)
    for el in root.iter():
        if el.tag.split("}", 1)[-1] == name:
            return el.text
    return None


# --- the AWS CLI ---------------------------------------------------------------------------


def cli_base():
    try:
        import awscli  # noqa: F401

        return [sys.executable, "-m", "awscli"]
    except ImportError:
        aws = shutil.which("aws")
        if not aws:
            pytest.skip("neither the awscli package nor an `aws` executable is available")
        return [aws]


def make_cli(server):
    base = cli_base()
    env = {k: v for k, v in os.environ.items() if k not in AWS_OVERRIDES}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(server.credentials_file),
        AWS_CONFIG_FILE=str(server.config_file),
        AWS_PAGER="",
        AWS_MAX_ATTEMPTS="1",
        AWS_RETRY_MODE="standard",
    )

    def run(*args, profile="default", timeout=90):
        cmd = [*base, *args, "--endpoint-url", server.endpoint, "--region", REGION, "--profile", profile,
               "--output", "json"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        data = None
        if p.stdout.strip():
            try:
                data = json.loads(p.stdout)
            except ValueError:
                data = None
        return p.returncode, data, p.stderr

    return run


# --- QEMU processes -----------------------------------------------------------------------


def qemu_processes(data_dir):
    """{pid: argv} of the VMs whose command line names `data_dir`: QEMU processes named
    `kiln-<instance>` (the accelerator probe's short-lived QEMU is not a VM)."""
    marker = str(data_dir).rstrip("/") + "/"
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if not argv or not os.path.basename(argv[0]).startswith("qemu-system"):
            continue
        named = any(a == "-name" and b.startswith("kiln-") for a, b in zip(argv, argv[1:]))
        if named and any(marker in a for a in argv):
            out[int(entry)] = argv
    return out


def qemu_pid_of(data_dir, instance_id):
    """The pid in DIR/instances/<id>/qemu.pid, or None."""
    try:
        return int((Path(data_dir) / "instances" / instance_id / "qemu.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def tiny_accels(arch="x86_64"):
    """The `-accel` values a kiln-tiny guest may run with: KVM, or TCG with the
    translation cache its recipe names (the host's 32 MiB where it names none)."""
    with open(REPO / "images" / f"kiln-tiny-{arch}.toml", "rb") as f:
        size = tomllib.load(f).get("tcg_tb_size_mib", 32)
    return ("kvm", f"tcg,tb-size={size}")


def qemu_of(data_dir, instance_id):
    """(pid, argv) of the QEMU running `instance_id`, or (None, None)."""
    for pid, argv in qemu_processes(data_dir).items():
        if f"kiln-{instance_id}" in argv:
            return pid, argv
    return None, None


def kill_all_qemu(data_dir):
    """SIGKILLs what is left; returns {pid: argv} of what was killed."""
    left = qemu_processes(data_dir)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


# --- polling ------------------------------------------------------------------------------


def wait_for(what, fn, timeout, interval=1.0, diag=None):
    """Calls fn() until it returns something truthy; returns it. Fails after `timeout`
    with `what` and diag() (extra diagnostics) in the message."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = ""
            if diag is not None:
                try:
                    extra = "\n" + str(diag())
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    extra = f"\n<diagnostics failed: {e}>"
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){extra}")
        time.sleep(interval)


def tiny_image(ec2, server, arch="x86_64", timeout=600.0):
    """The id of the available kiln-tiny Quick Start image for `arch`, once built."""

    def ready():
        for img in ec2.describe_images(Owners=["amazon"])["Images"]:
            if img["State"] == "available" and img["Name"].startswith(f"kiln-tiny-{arch}-"):
                return img["ImageId"]
        return None

    return wait_for(f"the kiln-tiny {arch} image", ready, timeout, 2, diag=server.log_tail)


def describe(ec2, instance_id):
    res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    found = [i for r in res for i in r["Instances"]]
    assert len(found) == 1, res
    return found[0]


def state_of(ec2, instance_id):
    return describe(ec2, instance_id)["State"]["Name"]


def wait_state(ec2, instance_id, state, timeout, server=None):
    """Polls DescribeInstances until `instance_id` is in `state`; returns the states seen
    on the way (in order, without repeats)."""
    seen = []

    def check():
        inst = describe(ec2, instance_id)
        s = inst["State"]["Name"]
        if not seen or seen[-1] != s:
            seen.append(s)
        if s != state and s in ("shutting-down", "terminated"):
            raise AssertionError(
                f"{instance_id} is {s}, it will never be {state} (states seen: {seen}; "
                f"StateReason {inst.get('StateReason')})"
            )
        return s == state

    wait_for(
        f"{instance_id} to be {state}",
        check,
        timeout,
        interval=0.5,
        diag=lambda: f"states seen: {seen}\n" + (server.log_tail() if server else ""),
    )
    return seen


def waiter(ec2, name, instance_ids, timeout, server=None, delay=2):
    """A boto3 waiter with Delay=2; a failure becomes an AssertionError with the states
    the instances are in and the server log."""
    try:
        ec2.get_waiter(name).wait(
            InstanceIds=list(instance_ids),
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout / delay))},
        )
    except WaiterError as e:
        try:
            states = {}
            for i in instance_ids:
                d = describe(ec2, i)
                states[i] = (d["State"]["Name"], d.get("StateReason"))
        except Exception as d:  # noqa: BLE001 - diagnostics only
            states = f"<describe failed: {d}>"
        raise AssertionError(
            f"waiter {name} failed for {list(instance_ids)}: {e}\nstates: {states}\n"
            + (server.log_tail() if server else "")
        ) from None


def console(ec2, instance_id):
    return ec2.get_console_output(InstanceId=instance_id).get("Output", "") or ""


# Console lines after which a guest will never come up.
FATAL_CONSOLE = ("dropping to a shell", "Kernel panic")


def wait_console(ec2, instance_id, predicate, what, timeout, server=None):
    """Polls GetConsoleOutput until predicate(text) holds; returns the text. Fails at
    once when the guest cannot boot (its initramfs gave up, or the kernel panicked)."""
    box = {}

    def check():
        box["text"] = console(ec2, instance_id)
        if predicate(box["text"]):
            return True
        for fatal in FATAL_CONSOLE:
            if fatal in box["text"]:
                tail = "\n".join(box["text"].splitlines()[-15:])
                raise AssertionError(f"{instance_id} cannot boot ({fatal!r} on its console):\n{tail}")
        return False

    wait_for(
        f"{what} on the console of {instance_id}",
        check,
        timeout,
        interval=1.0,
        diag=lambda: "--- console (tail) ---\n"
        + "\n".join(box.get("text", "").splitlines()[-25:])
        + "\n"
        + (server.log_tail() if server else ""),
    )
    return box["text"]


def ready_line(instance_id):
    return f"{READY}{instance_id} "


def ready_boots(text, instance_id):
    """The boot ids on the instance's ready lines in a console text, oldest first:
    kiln-tiny ends its ready line with the kernel's boot id, so a new boot is told from
    an old one even when the two consoles otherwise print the same lines."""
    return re.findall(re.escape(ready_line(instance_id)) + r".* boot=(\S+)", text)


def all_instances(ec2, **kwargs):
    return [i for r in ec2.describe_instances(**kwargs)["Reservations"] for i in r["Instances"]]


def user_data_b64(text):
    return base64.b64encode(text.encode()).decode()


USER_REASON = re.compile(r"User initiated \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d GMT\)")
