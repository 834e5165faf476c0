#!/usr/bin/env bash
# Renders every overlay with kustomize and validates every object with kubernetes-validate
# --strict, custom resources (NACK, KEDA) included, and the Prometheus Operator's objects against
# its published schemas. Installs what it needs into .tools/ (and k8s/check/monitoring/node_modules).
# Fails on an object it cannot validate, so nothing passes by being skipped; then checks what the
# objects mean together (k8s/check/refs.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS="$PWD/.tools"
K8S_VERSION=1.32.0
VALIDATE="kubernetes-validate==1.37.0"

kubectl_bin() {
    if command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
        command -v kubectl
        return
    fi
    local local_kubectl="$TOOLS/kubectl/usr/bin/kubectl"
    if [ ! -x "$local_kubectl" ]; then
        echo "k8s check: fetching Debian's kubernetes-client into .tools/kubectl" >&2
        local tmp
        tmp="$(mktemp -d)"
        (cd "$tmp" && apt-get download kubernetes-client >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download kubernetes-client >/dev/null; })
        mkdir -p "$TOOLS/kubectl"
        dpkg -x "$tmp"/kubernetes-client_*.deb "$TOOLS/kubectl"
        rm -rf "$tmp"
    fi
    echo "$local_kubectl"
}

KUBECTL="$(kubectl_bin)"
PYLIB="$TOOLS/kubernetes-validate"
if [ ! -f "$PYLIB/.installed-1.37.0" ]; then
    echo "k8s check: installing $VALIDATE into .tools/kubernetes-validate" >&2
    rm -rf "$PYLIB"
    python3 -m pip install --quiet --disable-pip-version-check --target "$PYLIB" "$VALIDATE"
    touch "$PYLIB/.installed-1.37.0"
fi
export PYTHONPATH="$PYLIB"
python3 k8s/check/crd_schemas.py "$K8S_VERSION" k8s/check/crds/*.yml

OUT="$TOOLS/rendered"
mkdir -p "$OUT"
status=0
# The Prometheus Operator's kinds are validated by its published schemas (monitoring/), the
# rest by kubernetes-validate.
if [ ! -d k8s/check/monitoring/node_modules/@kubernetes-models/prometheus-operator ]; then
    (cd k8s/check/monitoring && npm ci --no-audit --no-fund --loglevel=error)
fi
for tree in overlays/dev overlays/prod extras/keda extras/prometheus-operator; do
    name="$(echo "$tree" | tr / -)"
    if ! "$KUBECTL" kustomize "k8s/$tree" > "$OUT/$name.yaml" 2> "$OUT/$name.err"; then
        grep -v '^# Warning' "$OUT/$name.err" >&2 || true
        echo "k8s check: kustomize failed for k8s/$tree" >&2
        status=1
        continue
    fi
    node k8s/check/monitoring/validate.mjs "$OUT/$name.yaml" > "$OUT/$name.core.yaml" || status=1
    report="$(python3 -m kubernetes_validate --strict -k "$K8S_VERSION" "$OUT/$name.core.yaml" 2>&1)" || status=1
    if echo "$report" | grep -Eq "ERROR|Couldn't find schema|could not be validated"; then
        status=1
    fi
    echo "$report" | grep -Ev "^INFO .* passed" || true
    # Meaning, not only shape: objects at all, selectors, Service ports, Secret and ConfigMap
    # names; prod's NATS users Secret is created by the operator (k8s/overlays/prod).
    external=()
    [ "$tree" = overlays/dev ] || external=(--external Secret/factory-nats-users)
    python3 k8s/check/refs.py "${external[@]}" "$OUT/$name.yaml" || status=1
    echo "k8s/$tree: $(grep -c '^kind:' "$OUT/$name.yaml") objects rendered and validated (Kubernetes $K8S_VERSION, strict)"
done
# The NATS configuration the StatefulSet runs, as nats-server itself reads it (`-t`): the
# generated nats.conf with its accounts and every per-service user, each password variable it
# names set to a placeholder.
NATS_SERVER="$TOOLS/bin/nats-server"
[ -x "$NATS_SERVER" ] || make -s .tools/bin/nats-server
conf="$(mktemp -d)"
cp k8s/base/nats/nats.conf k8s/base/nats/accounts.conf "$conf/"
vars="POD_NAME=nats-0 $(grep -oh '\$[A-Z_]*_PASSWORD' "$conf"/*.conf | sort -u | sed 's/^\$//; s/$/=placeholder/' | tr '\n' ' ')"
if (cd "$conf" && env $vars "$NATS_SERVER" -t -c nats.conf >/dev/null); then
    echo "k8s/base/nats: nats.conf and accounts.conf valid for nats-server $("$NATS_SERVER" --version | awk '{print $2}') ($(grep -c 'user:' "$conf/accounts.conf") users)"
else
    echo "k8s check: nats-server -t refused k8s/base/nats/nats.conf" >&2
    status=1
fi
rm -rf "$conf"
exit $status
