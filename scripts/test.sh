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
say "building kiln for the integration suite"
cargo build --locked -q -p kiln
export KILN_BIN="$(target_dir)/debug/kiln"
store="${KILN_TEST_STORE:-sqlite}"
say "integration suite on $store (boto3 and the AWS CLI against kiln serve)"
KILN_TEST_STORE="$store" python -m pytest -q tests/integration "$@"
# Then the whole suite again with every server on PostgreSQL, but for the tests of the
# host and guest alone (the Debian image, egress NAT, QEMU's tuning, kiln-tiny's boot),
# whose servers make the same store calls as every other launch, and test_postgres.py,
# which makes its own stores either way: the two passes in full would not fit CI's time.
# `KILN_TEST_STORE=postgres bash scripts/test.sh` runs all of it on PostgreSQL.
if [ "$store" = "sqlite" ] && [ $# -eq 0 ]; then
  say "integration suite on postgres (all but the host-and-guest-only tests)"
  KILN_TEST_STORE=postgres python -m pytest -q tests/integration \
    --ignore=tests/integration/test_debian.py --ignore=tests/integration/test_egress.py \
    --ignore=tests/integration/test_density.py --ignore=tests/integration/test_tiny_boot.py \
    --ignore=tests/integration/test_postgres.py
fi
