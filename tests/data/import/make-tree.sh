#!/bin/sh
# Builds a folder of the kind "moat import" must digest, with openssl only:
#   OUT/certs/a.key + a.pem          a pair (leaf signed by an intermediate), chain in OUT/certs/chain.pem
#   OUT/certs/enc.key + enc.pem      an encrypted PKCS#8 key (password "secret") and its certificate
#   OUT/certs/orphan.key             a key with no certificate
#   OUT/certs/lonely.pem             a certificate whose key is nowhere
#   OUT/p12/site.p12                 PKCS#12 (key, certificate, chain) under password "secret"
#   OUT/letsencrypt/{archive,live}/ex.test   certbot: two generations, live/ pointing at the second
#   OUT/nginx/nginx.conf             includes sites-enabled/*, which names b.key/b.pem outside OUT/certs
#   OUT/nginx/ssl/b.key + b.pem      the pair the nginx config names (its server_name names the key)
# The CA material (root, intermediate) stays in WORK, outside OUT.
# Usage: make-tree.sh OUT WORK
set -eu
OUT=$1
WORK=$2
mkdir -p "$OUT/certs" "$OUT/p12" "$OUT/letsencrypt/archive/ex.test" "$OUT/letsencrypt/live/ex.test" \
    "$OUT/nginx/sites-enabled" "$OUT/nginx/ssl" "$WORK"
cd "$WORK"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > ca.ext
openssl req -x509 $ec -keyout root.key -out root.pem -subj "/CN=Import Test Root" -days 30 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new $ec -keyout int.key -out int.csr -subj "/CN=Import Test Intermediate" 2>/dev/null
openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile ca.ext \
    -out int.pem 2>/dev/null

# leaf NAME KEYOUT CERTOUT: a server certificate for NAME signed by the intermediate
leaf() {
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\nauthorityKeyIdentifier=keyid\n' "$1" > leaf.ext
    openssl req -new $ec -keyout "$2" -out leaf.csr -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 20 -extfile leaf.ext \
        -out "$3" 2>/dev/null
}

leaf a.test "$OUT/certs/a.key" "$OUT/certs/a.pem"
cp int.pem "$OUT/certs/chain.pem"

leaf enc.test enc-plain.key "$OUT/certs/enc.pem"
openssl pkcs8 -topk8 -v2 aes-256-cbc -in enc-plain.key -out "$OUT/certs/enc.key" -passout pass:secret

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$OUT/certs/orphan.key" 2>/dev/null

leaf lonely.test lonely.key "$OUT/certs/lonely.pem"

leaf p12.test p12.key p12.pem
openssl pkcs12 -export -inkey p12.key -in p12.pem -certfile int.pem -name p12-site \
    -passout pass:secret -out "$OUT/p12/site.p12"

A="$OUT/letsencrypt/archive/ex.test"
for n in 1 2; do
    leaf ex.test "$A/privkey$n.pem" "$A/cert$n.pem"
    cp int.pem "$A/chain$n.pem"
    cat "$A/cert$n.pem" int.pem > "$A/fullchain$n.pem"
done
for f in cert privkey chain fullchain; do
    ln -s "../../archive/ex.test/${f}2.pem" "$OUT/letsencrypt/live/ex.test/$f.pem"
done
printf 'This directory contains your keys and certificates.\n' > "$OUT/letsencrypt/live/ex.test/README"

leaf b.test "$OUT/nginx/ssl/b.key" "$OUT/nginx/ssl/b.pem"
cat > "$OUT/nginx/nginx.conf" <<'CONF'
events { }
http {
    include sites-enabled/*;
}
CONF
cat > "$OUT/nginx/sites-enabled/b" <<'CONF'
server {
    listen 443 ssl;
    server_name www.b.test b.test;
    ssl_certificate ssl/b.pem;
    ssl_certificate_key ssl/b.key;
}
CONF
chmod 600 "$OUT/certs/"*.key "$OUT/nginx/ssl/b.key" "$A"/privkey*.pem
