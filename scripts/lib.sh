# Shared by the set-up scripts: install what is missing, quietly, and say so.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }

# Debian packages the tests and the cloud need, installed when a command is missing.
ensure_debs() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
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
