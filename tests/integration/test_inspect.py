"""moat inspect: certificates, chains, requests, CRLs, keys, PKCS#7 and PKCS#12 from files, standard input
and a live TLS server (openssl s_server on loopback), checked against what openssl says."""
import json

import pytest

from doctor_pki import Pki, SServer
from keymgr_helpers import fingerprint, openssl


@pytest.fixture
def pki(moat):
    p = Pki(moat.dir / "pki")
    p.root()
    p.sign("inter", "root", "Inspect Intermediate", ca=True)
    p.sign("leaf", "inter", "www.inspect.test", "DNS:www.inspect.test,IP:127.0.0.1")
    return p


def inspect(moat, *args, **kw):
    r = moat.ok("inspect", "--json", *args, **kw)
    return json.loads(r.stdout)


def test_chain_file_human_and_json(moat, pki):
    chain = moat.dir / "chain.pem"
    chain.write_text(pki.path("leaf.pem").read_text() + pki.path("inter.pem").read_text())
    r = moat.ok("inspect", chain)
    assert "[1] certificate (PEM)" in r.stdout and "[2] certificate (PEM)" in r.stdout
    assert "DNS:www.inspect.test,IP:127.0.0.1" in r.stdout
    assert "issued by the next certificate: yes" in r.stdout, r.stdout
    assert fingerprint(pki.path("leaf.pem")) in r.stdout
    doc = inspect(moat, chain)
    leaf, inter = doc["objects"]
    assert leaf["type"] == "certificate" and leaf["sans"] == ["DNS:www.inspect.test", "IP:127.0.0.1"]
    assert leaf["fingerprint"] == fingerprint(pki.path("leaf.pem")) and leaf["issued_by_next"] is True
    serial = openssl("x509", "-in", pki.path("leaf.pem"), "-noout", "-serial").stdout.strip().split("=")[1]
    assert leaf["serial"].lstrip("0") == serial.lstrip("0")
    assert leaf["not_after"].endswith("Z") and leaf["is_ca"] is False and "serverAuth" in leaf["extended_key_usage"]
    assert inter["is_ca"] is True and "keyCertSign" in inter["key_usage"]
    # The wrong order reads as such.
    chain.write_text(pki.path("inter.pem").read_text() + pki.path("leaf.pem").read_text())
    assert inspect(moat, chain)["objects"][0]["issued_by_next"] is False


def test_der_and_stdin(moat, pki):
    der = moat.dir / "leaf.der"
    openssl("x509", "-in", pki.path("leaf.pem"), "-outform", "DER", "-out", der)
    doc = inspect(moat, der)
    assert [o["format"] for o in doc["objects"]] == ["DER"]
    r = moat.run("inspect", "--json", "-", input=pki.path("leaf.pem").read_text())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["source"] == "standard input"


def test_request(moat):
    moat.ok("key", "new", "w", "--cn", "w.inspect.test", "--san", "DNS:w.inspect.test,DNS:x.inspect.test",
            "--csr-out", "w.csr")
    o = inspect(moat, moat.dir / "w.csr")["objects"][0]
    assert o["type"] == "csr" and o["subject"] == "CN=w.inspect.test" and o["signature_valid"] is True
    assert o["sans"] == ["DNS:w.inspect.test", "DNS:x.inspect.test"]
    assert "signature:    valid" in moat.ok("inspect", moat.dir / "w.csr").stdout


def test_keys_never_show_their_secret(moat, pki):
    key = pki.path("leaf.key")
    r = moat.ok("inspect", key)
    assert "private key" in r.stdout and "not shown" in r.stdout
    body = [line for line in key.read_text().splitlines() if line and not line.startswith("-----")]
    assert "BEGIN" not in r.stdout and not any(line in r.stdout for line in body)
    pub = openssl("pkey", "-in", key, "-pubout").stdout
    o = inspect(moat, key)["objects"][0]
    (moat.dir / "pub.pem").write_text(pub)
    p = inspect(moat, moat.dir / "pub.pem")["objects"][0]
    assert o["type"] == "private_key" and p["type"] == "public_key"
    assert o["key_fingerprint"] == p["key_fingerprint"] and o["key_algorithm"] == "ec-p256"
    # Encrypted: listed as such without a password, opened with one, refused with a wrong one.
    enc = moat.dir / "enc.pem"
    openssl("pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out", enc)
    assert inspect(moat, enc)["objects"][0]["type"] == "encrypted"
    (moat.dir / "pw").write_text("secret\n")
    assert inspect(moat, enc, "--password-file", moat.dir / "pw")["objects"][0]["key_fingerprint"] == \
        o["key_fingerprint"]
    (moat.dir / "bad").write_text("wrong\n")
    r = moat.fails("inspect", enc, "--password-file", moat.dir / "bad")
    assert "password" in r.stderr


