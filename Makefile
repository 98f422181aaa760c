# edgeseal task runner. The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
STATE ?= $(CURDIR)/.state
PLUGIN_DIR := $(STATE)/libexec/edgeseal

.PHONY: all deps test-deps build test lint fmt bench run fuzz clean

all: build

deps:
	@scripts/ensure-deps.sh rust

## What the integration tests start for real: OpenBao (PyPI), swtpm + tpm2-tools, openssl.
test-deps: deps
	@scripts/ensure-deps.sh openbao tpm openssl

build: deps
	$(CARGO) build --workspace --locked --bins

## make test: install what is missing, then run every test (unit, integration, CLI).
test: test-deps
	EDGESEAL_BAO="$$(scripts/ensure-deps.sh --bao-path)" $(CARGO) test --workspace --locked --all-targets

## make lint: formatting and clippy with warnings as errors.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

## make bench: benchmarks print figures side by side with the alternative (none yet: see README).
bench: build
	@echo "make bench: no benchmark yet — the first ones arrive with pki-init and secretstore-setup (see README, Status)."

## make run: build, install the hardware-fingerprint plug-in under $(STATE), and run what exists today.
run: build
	@install -d -m 0755 $(PLUGIN_DIR)
	@install -m 0755 target/debug/edgeseal-kdf-hwfp $(PLUGIN_DIR)/edgeseal-kdf-hwfp
	@echo "== edgeseal-kdf-hwfp --explain (which hardware identifiers this device offers; names only)"
	@$(PLUGIN_DIR)/edgeseal-kdf-hwfp --explain
	@echo "== security-bootstrap kdf check"
	target/debug/security-bootstrap kdf check --plugin $(PLUGIN_DIR)/edgeseal-kdf-hwfp
	@echo
	@echo "Not yet: the full boot (pki-init -> OpenBao unseal -> token server) is still being built;"
	@echo "today edgeseal derives the device KEK and manages the encrypted keystore (see README, Status)."

## make fuzz: run every fuzz target for FUZZ_SECONDS each (needs nightly and cargo-fuzz).
FUZZ_SECONDS ?= 60
fuzz:
	@for t in $$(ls fuzz/fuzz_targets | sed 's/\.rs$$//'); do fuzz/run.sh $$t $(FUZZ_SECONDS) || exit 1; done

clean:
	$(CARGO) clean
	rm -rf $(STATE)
