#!/usr/bin/env bash
# A development certificate authority and a server certificate for Mosquitto's TLS listener (8883).
#   deploy/make-dev-cert.sh OUT_DIR [HOSTNAME...]
# writes OUT_DIR/ca.crt, ca.key, server.crt, server.key; the server certificate names localhost, 127.0.0.1
# and every HOSTNAME given. Devices trust ca.crt. For development and tests only: production uses the city's CA.
set -euo pipefail
out="${1:?usage: make-dev-cert.sh OUT_DIR [HOSTNAME...]}"
shift || true
mkdir -p "$out"
san="DNS:localhost,IP:127.0.0.1"
for host in "$@"; do san="$san,DNS:$host"; done
umask 077
openssl req -x509 -newkey rsa:2048 -sha256 -days 30 -nodes -subj "/CN=Digital Whistle development CA" \
  -keyout "$out/ca.key" -out "$out/ca.crt" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -sha256 -nodes -subj "/CN=${1:-localhost}" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$san" > "$out/server.ext"
openssl x509 -req -sha256 -days 30 -in "$out/server.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
  -CAcreateserial -out "$out/server.crt" -extfile "$out/server.ext" 2>/dev/null
rm -f "$out/server.csr" "$out/server.ext" "$out/ca.srl"
chmod 644 "$out/ca.crt" "$out/server.crt"
chmod 640 "$out/server.key"
echo "$out: ca.crt ca.key server.crt server.key (SAN $san)"
