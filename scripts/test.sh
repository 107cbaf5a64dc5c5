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
say "cargo test"
cargo test --locked -q --workspace
# CI runs the short form (25 s a target); `bash scripts/fuzz.sh` alone runs longer.
fuzz_default=40; [ "${CI:-}" = "true" ] && fuzz_default=25
say "fuzzing (each target ${FUZZ_SECONDS:-$fuzz_default} s from its kept corpus)"
FUZZ_SECONDS="${FUZZ_SECONDS:-$fuzz_default}" bash "$ROOT/scripts/fuzz.sh"
say "building kiln for the integration suite"
cargo build --locked -q -p kiln
say "integration suite (boto3 and the AWS CLI against kiln serve)"
KILN_BIN="$(target_dir)/debug/kiln" python -m pytest -q tests/integration "$@"
