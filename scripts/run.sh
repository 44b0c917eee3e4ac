#!/bin/sh
# make run: a local CA and a localhost certificate under var/ on first use, then the sample site on
# https://localhost:8443 (http://localhost:8080 redirects). A second run reuses the store and the CA and
# re-issues the certificate when fewer than 30 days are left.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
moat="$top/build/release/moat"
var="$top/var"
mkdir -p "$var"
chmod 700 "$var"
export MOAT_STORE="$var/moat.db"
unset MOAT_CONFIG MOAT_MASTER_KEY_FILE

if ! "$moat" ca cert >/dev/null 2>&1; then
    echo "moat: creating the local development CA in $var"
    "$moat" ca init --cn "moat local development CA" --days 3650
fi
"$moat" ca cert >"$var/ca.pem"

issue() {
    # $1: new | renew
    if [ "$1" = new ]; then
        "$moat" key new localhost --cn localhost --san DNS:localhost,IP:127.0.0.1,IP:::1 --csr-out "$var/localhost.csr"
    else
        "$moat" key renew localhost --csr-out "$var/localhost.csr"
    fi
    "$moat" ca sign "$var/localhost.csr" --out "$var/localhost.crt" --profile server --days 90
    "$moat" cert install localhost "$var/localhost.crt"
    rm -f "$var/localhost.csr"
}

if ! "$moat" cert export localhost --out "$var/localhost.crt" >/dev/null 2>&1; then
    "$moat" key delete localhost >/dev/null 2>&1 || true # a pending key left by an interrupted first run
    issue new
elif ! openssl x509 -checkend $((30 * 86400)) -noout -in "$var/localhost.crt" >/dev/null; then
    echo "moat: the localhost certificate expires within 30 days; issuing a new one"
    issue renew
fi

sed "s|@ROOT@|$top/examples/site|" "$top/examples/moat.yaml.in" >"$var/moat.yaml"

cat <<MSG

  Serving https://localhost:8443 (and http://localhost:8080, which redirects).
  Trust this CA certificate to get no warning:  $var/ca.pem
    curl --cacert $var/ca.pem https://localhost:8443/
  Ctrl-C stops the server.

MSG
exec "$moat" serve -c "$var/moat.yaml"
