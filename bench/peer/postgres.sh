#!/usr/bin/env bash
# Unpacks Debian's PostgreSQL server package into <repo>/.tools/postgres (not installed: no
# root-wide install, no cluster, no service), for the peer benchmark (bench/peer). The same way
# observability/check/tools.sh unpacks prometheus: `apt-get download` the .deb files into a temp
# dir, `dpkg -x` them into .tools/.
#
# Besides postgresql-15 itself it fetches only the shared libraries it depends on (directly or
# through other libraries) that are not installed on this machine; those land in
# .tools/postgres/usr/lib/<triplet>, which jetsource-peer-bench puts on LD_LIBRARY_PATH when it
# starts the server. The package's other dependencies (postgresql-common, the client, locales,
# ssl-cert, debconf) serve Debian's cluster management, which the benchmark does not use.
#
# Idempotent: does nothing when .tools/postgres/usr/lib/postgresql/*/bin/postgres exists.
#
# Environment: POSTGRES_PACKAGE (default postgresql-15, Debian bookworm's server),
# POSTGRES_TOOLS (default <repo>/.tools/postgres).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
package="${POSTGRES_PACKAGE:-postgresql-15}"
tools="${POSTGRES_TOOLS:-$repo/.tools/postgres}"

shopt -s nullglob
existing=("$tools"/usr/lib/postgresql/*/bin/postgres)
shopt -u nullglob
if [ "${#existing[@]}" -gt 0 ]; then
  echo "postgres already unpacked: ${existing[0]}"
  exit 0
fi

# The package lists are needed by apt-cache and apt-get download; refresh them once if the
# package is unknown (a fresh machine may have none).
if ! apt-cache show "$package" >/dev/null 2>&1; then
  echo "apt-get update (no package list knows $package yet)"
  apt-get update -qq >/dev/null
fi

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

# The hard dependencies of package $1 (first alternative of each, virtual names skipped).
depends() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$1" 2>/dev/null |
    sed -n 's/^ *|\?Depends: \([^<][^ ]*\)$/\1/p' | sed 's/:any$//' | sort -u
}

# Breadth-first over library dependencies: the server itself, plus every lib*/zlib1g package in
# its dependency closure that is not installed.
fetch=("$package")
queue=("$package")
declare -A seen=(["$package"]=1)
while [ "${#queue[@]}" -gt 0 ]; do
  current="${queue[0]}"
  queue=("${queue[@]:1}")
  for dep in $(depends "$current"); do
    case "$dep" in lib* | zlib1g) ;; *) continue ;; esac
    [ -n "${seen[$dep]:-}" ] && continue
    seen[$dep]=1
    if installed "$dep"; then
      continue
    fi
    echo "  $dep is not installed: fetching it too"
    fetch+=("$dep")
    queue+=("$dep")
  done
done
if ! installed tzdata; then
  # The server reads time zones from /usr/share/zoneinfo (an absolute path, so an unpacked
  # tzdata would not be found); the benchmark runs with timezone=UTC, which needs no files.
  echo "  note: tzdata is not installed; the server will only know UTC"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# As root, apt-get download drops to the _apt user, which must be able to write here.
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
  chown _apt "$tmp"
fi
echo "fetching Debian's ${fetch[*]} into $tmp"
(cd "$tmp" && apt-get download "${fetch[@]}" >/dev/null)
mkdir -p "$tools"
for deb in "$tmp"/*.deb; do
  echo "  dpkg -x $(basename "$deb") $tools"
  dpkg -x "$deb" "$tools"
done

shopt -s nullglob
unpacked=("$tools"/usr/lib/postgresql/*/bin/postgres)
shopt -u nullglob
if [ "${#unpacked[@]}" -eq 0 ]; then
  echo "error: no usr/lib/postgresql/*/bin/postgres in $tools after unpacking" >&2
  exit 1
fi
echo "postgres unpacked: ${unpacked[0]}"
