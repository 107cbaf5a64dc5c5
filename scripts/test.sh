#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit tests, a bounded fuzzing run of
# each fuzz target, then the integration suite, which starts real `kiln serve`
# processes and drives them with boto3 and the AWS CLI. Installs whatever is missing
# first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_venv
ensure_browser
ensure_console
cd "$ROOT"
# CI builds in a fresh clone every time: its cargo builds (clippy, tests, fuzz targets,
# kiln) share one target directory for the machine, so a clone compiles what changed
# rather than every dependency again (about 10 of CI's minutes here). Cargo's own
# fingerprints decide what is stale; a directory grown past 40 GiB is started afresh.
# Outside CI, builds stay in the clone's target/ (or CARGO_TARGET_DIR).
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/kiln/cargo-target"
  if [ -d "$CARGO_TARGET_DIR" ] && [ "$(du -s --block-size=1G "$CARGO_TARGET_DIR" | cut -f1)" -gt 40 ]; then
    say "the shared cargo target directory is over 40 GiB: starting it afresh"
    rm -rf "$CARGO_TARGET_DIR"
  fi
  say "cargo builds in $CARGO_TARGET_DIR (shared by CI's clones)"
fi
if [ -d console/node_modules ]; then
  say "console unit tests (Vitest)"
  (cd console && npm test --silent)
fi
say "cargo fmt --check"
cargo fmt --all -- --check
say "the instance-type catalog matches moto's dump"
python "$ROOT/scripts/gen-instance-types.py" --check
say "cargo clippy"
cargo clippy --locked -q --all-targets -- -D warnings
# A PostgreSQL cluster of the suite's own (Debian's postgresql, an unprivileged user, a
# free port, a temporary directory), for the store's PostgreSQL tests, test_postgres.py
# and the PostgreSQL pass.
pg_dir=$(mktemp -d /tmp/kiln-test-pg.XXXXXX)
trap 'stop_postgres "$pg_dir"; rm -rf "$pg_dir"' EXIT
start_postgres "$pg_dir"
say "cargo test"
cargo test --locked -q --workspace
# CI runs the short form (15 s a target); `bash scripts/fuzz.sh` alone runs longer.
fuzz_default=40; [ "${CI:-}" = "true" ] && fuzz_default=15
say "fuzzing (each target ${FUZZ_SECONDS:-$fuzz_default} s from its kept corpus)"
FUZZ_SECONDS="${FUZZ_SECONDS:-$fuzz_default}" bash "$ROOT/scripts/fuzz.sh"
# Downloaded Debian packages and kiln-tiny's built kernel, kept by content hash: one
# cache for the machine, so a fresh clone (CI's) does not build the kernel again.
export KILN_TEST_CACHE="${KILN_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln/test}"
mkdir -p "$KILN_TEST_CACHE"
say "building kiln for the integration suite"
cargo build --locked -q -p kiln
export KILN_BIN="$(target_dir)/debug/kiln"
store="${KILN_TEST_STORE:-sqlite}"
say "integration suite on $store (boto3 and the AWS CLI against kiln serve)"
# The slowest tests are listed at the end, so that CI's time is seen where it goes.
KILN_TEST_STORE="$store" python -m pytest -q --durations=25 tests/integration "$@"
# Then a second pass with every server on PostgreSQL. In CI (the short form): every
# test of the API and the store (accounts, keys, groups, VPCs, routing, tags, images,
# launch templates, placement groups, hosts, isolation, protocol, STS, the console's
# API, pools) and the crash and kill -9 tests (and a restart's takeover of running VMs); the tests whose time goes to guests and
# clients rather than the store (Debian, Terraform, Ansible, Chromium, VM networking)
# would not fit CI's time twice. `KILN_TEST_STORE=postgres bash scripts/test.sh` (the
# long form) runs every test on PostgreSQL.
if [ "$store" = "sqlite" ] && [ $# -eq 0 ]; then
  say "integration suite on postgres (the API, store and crash tests)"
  KILN_TEST_STORE=postgres python -m pytest -q \
    tests/integration/test_key_pairs.py tests/integration/test_security_groups.py tests/integration/test_vpcs.py \
    tests/integration/test_tags.py tests/integration/test_routing.py tests/integration/test_protocol.py \
    tests/integration/test_regions_types.py tests/integration/test_sts.py tests/integration/test_console_api.py \
    tests/integration/test_launch_templates.py tests/integration/test_isolation.py \
    tests/integration/test_placement_groups.py tests/integration/test_hosts.py tests/integration/test_pools.py \
    tests/integration/test_images.py tests/integration/test_durable.py \
    tests/integration/test_instances.py::test_crash_recovery_adopts_vms
fi
