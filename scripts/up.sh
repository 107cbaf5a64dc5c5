#!/usr/bin/env bash
# Starts Kiln: installs what is missing, builds the release binary and runs
# `kiln serve` (extra arguments are passed on, e.g. --listen 0.0.0.0:8787).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_debs
ensure_console
say "building kiln (release)"
cargo build --release --locked -q -p kiln --manifest-path "$ROOT/Cargo.toml"
exec "$(target_dir)/release/kiln" serve "$@"
