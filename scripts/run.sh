#!/bin/sh
# make run: a local CA and a localhost certificate under var/ on first use, then the sample site on
# https://localhost:8443 (http://localhost:8080 redirects). A second run reuses the store and the CA and
# re-issues the certificate when fewer than 30 days are left.
# MOAT_RUN_DIR (default var/), MOAT_RUN_HTTPS_PORT / MOAT_RUN_HTTP_PORT (8443 / 8080) and MOAT_BIN
# (build/release/moat) let a test run it beside other servers.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
moat="${MOAT_BIN:-$top/build/release/moat}"
var="${MOAT_RUN_DIR:-$top/var}"
https_port="${MOAT_RUN_HTTPS_PORT:-8443}"
http_port="${MOAT_RUN_HTTP_PORT:-8080}"
mkdir -p "$var"
chmod 700 "$var"
export MOAT_STORE="$var/moat.db"
unset MOAT_CONFIG MOAT_MASTER_KEY_FILE

if ! "$moat" ca cert >/dev/null 2>&1; then
    echo "moat: creating the local development CA in $var"
    # The URL goes into issued certificates as their CRL and OCSP location, which the sample site
    # publishes (ca_publish), so clients can check revocation.
    "$moat" ca init --cn "moat local development CA" --days 3650 --url "http://localhost:$http_port"
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

sed -e "s|@ROOT@|$top/examples/site|" -e "s|@HTTPS_PORT@|$https_port|g" -e "s|@HTTP_PORT@|$http_port|g" \
    "$top/examples/moat.yaml.in" >"$var/moat.yaml"

cat <<MSG

  Serving https://localhost:$https_port (and http://localhost:$http_port, which redirects).
  Trust this CA certificate to get no warning:  $var/ca.pem
    curl --cacert $var/ca.pem https://localhost:$https_port/
  How to trust it on other systems: http://localhost:$http_port/.well-known/moat/
  Ctrl-C stops the server.

MSG
exec "$moat" serve -c "$var/moat.yaml"
