#!/usr/bin/env bash
# The alternative a user would write instead of `security-bootstrap setup`: the same boot-time steps
# (initialize on first boot, unseal, get a root token, KV v2 mount, per-service policy + token role,
# generated secrets, the token-issuing token, file tokens, removal of dropped services, revoke root)
# done with the `bao` CLI, jq and coreutils. It is the comparison point of `cargo bench -p
# edgeseal-tests --bench setup` (tests/benches/setup.rs), which runs both against the same services.
#
# Usage: bao-cli-setup.sh STATE_DIR SERVICES_FILE TOKENS_DIR
#   env BAO_ADDR, BAO_CACERT (required); BAO = the bao binary (default: bao on PATH);
#   BAO_SCRIPT_ROOT = generate (default) | saved (see "root token" below).
# SERVICES_FILE: one service a line, `NAME SECRETS TTL_SECONDS FILE_TOKEN`, SECRETS a comma list or `-`,
#   FILE_TOKEN `uid:gid` or `-`.
#
# What it does NOT do that edgeseal does (so the script does a bit less work, never more):
#   * SECURITY: `bao operator init` output is kept in STATE_DIR/init.json IN PLAINTEXT (all 5 unseal
#     shares, and in `saved` mode a live root token). That is what a user script does; edgeseal never
#     does: its shares are in a keystore encrypted with a KEK derived from the device (KDF plug-in), and
#     no root token exists at rest. The bootstrap AppRole credential and the token-issuing token are
#     plaintext files here, KEK-encrypted keystore items in edgeseal.
#   * No KDF plug-in run, no keystore encryption, no fsync of anything, no crash markers, no
#     root-accessor bookkeeping, no "write only if it differs" (it writes every policy and role on
#     every boot, which costs the same one CLI call as a read would).
#
# Root token: with BAO_SCRIPT_ROOT=generate (the default; same work as edgeseal) the first boot keeps the
# init root token for that run only, sets up the same bootstrap AppRole edgeseal uses (policy: only
# sys/generate-root-token/*), and later boots log in with it and run `bao operator generate-root` with
# the shares; the root token is revoked at the end of every run. With BAO_SCRIPT_ROOT=saved the script
# does what a hurried user does: it reuses the init root token from init.json on every boot and never
# revokes it (no AppRole, no login, no generate-root: less work than edgeseal).
set -euo pipefail

