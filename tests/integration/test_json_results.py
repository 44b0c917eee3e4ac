"""--json on the write commands: each prints one JSON object (or array) on stdout saying what it made,
in the fields and formats the read commands use (RFC 3339 times, colon fingerprints, sans as a list)."""
import json
import re

from keymgr_helpers import fingerprint, openssl, outside_ca

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def j(moat, *args, **kw):
    r = moat.ok("--json", *args, **kw)
    return json.loads(r.stdout)


def test_ca_and_keys_return_what_they_made(moat):
    d = moat.dir
    root = j(moat, "ca", "init", "--cn", "Json Root")
    assert root["role"] == "root" and root["subject"] == "CN=Json Root" and RFC3339.match(root["not_after"])
    cert = j(moat, "ca", "cert", "--root")
    assert cert["fingerprint"] == root["fingerprint"] and "BEGIN CERTIFICATE" in cert["pem"]

    www = j(moat, "ca", "issue", "www", "--cn", "www.json.test", "--san", "DNS:www.json.test,DNS:json.test")
    assert www["name"] == "www" and www["state"] == "active" and www["issuing_ca"] == "root"
    assert www["sans"] == ["DNS:www.json.test", "DNS:json.test"]
    shown = j(moat, "key", "show", "www")
    assert shown["serial"] == www["serial"] and shown["fingerprint"] == www["fingerprint"]
    assert shown["not_after"] == www["not_after"]

    new = j(moat, "key", "new", "api", "--cn", "api.json.test")
    assert new["state"] == "pending" and new["renewal"] is False and new["csr_out"] is None
    (d / "api.csr").write_text(new["csr"])
    assert "api.json.test" in openssl("req", "-in", d / "api.csr", "-noout", "-subject").stdout
    signed = j(moat, "ca", "sign", d / "api.csr", "--out", d / "api.pem")
    assert signed["out"] == str(d / "api.pem") and signed["serial"]
    assert signed["fingerprint"] == fingerprint(d / "api.pem")
    inst = j(moat, "cert", "install", "api", d / "api.pem")
    assert inst["action"] == "installed" and inst["serial"] == signed["serial"] and inst["server_usage"] is True
    assert inst["key_fingerprint"] == new["key_fingerprint"]

    ren = j(moat, "key", "renew", "api", "--csr-out", d / "api2.csr")
    assert ren["renewal"] is True and ren["csr_out"] == str(d / "api2.csr") and (d / "api2.csr").exists()

    rev = j(moat, "ca", "revoke", "www", "--reason", "superseded")
    assert rev["serial"] == www["serial"] and rev["reason"] == "superseded" and RFC3339.match(rev["revoked_at"])
    assert j(moat, "key", "delete", "www", input="y\n")["deleted"] is True


def test_trust_add_and_key_import(moat):
    d = moat.dir
    _, crt = outside_ca(d, "Json Outside Root")
    added = j(moat, "trust", "add", crt, "--name", "outside")
    assert added[0]["name"] == "outside" and added[0]["fingerprint"] == fingerprint(crt)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            d / "k.pem", "-out", d / "c.pem", "-days", "5", "-subj", "/CN=imp.json.test")
    (d / "both.pem").write_text((d / "k.pem").read_text() + (d / "c.pem").read_text())
    imp = j(moat, "key", "import", "imp", d / "both.pem")
    assert imp["action"] == "imported" and imp["state"] == "active"
    assert imp["certificate"]["fingerprint"] == fingerprint(d / "c.pem")
