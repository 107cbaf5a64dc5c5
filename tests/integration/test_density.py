"""What an instance costs the host: Kiln's QEMU runs each guest with a bounded TCG
translation cache (kiln-tiny's recipe names its own, smaller) and a virtio-balloon
with free-page reporting; kiln-tiny drives the balloon (its guest statistics reach
QEMU); `kiln host info` shows the VMs' resident memory beside what capacity counts for
them (type memory plus QEMU's overhead)."""

import json
import re
import socket
import subprocess
import time

from conftest import KILN_BIN
from instances_helpers import qemu_of, state_of, tiny_accels, wait_for, wait_state


class Qmp:
    """A QMP connection to one VM's monitor socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # the greeting
        self.call("qmp_capabilities")

    def call(self, command, **arguments):
        self.f.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise AssertionError(f"{command}: {reply['error']}")

    def close(self):
        self.sock.close()


def test_guests_get_a_bounded_cache_and_a_reporting_balloon(kiln, ec2, quickstart_images, data_dir):
    image = quickstart_images["x86_64"]["ImageId"]
    iid = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    try:
        wait_state(ec2, iid, "running", 180)
        pid, argv = wait_for("the instance's QEMU", lambda: qemu_of(data_dir, iid)[0] and qemu_of(data_dir, iid), 60)
        accel = argv[argv.index("-accel") + 1]
        assert accel in tiny_accels(), f"-accel {accel}"
        assert "virtio-balloon-pci,id=balloon0,free-page-reporting=on" in argv

        # The guest's balloon driver answers: its memory statistics reach QEMU.
        wait_for("kiln-tiny to be ready", lambda: "kiln-tiny: ready" in
                 (data_dir / "instances" / iid / "serial.log").read_text(errors="replace"), 180)
        qmp = Qmp(data_dir / "instances" / iid / "qmp.sock")
        try:
            qmp.call("qom-set", path="/machine/peripheral/balloon0", property="guest-stats-polling-interval", value=1)

            def stats():
                s = qmp.call("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")["stats"]
                return s if s.get("stat-total-memory", -1) > 0 else None

            s = wait_for("guest memory statistics through the balloon", stats, 30)
        finally:
            qmp.close()
        total, free = s["stat-total-memory"] >> 20, s["stat-free-memory"] >> 20
        assert 800 <= total <= 1024, f"a t3.micro guest sees {total} MiB"
        assert 0 < free < total

        # `kiln host info`: capacity counts 1024 + 96 MiB for it; QEMU's real RSS shows.
        out = subprocess.run([KILN_BIN, "host", "info", "--accel", "tcg", "--data-dir", str(data_dir)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        m = re.search(r"resident\s+(\d+) MiB in (\d+) QEMU processes", out.stdout)
        assert m and int(m.group(2)) >= 1 and int(m.group(1)) > 0, out.stdout
        assert re.search(r"counted\s+\d+ instances, \d+ vCPUs, \d+ MiB \(types' memory and 96 MiB of QEMU each\)",
                         out.stdout), out.stdout
        assert re.search(r"available\s+\d+ MiB", out.stdout), out.stdout
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
        wait_for(f"{iid} to be terminated", lambda: state_of(ec2, iid) == "terminated", 180)