die() { echo "bao-cli-setup: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: $0 STATE_DIR SERVICES_FILE TOKENS_DIR"
STATE=$1 SERVICES=$2 TOKENS=$3
: "${BAO_ADDR:?set BAO_ADDR}" "${BAO_CACERT:?set BAO_CACERT}"
BAO=${BAO:-bao}
ROOT_MODE=${BAO_SCRIPT_ROOT:-generate}
KV=secret PREFIX=edgeseal SVC=edgeseal-svc- ISSUER=edgeseal-token-issuer APPROLE=edgeseal-approle
export BAO_ADDR BAO_CACERT
unset BAO_TOKEN
mkdir -p "$STATE" && chmod 700 "$STATE"
bao() { "$BAO" "$@"; }
as() { local token=$1; shift; BAO_TOKEN=$token "$BAO" "$@"; }

# --- 1. wait for OpenBao (bounded), read its state. `bao status` exits 2 when sealed.
for _ in $(seq 1 300); do
  status=$(bao status -format=json 2>/dev/null) || true
  [ -n "$status" ] && break
  sleep 0.1
done
[ -n "$status" ] || die "OpenBao at $BAO_ADDR did not answer within 30 s"

# --- 2. first boot: initialize, keep the init output (PLAINTEXT, see the header).
ROOT=
if [ "$(jq -r .initialized <<<"$status")" != true ]; then
  [ ! -e "$STATE/init.json" ] || die "$STATE/init.json exists but OpenBao is not initialized"
  (umask 077; bao operator init -key-shares=5 -key-threshold=3 -format=json >"$STATE/init.json.tmp")
  mv "$STATE/init.json.tmp" "$STATE/init.json"
  ROOT=$(jq -r .root_token "$STATE/init.json")
  status=$(bao status -format=json 2>/dev/null) || true
fi
[ -s "$STATE/init.json" ] || die "OpenBao is initialized but $STATE/init.json is missing"
mapfile -t KEYS < <(jq -r '.unseal_keys_b64[]' "$STATE/init.json")

# --- 3. unseal with 3 shares, then wait until this node is the active one.
if [ "$(jq -r .sealed <<<"$status")" = true ]; then
  for i in 0 1 2; do bao operator unseal "${KEYS[$i]}" >/dev/null; done
fi
active=false
for _ in $(seq 1 300); do
  if bao status -format=json 2>/dev/null | jq -e '.sealed == false and (.ha_enabled != true or .is_self == true)' >/dev/null; then
    active=true && break
  fi
  sleep 0.05
done
[ "$active" = true ] || die "OpenBao did not become unsealed and active"

# --- 4. a root token for this run.
APPROLE_OK=false
if [ -z "$ROOT" ] && [ "$ROOT_MODE" = saved ]; then
  ROOT=$(jq -r .root_token "$STATE/init.json")
elif [ -z "$ROOT" ]; then
  [ -s "$STATE/approle.json" ] || die "no bootstrap AppRole credential in $STATE/approle.json"
  login=$(bao write -format=json auth/$APPROLE/login \
    role_id="$(jq -r .role_id "$STATE/approle.json")" secret_id="$(jq -r .secret_id "$STATE/approle.json")" \
    | jq -r .auth.client_token)
  APPROLE_OK=true
  attempt=$(as "$login" operator generate-root -init -format=json)
  nonce=$(jq -r .nonce <<<"$attempt") otp=$(jq -r .otp <<<"$attempt")
  for i in 0 1 2; do
    progress=$(as "$login" operator generate-root -nonce="$nonce" -format=json "${KEYS[$i]}")
  done
  ROOT=$(as "$login" operator generate-root -decode="$(jq -r .encoded_token <<<"$progress")" -otp="$otp" -format=json | jq -r .token)
  as "$login" token revoke -self >/dev/null
fi
[ -n "$ROOT" ] && [ "$ROOT" != null ] || die "no root token"
export BAO_TOKEN=$ROOT

# --- 5. KV v2 at secret/.
if ! bao secrets list -format=json | jq -e --arg m "$KV/" 'has($m)' >/dev/null; then
  bao secrets enable -version=2 -path=$KV kv >/dev/null
fi

# --- 6. the bootstrap AppRole (generate mode): root-token generation only; credential in a plaintext file.
if [ "$ROOT_MODE" = generate ]; then
  bao policy write edgeseal-bootstrap - >/dev/null <<'EOF'
# edgeseal: bootstrap credential; generating a root token also needs the unseal shares
path "sys/generate-root-token/*" {
  capabilities = ["create", "read", "update", "delete"]
}
EOF
  if ! bao auth list -format=json | jq -e --arg m "$APPROLE/" 'has($m)' >/dev/null; then
    bao auth enable -path=$APPROLE approle >/dev/null
  fi
  bao write auth/$APPROLE/role/bootstrap token_policies=edgeseal-bootstrap token_ttl=300 token_max_ttl=600 \
    secret_id_ttl=0 secret_id_num_uses=0 token_type=service bind_secret_id=true >/dev/null
  if [ "$APPROLE_OK" != true ]; then
    role_id=$(bao read -field=role_id auth/$APPROLE/role/bootstrap/role-id)
    secret=$(bao write -f -format=json auth/$APPROLE/role/bootstrap/secret-id)
    (umask 077; jq -n --arg r "$role_id" --argjson s "$secret" '{role_id: $r, secret_id: $s.data.secret_id}' >"$STATE/approle.json")
    keep=$(jq -r .data.secret_id_accessor <<<"$secret")
    for accessor in $(bao list -format=json auth/$APPROLE/role/bootstrap/secret-id | jq -r '.[]'); do
      [ "$accessor" = "$keep" ] || bao write auth/$APPROLE/role/bootstrap/secret-id-accessor/destroy \
        secret_id_accessor="$accessor" >/dev/null
    done
  fi
fi

# --- 7. per service: ACL policy + token role; generated secrets (created once, cas=0).
declare -A WANTED=() FILE_OWNER=() TTLS=()
NAMES=()
while read -r name secrets ttl owner; do
  [ -n "$name" ] && [ "${name:0:1}" != "#" ] || continue
  NAMES+=("$name") WANTED[$SVC$name]=1
  [ "$owner" = - ] || FILE_OWNER[$name]=$owner
  TTLS[$name]=$ttl
  bao policy write "$SVC$name" - >/dev/null <<EOF
# edgeseal: service "$name" may use its own secrets and nothing else
path "$KV/data/$PREFIX/$name/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "$KV/metadata/$PREFIX/$name/*" {
  capabilities = ["read", "list", "delete"]
}
path "$KV/metadata/$PREFIX/$name/" {
  capabilities = ["list"]
}
EOF
  bao write "auth/token/roles/$SVC$name" allowed_policies="$SVC$name" orphan=true renewable=true \
    token_type=service token_period=0 token_explicit_max_ttl=0 >/dev/null
done <"$SERVICES"

while read -r name secrets ttl owner; do
  [ -n "$name" ] && [ "${name:0:1}" != "#" ] && [ "$secrets" != - ] || continue
  for secret in ${secrets//,/ }; do
    if ! bao kv get -mount=$KV -format=json "$PREFIX/$name/$secret" >/dev/null 2>&1; then
      bao kv put -mount=$KV -cas=0 "$PREFIX/$name/$secret" \
        value="$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=')" >/dev/null
    fi
  done
done <"$SERVICES"

# --- 8. remove the roles and policies of services dropped from the list.
for role in $(bao list -format=json auth/token/roles | jq -r '.[]'); do
  if [[ $role == "$SVC"* ]] && [ -z "${WANTED[$role]:-}" ]; then bao delete "auth/token/roles/$role" >/dev/null; fi
done
for policy in $(bao policy list -format=json | jq -r '.[]'); do
  if [[ $policy == "$SVC"* ]] && [ -z "${WANTED[$policy]:-}" ]; then bao policy delete "$policy" >/dev/null; fi
done

# --- 9. the token-issuing token: may only create tokens against edgeseal-svc-* roles. Renewed if valid.
bao policy write $ISSUER - >/dev/null <<EOF
# edgeseal: the token server's issuing token
path "auth/token/create/$SVC*" {
  capabilities = ["create", "update"]
}
path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}
path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}
path "auth/token/renew-accessor" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
EOF
bao write auth/token/roles/$ISSUER allowed_policies=$ISSUER orphan=true renewable=true token_type=service \
  token_period=86400 token_no_default_policy=true token_explicit_max_ttl=0 >/dev/null
issuer=
if [ -s "$STATE/issuer-token" ]; then
  previous=$(cat "$STATE/issuer-token")
  if info=$(as "$previous" token lookup -format=json 2>/dev/null); then
    if jq -e --arg p $ISSUER '.data.policies | index($p)' >/dev/null <<<"$info" \
      && as "$previous" token renew >/dev/null 2>&1; then
      issuer=$previous
    else
      bao token revoke -accessor "$(jq -r .data.accessor <<<"$info")" >/dev/null || true
    fi
  fi
fi
if [ -z "$issuer" ]; then
  issuer=$(bao token create -role=$ISSUER -metadata=edgeseal=token-issuer -field=token)
  (umask 077; printf '%s\n' "$issuer" >"$STATE/issuer-token")
fi

# --- 10. file tokens: <TOKENS>/<service>/secrets-token.json ({"auth": ...}), 0700/0600 owned by the service,
# replaced by rename, superseded token revoked. Files of services without a file token are revoked and removed.
mkdir -p "$TOKENS" && chmod 711 "$TOKENS"
for name in "${NAMES[@]}"; do
  owner=${FILE_OWNER[$name]:-}
  [ -n "$owner" ] || continue
  dir=$TOKENS/$name file=$TOKENS/$name/secrets-token.json
  old=
  [ -s "$file" ] && old=$(jq -r '.auth.accessor // empty' "$file" 2>/dev/null || true)
  mkdir -p "$dir" && chmod 700 "$dir" && chown "$owner" "$dir"
  tmp=$(mktemp "$dir/.secrets-token.XXXXXX")
  as "$issuer" token create -role="$SVC$name" -ttl="${TTLS[$name]}s" -metadata=service="$name" \
    -metadata=attestation=file -format=json | jq '{auth: .auth}' >"$tmp"
  chmod 600 "$tmp" && chown "$owner" "$tmp" && mv -f "$tmp" "$file"
  [ -z "$old" ] || as "$issuer" token revoke -accessor "$old" >/dev/null
done
for dir in "$TOKENS"/*/; do
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  [ -z "${FILE_OWNER[$name]:-}" ] && [ -f "$dir/secrets-token.json" ] || continue
  accessor=$(jq -r '.auth.accessor // empty' "$dir/secrets-token.json" 2>/dev/null || true)
  [ -z "$accessor" ] || as "$issuer" token revoke -accessor "$accessor" >/dev/null
  rm -f "$dir/secrets-token.json" && rmdir "$dir" 2>/dev/null || true
done

# --- 11. revoke this run's root token (saved mode keeps it: that is the point of saving it).
[ "$ROOT_MODE" = saved ] || bao token revoke -self >/dev/null
echo "bao-cli-setup: done"
