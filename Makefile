# edgeseal task runner. The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
STATE ?= $(CURDIR)/.state
PLUGIN_DIR := $(STATE)/libexec/edgeseal

.PHONY: all deps test-deps build test lint fmt bench soak run fuzz clean

all: build

deps:
	@scripts/ensure-deps.sh rust

## What the integration tests start for real: OpenBao (PyPI), swtpm + tpm2-tools, openssl, dockerd;
## and the reference OpenMetrics parser (prometheus_client, PyPI) the metrics test reads /metrics with.
test-deps: deps
	@scripts/ensure-deps.sh openbao python tpm openssl docker age

build: deps
	$(CARGO) build --workspace --locked --bins

## make test: install what is missing, then run every test (unit, integration, CLI).
test: test-deps
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" EDGESEAL_PYTHON="$$(scripts/ensure-deps.sh --python-path)" $(CARGO) test --workspace --locked --features security-bootstrap/crash-points

## make lint: formatting and clippy with warnings as errors.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## make bench: benchmarks, each printed side by side with the alternative a user would pick (release builds).
# Every bench appends its figures to $(BENCH_SUMMARY); bench-summary prints them as one table at the end.
BENCH_SUMMARY := $(CURDIR)/target/bench-summary.jsonl
bench: export EDGESEAL_BENCH_SUMMARY = $(BENCH_SUMMARY)
bench: test-deps
	@scripts/ensure-deps.sh bench
	$(CARGO) build --release --workspace --locked --bins
	@mkdir -p $(dir $(BENCH_SUMMARY)) && rm -f $(BENCH_SUMMARY)
	PKI_BENCH_DIR=$(dir $(BENCH_SUMMARY)) $(CARGO) bench --locked -p pki-init
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench setup
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench tokens
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench boot
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench admin
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench backup
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench secrets
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench cluster
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench fleet
	$(CARGO) bench --locked -p edgeseal-tests --bench tpm
	$(CARGO) run --release --locked -p edgeseal-client --example cached_get
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench soak
	$(CARGO) run --release --locked -q -p edgeseal-tests --bin bench-summary -- $(BENCH_SUMMARY)

## make soak: OpenBao SIGKILLed BENCH_CRASHES times (default 20) under token load, for both seals (also the end of make bench).
soak: test-deps
	@scripts/ensure-deps.sh bench
	$(CARGO) build --release --workspace --locked --bins
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) bench --locked -p edgeseal-tests --bench soak

## make run: install what is missing, build, and run the whole boot against a supervised local OpenBao.
run: build
	@EDGESEAL_STATE=$(STATE) scripts/ensure-deps.sh openbao
	@EDGESEAL_STATE=$(STATE) scripts/demo.sh

## make fuzz: run every fuzz target for FUZZ_SECONDS each (needs nightly and cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	@for t in $$(ls fuzz/fuzz_targets | sed 's/\.rs$$//'); do fuzz/run.sh $$t $(FUZZ_SECONDS) || exit 1; done

clean:
	$(CARGO) clean
	rm -rf $(STATE)
