#!/usr/bin/env bash
# The alternative to pki-init: the same PKI made with the openssl CLI, as EdgeX's old pki-init did.
#
#   openssl-pki.sh OUT_DIR [LEAVES]
#
# Writes OUT_DIR/ca/{ca.pem,intermediate.pem} and OUT_DIR/svc-<i>/{cert.pem,key.pem} for i in 1..LEAVES
# (default 50): EC P-256 keys, SHA-256 signatures, and the extensions pki-init uses (critical
# basicConstraints with pathlen 1/0 on the CAs and CA:false on leaves, critical keyUsage, serverAuth +
# clientAuth, SANs svc-<i> and 127.0.0.1, subject/authority key identifiers, random serials). To be fair
# to openssl it uses one openssl process per certificate (`req -x509 -newkey ... -CA`, OpenSSL >= 3.0)
# and shell builtins for everything else. The CA keys are deleted at the end (pki-init's destroy mode);
# unlike pki-init, nothing is fsynced.
set -euo pipefail

out=${1:?usage: openssl-pki.sh OUT_DIR [LEAVES]}
leaves=${2:-50}
umask 077
mkdir -p "$out/ca"
chmod 0755 "$out" "$out/ca"

cnf="$out/ca/.openssl.cnf"
cat >"$cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[root]
basicConstraints = critical, CA:true, pathlen:1
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = ${ENV::SAN}
CNF
export SAN=DNS:unused

newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -sha256 -config "$cnf")

openssl req -x509 "${newkey[@]}" -keyout "$out/ca/ca.key" -out "$out/ca/ca.pem" \
  -subj "/O=edgeseal/CN=edgeseal root CA" -days 3650 -extensions root 2>/dev/null
openssl req -x509 "${newkey[@]}" -keyout "$out/ca/intermediate.key" -out "$out/ca/intermediate.pem" \
  -CA "$out/ca/ca.pem" -CAkey "$out/ca/ca.key" \
  -subj "/O=edgeseal/CN=edgeseal intermediate CA" -days 3650 -extensions intermediate 2>/dev/null
intermediate=$(<"$out/ca/intermediate.pem")

for ((i = 1; i <= leaves; i++)); do
  name="svc-$i"
  mkdir -m 0700 "$out/$name"
  SAN="DNS:$name,IP:127.0.0.1" openssl req -x509 "${newkey[@]}" \
    -keyout "$out/$name/key.pem" -out "$out/$name/leaf.pem" \
    -CA "$out/ca/intermediate.pem" -CAkey "$out/ca/intermediate.key" \
    -subj "/O=edgeseal/CN=$name" -days 90 -extensions leaf 2>/dev/null
  leaf=$(<"$out/$name/leaf.pem")
  printf '%s\n%s\n' "$leaf" "$intermediate" >"$out/$name/cert.pem"
  rm -f "$out/$name/leaf.pem"
  chmod 0600 "$out/$name/key.pem"
done

chmod 0644 "$out/ca/ca.pem" "$out/ca/intermediate.pem"
rm -f "$out/ca/ca.key" "$out/ca/intermediate.key" "$cnf"
