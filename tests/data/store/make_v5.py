#!/usr/bin/python3
"""Writes schema_v5.sql: schema_v4.sql plus one cached CRL row, upgraded the way moat's schema-5
migration does it (a mac column on keys, certs, cert_chain, anchors, ca and issued, every row sealed
under the row key derived from v1.masterkey). Run from this folder: ./make_v5.py > schema_v5.sql"""
import hashlib
import hmac
import sqlite3
import sys

COLS = {
    "keys": "id, name, state, algorithm, exportable, private_enc, pubkey, csr, created, updated",
    "certs": "id, key_id, der, subject, issuer, sans, serial, fingerprint, not_before, not_after, "
             "installed, is_current",
    "cert_chain": "cert_id, pos, der",
    "anchors": "id, name, der, subject, fingerprint, not_after, created",
    "ca": "role, key_id, der, base_url, crl_number, created, updated",
    "issued": "id, serial, name, subject, profile, issuer, der, issued_at, not_after, revoked, reason",
}


def row_key(mk):
    prk = hmac.new(b"\0" * 32, mk, hashlib.sha256).digest()  # HKDF-SHA256, no salt
    return hmac.new(prk, b"moat store rows v1\x01", hashlib.sha256).digest()


def encode(v):
    if v is None:
        return b"\0"
    b = v if isinstance(v, bytes) else str(v).encode()
    return b"\1" + len(b).to_bytes(4, "big") + b


def main():
    key = row_key(open("v1.masterkey", "rb").read())
    db = sqlite3.connect(":memory:")
    db.executescript(open("schema_v4.sql").read())
    anchor = db.execute("SELECT der, subject, fingerprint FROM anchors").fetchone()
    db.execute("INSERT INTO crls (url, issuer_fp, issuer_der, issuer_subject, der, this_update, next_update, "
               "revoked, fetched_at, attempted_at, error) VALUES ('http://crl.corp.example/root.crl', ?, ?, ?, "
               "x'', 0, 0, 0, 0, 1700000000, 'not fetched yet')", (anchor[2], anchor[0], anchor[1]))
    db.create_function("moat_row_mac", -1,
                       lambda *a: hmac.new(key, b"moat row v1\0" + b"".join(encode(x) for x in a),
                                           hashlib.sha256).digest())
    for table, cols in COLS.items():
        db.execute(f"ALTER TABLE {table} ADD COLUMN mac BLOB NOT NULL DEFAULT x''")
        db.execute(f"UPDATE {table} SET mac = moat_row_mac('{table}', {cols})")
    db.execute("UPDATE meta SET value = '5' WHERE name = 'schema_version'")
    db.commit()
    out = sys.stdout
    out.write("-- moat store, schema version 5: schema_v4.sql (same master key v1.masterkey) with one cached CRL,\n"
              "-- its rows sealed as the schema-5 upgrade does (written by make_v5.py). Used by the seal migration test.\n")
    for line in db.iterdump():
        out.write(line + "\n")
    out.write("PRAGMA application_id = 1836016756;\nPRAGMA user_version = 5;\n")


main()
