# Sourced by the observability scripts: Debian's prometheus package, unpacked into
# .tools/prometheus (not installed), for `promtool` and the `prometheus` server.
#
# prometheus_bin <promtool|prometheus>: the path of that binary (one on PATH first).
prometheus_bin() {
  local name="$1" found
  found="$(command -v "$name" || true)"
  if [ -n "$found" ]; then
    echo "$found"
    return
  fi
  local tools="$PWD/.tools/prometheus"
  if [ ! -x "$tools/usr/bin/$name" ]; then
    echo "fetching Debian's prometheus package into .tools/prometheus" >&2
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; })
    mkdir -p "$tools"
    dpkg -x "$tmp"/prometheus_*.deb "$tools"
    rm -rf "$tmp"
  fi
  echo "$tools/usr/bin/$name"
}
