"""The web console in a real browser: Debian's Chromium, driven by playwright-core
(console/e2e/console.e2e.mjs), against the session's `kiln serve` with the console
compiled in. It signs in, launches kiln-tiny through the wizard with a new key pair
and security group, watches it run, reads its console output, makes an image and
launches from it on the AMI page, terminates both, signs out and sees the old
session's credentials refused. Each page's screenshot goes to a temporary directory,
or to docs/console/ with KILN_CONSOLE_SCREENSHOTS=docs."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KILN_BIN, REPO

CONSOLE = REPO / "console"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js on this machine"),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium (scripts/test.sh installs it)"),
    pytest.mark.skipif(not (CONSOLE / "node_modules" / "playwright-core").is_dir(),
                       reason="the console's npm packages are not installed (scripts/test.sh installs them)"),
]


def test_the_console_launches_images_and_instances_in_chromium(kiln, quickstart_images, tmp_path):
    password = "console end to end"
    p = subprocess.run([KILN_BIN, "account", "password", "operator", "--data-dir", str(kiln.data_dir)],
                       input=password + "\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    shots = REPO / "docs" / "console" if os.environ.get("KILN_CONSOLE_SCREENSHOTS") == "docs" else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KILN_ENDPOINT": kiln.endpoint, "KILN_ACCOUNT": "operator", "KILN_PASSWORD": password,
           "SCREENSHOT_DIR": str(shots)}
    p = subprocess.run(["node", "e2e/console.e2e.mjs"], cwd=CONSOLE, env=env, capture_output=True, text=True,
                       timeout=900)
    print(p.stdout[-4000:])
    assert p.returncode == 0, f"the console's end-to-end run failed:\n{p.stdout[-6000:]}\n{p.stderr[-4000:]}"
    assert {"signin.png", "instances.png", "launch.png", "amis.png"} <= {f.name for f in shots.iterdir()}
