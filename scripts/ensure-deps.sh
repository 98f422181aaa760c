#!/usr/bin/env bash
# Installs what edgeseal's build and tests need on a Debian 12 machine, and only what is missing.
# Idempotent and fast when everything is present. Usage: scripts/ensure-deps.sh [rust] ...
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

for what in "${@:-rust}"; do
    case "$what" in
        rust) ensure_rust ;;
        *) echo "ensure-deps: unknown component $what" >&2; exit 64 ;;
    esac
done
