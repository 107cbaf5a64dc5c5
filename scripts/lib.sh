# Shared by the set-up scripts: install what is missing, quietly, and say so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

# Where cargo puts builds: target/ unless CARGO_TARGET_DIR (or a cargo config) says
# otherwise; cargo itself answers.
target_dir() {
  cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# Debian packages the cloud and the tests need, each installed when its command is
# missing. One apt-get call per package: Debian's QEMU packages can disagree with a
# backported qemu-utils, and one refusal must not stop the others.
ensure_debs() {
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local updated=""
  local pair cmd pkg
  for pair in openssl:openssl ssh-keygen:openssh-client ssh:openssh-client python3:python3 \
              qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm qemu-img:qemu-utils \
              busybox:busybox-static cpio:cpio mkfs.ext4:e2fsprogs dpkg-deb:dpkg \
              ip:iproute2 nft:nftables mmdebstrap:mmdebstrap curl:curl prlimit:util-linux \
              make:make gcc:gcc flex:flex bison:bison bc:bc xz:xz-utils \
              /usr/include/gelf.h:libelf-dev /usr/include/openssl/ssl.h:libssl-dev; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    # A command on PATH, or (for build headers) a file.
    { command -v "$cmd" >/dev/null || [ -e "$cmd" ]; } && continue
    if [ -z "$updated" ]; then say "updating the package lists"; $sudo apt-get update -qq || true; updated=1; fi
    say "installing $pkg (for $cmd)"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
  done
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    [ -n "$updated" ] || $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    say "cargo is missing: install Rust with rustup (https://rustup.rs) and run this again"
    exit 1
  fi
}

# The Python venv with the AWS CLI, boto3, pytest and moto, in $ROOT/.venv.
ensure_venv() {
  local venv="$ROOT/.venv" stamp="$ROOT/.venv/.requirements"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating the Python venv in .venv"
    python3 -m venv "$venv"
  fi
  if ! cmp -s "$ROOT/tests/requirements.txt" "$stamp"; then
    say "installing the test clients (boto3, awscli, pytest, moto) into .venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/requirements.txt"
    cp "$ROOT/tests/requirements.txt" "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
}

# Debian's Chromium, for the console's end-to-end tests (Playwright drives it; it
# downloads no browser of its own).
ensure_browser() {
  command -v chromium >/dev/null && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing chromium (for the console's browser tests)"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# The web console, built into console/dist before cargo compiles it into kiln. Its
# npm packages are installed from the lockfile only when the lockfile changed.
# Without npm, kiln still builds and serves a page saying the console was not built.
ensure_console() {
  local dir="$ROOT/console"
  [ -f "$dir/package.json" ] || return 0
  if ! command -v npm >/dev/null; then
    say "npm is missing: kiln will be built without its console (install Node.js 20 and npm to have it)"
    return 0
  fi
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.package-lock.json" 2>/dev/null; then
    say "installing the console's npm packages"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  say "building the console"
  (cd "$dir" && npm run --silent build >/dev/null)
}

# PostgreSQL's server programs from Debian (`postgresql`), for the tests that run Kiln
# on PostgreSQL; prints their directory.
ensure_postgres() {
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    say "installing postgresql"
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)"
}

# Starts a PostgreSQL cluster of its own in DIR (made here; nothing else is assumed to
# run), as an unprivileged user, on a free loopback port, and exports
# KILN_TEST_POSTGRES, the URL of its `postgres` database as superuser `kiln`.
# fsync is off: the cluster holds only test data and is thrown away.
start_postgres() {
  local dir=$1 bin port as=()
  bin=$(ensure_postgres)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"; as=(runuser -u postgres --)
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U kiln -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  export KILN_TEST_POSTGRES="postgres://kiln@127.0.0.1:$port/postgres"
  say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') for the tests at 127.0.0.1:$port ($dir)"
}

# Stops the cluster start_postgres made in DIR.
stop_postgres() {
  local dir=$1 bin as=()
  bin=$(ensure_postgres)
  [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}