def test_pkcs12_and_pkcs7(moat, pki):
    d = moat.dir
    (d / "pw").write_text("secret\n")
    openssl("pkcs12", "-export", "-in", pki.path("leaf.pem"), "-inkey", pki.path("leaf.key"), "-certfile",
            pki.path("inter.pem"), "-passout", "pass:secret", "-out", d / "b.p12")
    assert inspect(moat, d / "b.p12")["objects"] == [{"type": "encrypted", "format": "PKCS#12", "what": "PKCS#12"}]
    objs = inspect(moat, d / "b.p12", "--password-file", d / "pw")["objects"]
    assert [o["type"] for o in objs].count("certificate") == 2
    key = next(o for o in objs if o["type"] == "private_key")
    assert objs[key["certificate_index"]]["fingerprint"] == fingerprint(pki.path("leaf.pem"))
    for form in ("PEM", "DER"):
        openssl("crl2pkcs7", "-nocrl", "-certfile", pki.path("leaf.pem"), "-certfile", pki.path("inter.pem"),
                "-outform", form, "-out", d / "c.p7b")
        objs = inspect(moat, d / "c.p7b")["objects"]
        assert [(o["type"], o["format"]) for o in objs] == [("certificate", "PKCS#7")] * 2


def test_crl(moat, pki):
    pki.revoke("leaf", "inter")
    crl = pki.gencrl("inter", moat.dir / "inter.crl")
    o = inspect(moat, crl)["objects"][0]
    serial = openssl("x509", "-in", pki.path("leaf.pem"), "-noout", "-serial").stdout.strip().split("=")[1]
    assert o["type"] == "crl" and o["issuer"] == "CN=Inspect Intermediate" and o["revoked_count"] == 1
    assert o["revoked"][0]["serial"] == serial.lstrip("0") and o["stale"] is False and o["next_update"]
    r = moat.ok("inspect", crl)
    assert "revoked:      1 certificate" in r.stdout and serial.lstrip("0") in r.stdout


def test_a_live_server(moat, pki):
    s = SServer(moat.dir, pki.path("leaf.pem"), pki.path("leaf.key"), chain=pki.path("inter.pem"))
    try:
        doc = inspect(moat, f"127.0.0.1:{s.port}")
        assert [o["format"] for o in doc["objects"]] == ["TLS", "TLS"]
        assert doc["objects"][0]["fingerprint"] == fingerprint(pki.path("leaf.pem"))
        assert doc["protocol"].startswith("TLSv1.") and doc["address"].startswith("127.0.0.1")
        r = moat.ok("inspect", f"https://127.0.0.1:{s.port}/")
        assert "the server sent 2 certificates" in r.stdout
    finally:
        s.stop()
    r = moat.fails("inspect", "--timeout", "2", f"127.0.0.1:{s.port}")
    assert "no TLS handshake" in r.stderr and "moat doctor" in r.stderr


def test_bad_input_says_what_to_do(moat):
    (moat.dir / "junk").write_text("hello\n")
    r = moat.fails("--json", "inspect", moat.dir / "junk")
    e = json.loads(r.stderr)["error"]
    assert "not a certificate, request, CRL, key or bundle" in e["message"] and "PKCS#7" in e["hint"]
    (moat.dir / "empty").write_text("")
    assert "empty" in moat.fails("inspect", moat.dir / "empty").stderr
    r = moat.fails("inspect", moat.dir / "missing.pem")
    assert "cannot read" in r.stderr
    moat.fails("inspect", code=2)
    assert moat.ok("inspect", "--help").stdout.startswith("usage: moat inspect")
