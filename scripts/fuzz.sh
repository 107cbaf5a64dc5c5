#!/usr/bin/env bash
# Fuzzes what Kiln parses from outside (Query decoding, SigV4, and the DHCP, DNS and
# metadata requests of guests) with cargo fuzz (libFuzzer), each target for
# FUZZ_SECONDS (default 45) from its kept corpus in fuzz/corpus/<target>. A panic or a
# sanitizer report fails the run and leaves the input in fuzz/artifacts/<target>.
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP lets this machine's one stable
# toolchain provide them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
if ! command -v cargo-fuzz >/dev/null; then
  say "installing cargo-fuzz"
  cargo install --locked -q cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-45}"
say "building the fuzz targets"
cargo fuzz build -O
for target in query sigv4 dhcp dns imds; do
  say "fuzzing $target for $seconds s"
  # A scratch copy of the corpus: what a run finds stays out of the repository.
  work="$(mktemp -d)"
  cp -r "fuzz/corpus/$target/." "$work/"
  log="$work.log"
  status=0
  cargo fuzz run -O "$target" "$work" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    > "$log" 2>&1 || status=$?
  grep -E 'stat::number_of_executed_units|ERROR|panicked|SUMMARY' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    say "fuzz target $target failed: the input is in fuzz/artifacts/$target"
    exit "$status"
  fi
  rm -rf "$work" "$log"
done
