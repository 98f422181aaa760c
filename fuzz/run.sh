#!/usr/bin/env bash
# Runs one fuzz target for a fixed time, starting from the committed seeds.
#
#   fuzz/run.sh TARGET SECONDS [LIBFUZZER_ARGS...]
#   fuzz/run.sh keystore_parse 300
#
# TARGET is one of: keystore_parse plugin_output edgex_resp_init hwfp_parse token_request client_response pem_decode
# tpm2_output tpm2_response config_parse fleet_records (`cargo fuzz list`).
# The seeds in fuzz/seeds/TARGET/ are copied into fuzz/corpus/TARGET/ (gitignored), which keeps
# growing across runs; crashes land in fuzz/artifacts/TARGET/. Needs nightly and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). Exit status: 0 when the time ran out with no crash.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [LIBFUZZER_ARGS...]" >&2
    exit 64
fi
target=$1
seconds=$2
shift 2

here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$here/fuzz_targets/$target.rs" ]; then
    echo "no fuzz target $target: expected $here/fuzz_targets/$target.rs" >&2
    exit 64
fi
case $seconds in
    '' | *[!0-9]*) echo "SECONDS must be a whole number, got $seconds" >&2; exit 64 ;;
esac
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz or the nightly toolchain is missing:" >&2
    echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 1
fi

corpus=$here/corpus/$target
mkdir -p "$corpus"
if [ -d "$here/seeds/$target" ]; then
    cp -n "$here/seeds/$target"/* "$corpus"/ 2>/dev/null || true
fi

cd "$here/.."
exec cargo +nightly fuzz run --fuzz-dir "$here" "$target" "$corpus" -- \
    -max_total_time="$seconds" -print_final_stats=1 "$@"
