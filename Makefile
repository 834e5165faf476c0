# jetsource: the two commands a new user needs are `make up` and `make test`.
SHELL := /bin/bash
NATS_SERVER := .tools/bin/nats-server

.PHONY: up test bench bench-peer lint deny server check-assets conformance browser observe

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
	$(MAKE) deny
	$(MAKE) conformance
	$(MAKE) browser
	$(MAKE) observe

## conformance: schemathesis, driven by the served /openapi.json, against a running factory up
conformance: $(NATS_SERVER)
	services/factory/conformance/run.sh

## browser: the web console in Debian's headless Chromium against a running factory up
## (SHOTS=docs/img refreshes the README's screenshots)
browser: $(NATS_SERVER)
	services/factory/browser/run.sh

## observe: Prometheus (Debian's, unpacked) scraping `factory up` under a generated workload:
## every alert rule and dashboard query evaluated on real data (IMG=docs/img redraws the
## README's panel picture)
observe: $(NATS_SERVER)
	observability/observe/run.sh

## check-assets: Kubernetes manifests (kustomize + kubernetes-validate --strict, CRDs included; the NATS config by nats-server -t),
## Prometheus config, rules and rule tests (promtool), Grafana dashboards (@grafana/schema + tsc)
check-assets:
	k8s/check/run.sh
	observability/check/run.sh

## bench: every benchmark, each with its raw JetStream baseline from the same run; the append,
## command and projection suites on R1, R1 fsync'd, R3 and R3 fsync'd
bench: $(NATS_SERVER)
	cargo build --release -p factory -p jetsource-bench
	./target/release/jetsource-bench all

## bench-peer: the factory's commands beside cqrs-es + postgres-es on a PostgreSQL from Debian's
## packages (unpacked into .tools/postgres), fsync on both sides; its own crate, outside the
## workspace and `make test`
bench-peer: $(NATS_SERVER)
	bench/peer/postgres.sh
	cargo build --release --manifest-path bench/peer/Cargo.toml --target-dir target/peer
	cargo build --release -p factory -p jetsource-bench
	./target/release/jetsource-bench peer

## lint: formatting and clippy, as before every commit
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) deny

## deny: licences, bans (duplicate majors) and sources of every dependency (deny.toml), with
## cargo-deny built once into .tools/; advisories too when the RustSec database (on GitHub)
## can be fetched from this machine
CARGO_DENY := .tools/cargo-deny/bin/cargo-deny
deny:
	@[ -x $(CARGO_DENY) ] || cargo install --quiet cargo-deny --locked --version 0.20.2 --root .tools/cargo-deny
	$(CARGO_DENY) check bans licenses sources
	@if curl -sf --max-time 5 -o /dev/null https://github.com/rustsec/advisory-db; then \
		$(CARGO_DENY) check advisories; \
	else \
		echo "deny: advisories not checked: the RustSec database (github.com/rustsec/advisory-db) cannot be reached from here"; \
	fi

## server: just install the pinned nats-server into .tools/
server: $(NATS_SERVER)

$(NATS_SERVER): nats/install-server.sh nats/server-requirements.txt
	nats/install-server.sh
