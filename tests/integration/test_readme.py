"""The README's walkthrough, run as written: every block marked `<!-- walkthrough -->`
runs against the session server (its address and data directory replace the README's
127.0.0.1:8787 and /var/lib/kiln), in an empty directory with an empty HOME, with
`kiln` and the AWS CLI on PATH as the set-up commands leave them. So the README
cannot rot."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KILN_BIN, REPO

BLOCK = re.compile(r"<!-- walkthrough -->\n```(\w+)\n(.*?)```", re.S)


def blocks():
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_its_walkthrough():
    assert [lang for lang, _ in blocks()] == ["sh", "sh", "python"]


@pytest.mark.parametrize(
    "index, expect",
    [(0, ("Hello from Kiln", 2)), (1, ("Linux ip-", 1)), (2, ("subnet-", 1))],
    ids=["kiln", "aws-cli", "boto3"],
)
def test_walkthrough_runs_as_written(kiln, quickstart_images, tmp_path, index, expect):
    lang, code = blocks()[index]
    code = code.replace("http://127.0.0.1:8787", kiln.endpoint).replace("/var/lib/kiln", str(kiln.data_dir))
    env = {k: v for k, v in os.environ.items() if k != "KILN_KEYS_DIR"}
    env.update(
        HOME=str(tmp_path),
        PATH=f"{Path(KILN_BIN).parent}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        AWS_PAGER="",
        # `kiln` defaults to http://127.0.0.1:8787; this is the session server instead.
        AWS_ENDPOINT_URL=kiln.endpoint,
    )
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, errors="replace", timeout=900)
    assert out.returncode == 0, f"README block {index} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    text, times = expect
    assert out.stdout.count(text) == times, out.stdout[-3000:]
