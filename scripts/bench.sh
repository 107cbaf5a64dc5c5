#!/usr/bin/env bash
# Benchmarks the API path against moto_server (see `kiln bench api --help`).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_venv
cargo build --release --locked -q -p kiln --manifest-path "$ROOT/Cargo.toml"
exec "$ROOT/target/release/kiln" bench api --moto "$ROOT/.venv/bin/moto_server" "$@"
