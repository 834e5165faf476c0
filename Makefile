# jetsource: the two commands a new user needs are `make up` and `make test`.
SHELL := /bin/bash
NATS_SERVER := .tools/bin/nats-server

.PHONY: up test bench lint server check-assets conformance browser

## up: install the pinned nats-server if missing, build, and run every service (factory up)
up: $(NATS_SERVER)
	cargo build --release -p factory
	./target/release/factory up

## test: every test of the workspace against real nats-servers the tests start
test: $(NATS_SERVER)
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	cargo test --workspace --doc
	$(MAKE) check-assets
	$(MAKE) conformance
	$(MAKE) browser

## conformance: schemathesis, driven by the served /openapi.json, against a running factory up
conformance: $(NATS_SERVER)
	services/factory/conformance/run.sh

## browser: the web console in Debian's headless Chromium against a running factory up
## (SHOTS=docs/img refreshes the README's screenshots)
browser: $(NATS_SERVER)
	services/factory/browser/run.sh

## check-assets: Kubernetes manifests (kustomize + kubernetes-validate --strict, CRDs included; the NATS config by nats-server -t),
## Prometheus config, rules and rule tests (promtool), Grafana dashboards (@grafana/schema + tsc)
check-assets:
	k8s/check/run.sh
	observability/check/run.sh

## bench: every benchmark, each with its raw JetStream baseline from the same run
bench: $(NATS_SERVER)
	cargo build --release -p factory -p jetsource-bench
	./target/release/jetsource-bench all

## lint: formatting and clippy, as before every commit
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## server: just install the pinned nats-server into .tools/
server: $(NATS_SERVER)

$(NATS_SERVER): nats/install-server.sh nats/server-requirements.txt
	nats/install-server.sh
