#!/usr/bin/env bash
# `make run`: the whole edgeseal boot on this machine, against a supervised local OpenBao, with the
# hardware-fingerprint KDF plug-in. State lives in $EDGESEAL_STATE (default .state/); a second run
# reuses it (OpenBao opens itself with its static seal key; nothing is re-initialized). `--once` starts, fetches a token, reads the secret, and stops (tests).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
STATE="${EDGESEAL_STATE:-$REPO/.state}"
DEMO="${EDGESEAL_DEMO_DIR:-$STATE/demo}"
PORT="${EDGESEAL_DEMO_PORT:-18300}"
BIN="${EDGESEAL_BIN:-$REPO/target/debug}"
ONCE=0
[ "${1:-}" = "--once" ] && ONCE=1

# Linux 6.5 or later (the first kernel with SO_PEERPIDFD)?
kernel_has_peerpidfd() {
    local release major minor
    release=$(uname -r)
    major=${release%%.*}
    minor=${release#*.}; minor=${minor%%[!0-9]*}
    [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "${minor:-0}" -ge 5 ]; }
}

BAO=$(scripts/ensure-deps.sh --bao-path)
install -d -m 0755 "$STATE" "$STATE/libexec" "$STATE/libexec/edgeseal"
install -m 0755 "$BIN/edgeseal-kdf-hwfp" "$STATE/libexec/edgeseal/edgeseal-kdf-hwfp"
install -d -m 0700 "$DEMO"
CONFIG="$DEMO/edgeseal.yaml"
# SO_PEERPIDFD (Linux 6.5+) pins a caller from the moment it connected. Older kernels (Debian 12's
# 6.1) lack it, and the token server then refuses callers unless told to pin by /proc alone.
PIDFD_LINE=""
if ! kernel_has_peerpidfd; then
    PIDFD_LINE="  allow_without_pidfd: true   # kernel $(uname -r) has no SO_PEERPIDFD (needs 6.5+)"
    echo "== kernel $(uname -r) has no SO_PEERPIDFD: the demo pins callers by /proc alone (allow_without_pidfd)"
fi
if [ ! -f "$CONFIG" ]; then
    cat > "$CONFIG" <<YAML
# Written by scripts/demo.sh (make run). Edit freely; delete $DEMO to start over.
pki:
  dir: $DEMO/pki
  ca_keys: keystore            # CA keys kept only KEK-encrypted in the keystore
  certs:
    openbao: { sans: [127.0.0.1, localhost] }
keystore:
  dir: $DEMO/keystore
kdf:
  plugin: $STATE/libexec/edgeseal/edgeseal-kdf-hwfp
secret_store:
  address: https://127.0.0.1:$PORT
  supervise:
    binary: $BAO
    data_dir: $DEMO/openbao
file_tokens:
  dir: $DEMO/secrets
token_server:
  socket: $DEMO/token.sock
  docker_socket: null
$PIDFD_LINE
services:
  demo:
    selectors:
      unix: { uid: $(id -u), path: $BIN/security-bootstrap }
    secrets: [greeting]
    token: { ttl: 15m }
YAML
    echo "== wrote $CONFIG"
fi

# A reused state keeps the port it was created with.
PORT=$(sed -n 's|^  address: https://127.0.0.1:\([0-9]*\)$|\1|p' "$CONFIG")
rm -f "$DEMO/ready"
echo "== security-bootstrap run --config $CONFIG"
"$BIN/security-bootstrap" run --config "$CONFIG" --ready-file "$DEMO/ready" >"$DEMO/edgeseal.log" 2>&1 &
PID=$!
stop() { kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 1200); do
    [ -f "$DEMO/ready" ] && break
    if ! kill -0 $PID 2>/dev/null; then
        echo "security-bootstrap run exited; its log:" >&2
        cat "$DEMO/edgeseal.log" >&2
        exit 1
    fi
    sleep 0.1
done
[ -f "$DEMO/ready" ] || { echo "not ready after 120 s; log: $DEMO/edgeseal.log" >&2; kill $PID; exit 1; }
echo "== ready (pid $PID); log: $DEMO/edgeseal.log"

echo "== security-bootstrap token --socket $DEMO/token.sock   (this process is attested as service 'demo')"
RESPONSE=$("$BIN/security-bootstrap" token --socket "$DEMO/token.sock")
TOKEN=$(printf '%s' "$RESPONSE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["auth"]["client_token"])')
printf '%s' "$RESPONSE" | python3 -c 'import json,sys; r=json.load(sys.stdin); a=r["auth"]; print("   service=%s policies=%s ttl=%ss accessor=%s" % (r["service"], a["policies"], a["lease_duration"], a["accessor"]))'

echo "== reading the service's own secret with that token"
SECRET=$(curl -sS --fail --cacert "$DEMO/pki/ca/ca.pem" -H "X-Vault-Token: $TOKEN" \
    "https://127.0.0.1:$PORT/v1/secret/data/edgeseal/demo/greeting")
printf '%s' "$SECRET" | python3 -c 'import json,sys; v=json.load(sys.stdin)["data"]["data"]["value"]; print("   secret/edgeseal/demo/greeting: %d characters (value not shown)" % len(v))'
unset TOKEN RESPONSE SECRET

if [ "$ONCE" = 1 ]; then
    stop
    echo "== stopped"
    exit 0
fi
cat <<MSG

edgeseal is running. Try:
  curl --unix-socket $DEMO/token.sock http://localhost/v1/whoami
  curl --unix-socket $DEMO/token.sock http://localhost/v1/health
  $BIN/security-bootstrap token --socket $DEMO/token.sock
  $BIN/security-bootstrap keystore inspect --config $CONFIG
  kill -9 \$(pgrep -f 'bao server -config=$DEMO')   # watch it restart and open itself (static seal) in $DEMO/edgeseal.log
Ctrl-C stops everything. 'make run' again reuses the state (OpenBao opens itself; nothing is re-initialized).
MSG
wait $PID
