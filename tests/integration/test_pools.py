"""Two Kilns on one machine never share a public address pool: a second `kiln serve`
whose pool overlaps the running one's refuses to start (it would take over the first
one's host routes and cut its instances off). A second server of one data directory is
refused on SQLite (one file, one writer); on PostgreSQL servers may share a data
directory, but only with the same pool."""

import os
import shutil
import socket
import subprocess

import pytest

from instances_helpers import KILN_BIN
from kiln_helpers import database_args

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft"), reason="VPC networking (and its pools) needs root and nftables"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir, pool):
    return subprocess.run(
        [KILN_BIN, "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}",
         "--no-quickstart", "--network", "vpc", "--public-ip-pool", pool],
        capture_output=True, text=True, timeout=60,
    )


def test_an_overlapping_pool_is_refused(kiln, tmp_path):
    # The session's Kiln routes 100.64.1.0/24 (conftest); a /25 inside it overlaps.
    p = serve(tmp_path / "second", "100.64.1.128/25")
    assert p.returncode != 0, p.stdout + p.stderr
    assert "overlaps 100.64.1.0/24" in p.stderr and "--public-ip-pool" in p.stderr, p.stderr
    assert not (tmp_path / "second" / "kiln.db").exists(), "nothing was made"


def test_a_second_server_of_one_data_directory_is_refused(kiln):
    p = serve(kiln.data_dir, "100.64.9.0/24")
    assert p.returncode != 0, p.stdout + p.stderr
    if database_args():
        # PostgreSQL: a second server may join the data directory, not with another pool.
        assert "routes the pool 100.64.1.0/24" in p.stderr and "same --public-ip-pool" in p.stderr, p.stderr
    else:
        assert "already running with the data directory" in p.stderr, p.stderr
