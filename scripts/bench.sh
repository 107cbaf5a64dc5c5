#!/usr/bin/env bash
# Kiln's benchmarks (the dev-only `kiln-bench`, beside a release `kiln`): `api` by
# default, or the bench named by the first argument (`bash scripts/bench.sh load
# --flood`); installs wrk and moto_server, the baseline of `api` and `load`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_venv
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked -q -p kiln -p kiln-bench --manifest-path "$ROOT/Cargo.toml"
what="${1:-api}"; [ $# -gt 0 ] && shift
case "$what" in
  api|load) set -- --moto "$ROOT/.venv/bin/moto_server" "$@" ;;
esac
exec "$(target_dir)/release/kiln-bench" "$what" "$@"
