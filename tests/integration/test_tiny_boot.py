"""The Quick Start builds really boot: each kiln-tiny root disk (through a qcow2 overlay,
so the build stays pristine) starts under QEMU/TCG with user networking, fetches its
configuration from a metadata-service stand-in over IMDSv2 (token first), installs the
served SSH key for ec2-user, runs the served user data, prints its ready line, and
answers SSH.

The stand-in sits on 127.0.0.1 and is reached from the guest as 169.254.169.254:80
through QEMU's guestfwd (`cmd:` form: one `busybox nc` per connection; the `tcp:` form
serves only one connection). Boot times go to the terminal summary and to
<repo>/.kiln-test-boot-times.json.
"""

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import tomllib
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kiln_helpers import BOOT_TIMES

REPO = Path(__file__).resolve().parents[2]
SUMMARY = REPO / ".kiln-test-boot-times.json"
BOOT_TIMEOUT = 180.0
SSH_TIMEOUT = 90.0

# How QEMU runs each architecture (the kernel command line is the recipe's).
ARCHES = {
    "x86_64": ["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "256"],
    "i386": ["qemu-system-x86_64", "-M", "pc", "-accel", "tcg", "-m", "256"],
    "arm64": ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-accel", "tcg", "-m", "512"],
}


def recipe(arch):
    with open(REPO / "images" / f"kiln-tiny-{arch}.toml", "rb") as f:
        return tomllib.load(f)


READY = re.compile(r"kiln-tiny: ready instance-id=(\S+)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the metadata-service stand-in ------------------------------------------------------


class FakeImds:
    """IMDSv2-only metadata: PUT /latest/api/token gives a token (TTL echoed), every GET
    must carry it (401 otherwise). Records each request."""

    def __init__(self, instance_id, hostname, public_key, user_data):
        self.token = uuid.uuid4().hex
        self.files = {
            "/latest/meta-data/": "instance-id\nlocal-hostname\npublic-keys/\n",
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/local-hostname": hostname,
            "/latest/meta-data/public-keys/": "0=kiln-test",
            "/latest/meta-data/public-keys/0/": "openssh-key",
            "/latest/meta-data/public-keys/0/openssh-key": public_key,
            "/latest/user-data": user_data,
        }
        self.requests = []  # (method, path, status, carried a valid token)
        self.lock = threading.Lock()
        imds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _answer(self, status, body=b"", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _record(self, status, tokened):
                with imds.lock:
                    imds.requests.append((self.command, self.path, status, tokened))

            def do_PUT(self):
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token":
                    status, body, headers = 404, b"", ()
                elif not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    status, body, headers = 400, b"", ()
                else:
                    status, body = 200, imds.token.encode()
                    headers = (("X-aws-ec2-metadata-token-ttl-seconds", ttl),)
                self._record(status, False)
                self._answer(status, body, headers)

            def do_GET(self):
                tokened = self.headers.get("X-aws-ec2-metadata-token") == imds.token
                if not tokened:
                    status, body = 401, b""
                elif self.path in imds.files:
                    status, body = 200, imds.files[self.path].encode()
                else:
                    status, body = 404, b""
                self._record(status, tokened)
                self._answer(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def seen(self):
        with self.lock:
            return list(self.requests)


# --- finding the build ------------------------------------------------------------------


def find_build(data_dir: Path, arch: str, image: dict) -> Path:
    """The build directory of recipe kiln-tiny-<arch>: the one whose `recipe` file names
    it. (Fallback for builds without that file: the one whose root.qcow2 is the file of
    the registered image's snapshot, which the store hard-links.)"""
    builds = data_dir / "builds"
    recipe = f"kiln-tiny-{arch}"
    dirs = [d for d in builds.iterdir() if d.is_dir() and (d / "done").exists()]
    named = [d for d in dirs if (d / "recipe").exists() and (d / "recipe").read_text().strip() == recipe]
    if named:
        assert len(named) == 1, f"several builds claim {recipe}: {named}"
        return named[0]
    snap = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    layer = data_dir / "snapshots" / f"{snap}.qcow2"
    same = [d for d in dirs if layer.exists() and os.path.samefile(d / "root.qcow2", layer)]
    listing = {d.name: sorted(p.name for p in d.iterdir()) for d in dirs}
    assert same, f"no build in {builds} has a `recipe` file naming {recipe}: {listing}"
    print(f"\n[boot {arch}] WARNING: no `recipe` file in {same[0]} ({listing[same[0].name]}); "
          f"found it through the snapshot {snap}", flush=True)
    return same[0]


# --- booting ----------------------------------------------------------------------------


def qemu_command(arch, build, overlay, imds_port, ssh_port, console):
    netdev = (
        "user,id=n0,net=169.254.169.0/24,host=169.254.169.1,dhcpstart=169.254.169.15,"
        f"guestfwd=tcp:169.254.169.254:80-cmd:busybox nc 127.0.0.1 {imds_port},"
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
    )
    return [
        *ARCHES[arch],
        "-kernel", str(build / "vmlinuz"),
        *(["-initrd", str(build / "initrd.img")] if (build / "initrd.img").exists() else []),
        "-append", recipe(arch)["kernel_cmdline"],
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", netdev,
        "-device", "virtio-net-pci,netdev=n0",
        "-display", "none",
        "-serial", f"file:{console}",
        "-no-reboot",
    ]


class RootMountFailed(Exception):
    """The initramfs could not mount the root volume (console text attached)."""


def initramfs_files(initrd: Path):
    """Names in a gzip'd newc cpio archive."""
    data = gzip.decompress(initrd.read_bytes())
    names, off = [], 0
    while off + 110 <= len(data) and data[off:off + 6] in (b"070701", b"070702"):
        size = int(data[off + 54:off + 62], 16)
        namesize = int(data[off + 94:off + 102], 16)
        name = data[off + 110:off + 110 + namesize - 1].decode(errors="replace")
        if name == "TRAILER!!!":
            break
        names.append(name)
        off = (off + 110 + namesize + 3) & ~3
        off = (off + size + 3) & ~3
    return names


def wait_ready(proc, console: Path, qemu_log: Path, arch: str, timeout: float):
    """Seconds until the console shows the ready line, and the instance id on it."""
    start = time.monotonic()
    last_print = 0.0
    while True:
        text = console.read_text(errors="replace") if console.exists() else ""
        m = READY.search(text)
        elapsed = time.monotonic() - start
        if m:
            return elapsed, m.group(1), text
        tail = "\n".join(text.splitlines()[-40:])
        if proc.poll() is not None:
            pytest.fail(f"[{arch}] QEMU exited ({proc.returncode}) before the ready line\n"
                        f"--- console ---\n{tail}\n--- qemu ---\n{qemu_log.read_text(errors='replace')}")
        for fatal in ("Kernel panic", "kiln-tiny: cannot mount the root volume"):
            if fatal in text:
                time.sleep(1)  # let the console catch up
                text = console.read_text(errors="replace")
                if "cannot mount the root volume" in fatal:
                    raise RootMountFailed(text)
                pytest.fail(f"[{arch}] {fatal!r} after {elapsed:.0f} s\n--- console ---\n{text[-4000:]}")
        if elapsed > timeout:
            pytest.fail(f"[{arch}] no ready line within {timeout:.0f} s\n--- console ---\n{tail}")
        if elapsed - last_print >= 15:
            lines = [l for l in text.splitlines() if l.strip()]
            print(f"[boot {arch}] {elapsed:4.0f} s: {lines[-1][:120] if lines else '(console empty)'}", flush=True)
            last_print = elapsed
        time.sleep(0.25)


def ssh(key: Path, port: int, command: str, timeout: float):
    """Runs `command` as ec2-user, retrying while dropbear comes up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            p = subprocess.run(
                [
                    "ssh", "-i", str(key), "-p", str(port),
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR",
                    "ec2-user@127.0.0.1", command,
                ],
                capture_output=True, text=True, timeout=60,
            )
        except subprocess.TimeoutExpired as e:
            p = subprocess.CompletedProcess(e.cmd, 255, "", f"ssh timed out after {e.timeout} s")
        if p.returncode == 0 or time.monotonic() > deadline:
            return p
        time.sleep(2)


def record(arch, **fields):
    BOOT_TIMES[arch] = fields
    try:
        old = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    except ValueError:
        old = {}
    old[arch] = {**fields, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    SUMMARY.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module", autouse=True)
def _tools():
    missing = [t for t in ("qemu-img", "qemu-system-x86_64", "qemu-system-aarch64", "busybox", "ssh", "ssh-keygen")
               if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing host tools: {', '.join(missing)}")


@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386"])
def test_quickstart_image_boots_and_is_configured_from_imds(arch, quickstart_images, data_dir, tmp_path):
    image = quickstart_images[arch]
    build = find_build(data_dir, arch, image)
    # kiln-tiny's own kernel (x86_64) mounts its root volume itself; Debian's needs the
    # initramfs to load its drivers first.
    own_kernel = "kernel_source" in recipe(arch)
    for f in ("root.qcow2", "vmlinuz", "done", *([] if own_kernel else ["initrd.img"])):
        assert (build / f).is_file(), f"{build} lacks {f}"
    assert own_kernel != (build / "initrd.img").exists(), f"{build}: an initramfs only for Debian's kernel"

    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(build / "root.qcow2"), str(overlay)],
        check=True, capture_output=True, timeout=60,
    )
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kiln-test-{arch}", "-f", str(key)],
                   check=True, capture_output=True, timeout=60)
    public_key = (tmp_path / "id_ed25519.pub").read_text().strip()
    instance_id = f"i-{uuid.uuid4().hex[:17]}"
    marker = uuid.uuid4().hex
    user_data = f"#!/bin/sh\necho {marker} > /home/ec2-user/user-data-marker\n"
    console = tmp_path / "console.log"
    ssh_port = _free_port()

    with FakeImds(instance_id, "ip-169-254-169-15.ec2.internal", public_key, user_data) as imds:
        cmd = qemu_command(arch, build, overlay, imds.port, ssh_port, console)
        print(f"\n[boot {arch}] {' '.join(cmd)}", flush=True)
        qemu_log = tmp_path / "qemu.log"
        with open(qemu_log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            try:
                seconds, served_id, text = wait_ready(proc, console, qemu_log, arch, BOOT_TIMEOUT)
            except RootMountFailed as e:
                initrd = build / "initrd.img"
                modules = [n.rsplit("/", 1)[-1] for n in initramfs_files(initrd) if n.endswith(".ko")] if initrd.exists() else []
                record(arch, ready_seconds=None, image=image["ImageId"], build=build.name,
                       error="root volume not mountable")
                pytest.fail(
                    f"[{arch}] the initramfs could not mount the root volume (modules: {', '.join(modules)})"
                    f"\n--- console ---\n{str(e)[-4000:]}"
                )
            print(f"[boot {arch}] ready after {seconds:.1f} s", flush=True)
            assert served_id == instance_id, f"the guest reports {served_id}, IMDS served {instance_id}\n{text[-3000:]}"
            boot = re.search(r"kiln-tiny: ready .* boot=(\S+)", text)
            assert boot and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", boot.group(1)), (
                f"[{arch}] the ready line should end with the kernel's boot id\n{text[-1000:]}")

            p = ssh(key, ssh_port,
                    "cat ~/.ssh/authorized_keys; echo ---; cat /home/ec2-user/user-data-marker; echo ---; hostname;"
                    " echo ---; uname -r",
                    SSH_TIMEOUT)
            assert p.returncode == 0, f"ssh failed ({p.returncode}): {p.stderr}\n--- console ---\n{console.read_text()[-3000:]}"
            keys, got_marker, hostname, kernel = (part.strip() for part in p.stdout.split("---\n"))
            record(arch, ready_seconds=round(seconds, 1), image=image["ImageId"], build=build.name)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)

    assert keys == public_key
    assert got_marker == marker, f"user data did not run: {got_marker!r}"
    assert hostname == "ip-169-254-169-15"
    # x86_64 runs kiln-tiny's own kernel, built from Debian's linux-source (no flavour
    # suffix); the others run Debian's packaged kernels.
    if arch == "x86_64":
        assert re.fullmatch(r"6\.1\.\d+", kernel), f"not kiln-tiny's own kernel: {kernel}"
    else:
        assert re.fullmatch(r"6\.1\.0-\d+-\S+", kernel), f"not a Debian kernel: {kernel}"

    seen = imds.seen()
    puts = [r for r in seen if r[0] == "PUT"]
    gets = [r for r in seen if r[0] == "GET"]
    assert puts and puts[0][2] == 200, f"no token PUT: {seen}"
    assert gets, seen
    assert all(tokened for _, _, _, tokened in gets), f"GETs without the token (IMDSv1): {seen}"
    paths = {r[1] for r in gets if r[2] == 200}
    for p in ("/latest/meta-data/instance-id", "/latest/meta-data/public-keys/0/openssh-key", "/latest/user-data"):
        assert p in paths, f"the guest never fetched {p}: {seen}"
