#!/bin/sh
# Installs the Debian 12 packages moat needs, only those that are missing.
# Usage: scripts/deps.sh build|test|bench
set -eu
build="cmake make pkg-config python3 clang libclang-rt-14-dev libssl-dev libsqlite3-dev libyaml-dev libjansson-dev libcrypt-dev libnghttp2-dev openssl"
test="$build python3 python3-pytest python3-cryptography curl sqlite3 chromium libnss3-tools ca-certificates prometheus testssl.sh pebble nghttp2-client python3-h2 python3-hyperframe python3-websockets lego certbot gnutls-bin uacme apache2-bin"
bench="$build nginx-light h2o haproxy nghttp2-client wrk curl python3"
case "${1:-build}" in
build) want=$build ;;
test) want=$test ;;
bench) want=$bench ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "moat: missing Debian packages:$missing" >&2
    echo "      install them with: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "moat: installing missing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "moat: apt-get update failed; check the network and /etc/apt/sources.list" >&2; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
