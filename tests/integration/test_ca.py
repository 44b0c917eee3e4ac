"""moat ca: root, intermediate, signing, issuing, client bundles, revocation, policies; checked with openssl."""
import json
import subprocess

import pytest

from keymgr_helpers import dump, keys, openssl, pubkey, write_pw


def text_of(path, der=False):
    args = ["x509", "-in", path, "-noout", "-text"] + (["-inform", "DER"] if der else [])
    return openssl(*args).stdout


@pytest.fixture
def ca(moat):
    moat.ok("ca", "init", "--cn", "Test Root")
    (moat.dir / "root.pem").write_text(moat.ok("ca", "cert", "--root").stdout)
    return moat


def csr(m, name, cn, extra=()):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", m.dir / f"{name}.key", "-subj", f"/CN={cn}", "-out", m.dir / f"{name}.csr", *extra)
    return m.dir / f"{name}.csr"


def test_help(moat):
    assert "init" in moat.ok("ca", "--help").stdout
    for sub in ("init", "sign", "issue", "cert", "list", "export-client", "export-root", "set-url", "policy"):
        assert moat.ok("ca", sub, "--help").stdout.startswith("usage: moat ca " + sub)


def test_init_without_url_says_revocation_cannot_be_checked(moat):
    r = moat.ok("ca", "init", "--cn", "No URL Root")
    assert "no --url" in r.stdout and "moat ca set-url" in r.stdout


def test_init_with_url_has_no_revocation_note(moat):
    r = moat.ok("ca", "init", "--cn", "URL Root", "--url", "http://ca.example.com")
    assert "no --url" not in r.stdout


def test_init_makes_a_root(ca):
    t = text_of(ca.dir / "root.pem")
    assert "CA:TRUE" in t and "Certificate Sign" in t and "CRL Sign" in t
    assert "Subject: CN = Test Root" in t
    assert ca.ok("ca", "cert").stdout == (ca.dir / "root.pem").read_text()
    before = dump(ca.store)
    r = ca.fails("ca", "init")
    assert "already has a root" in r.stderr
    assert dump(ca.store) == before
    # The CA key is a (non-exportable) key of the store.
    assert keys(ca)["moat-ca-root"]["exportable"] is False


def test_sign_server_and_client_profiles(ca):
    m = ca
    csr(m, "www", "www.example.com", ("-addext", "subjectAltName=DNS:www.example.com"))
    r = m.ok("ca", "sign", "www.csr", "--out", "www.pem")
    assert "server profile" in r.stdout
    openssl("verify", "-CAfile", m.dir / "root.pem", "-purpose", "sslserver", m.dir / "www.pem")
    t = text_of(m.dir / "www.pem")
    assert "TLS Web Server Authentication" in t and "DNS:www.example.com" in t and "CA:FALSE" in t
    end = openssl("x509", "-in", m.dir / "www.pem", "-noout", "-enddate", "-startdate").stdout
    assert end
    csr(m, "alice", "alice@example.com")
    m.ok("ca", "sign", "alice.csr", "--out", "alice.pem", "--profile", "client", "--days", "30")
    openssl("verify", "-CAfile", m.dir / "root.pem", "-purpose", "sslclient", m.dir / "alice.pem")
    assert "TLS Web Client Authentication" in text_of(m.dir / "alice.pem")
    listing = json.loads(m.ok("ca", "list", "--json").stdout)
    assert {x["profile"] for x in listing} == {"server", "client"}
    assert all(x["revoked"] is False for x in listing)
    assert "ca.sign" in dump(m.store)


def test_sign_with_openssl_and_ca_sign_for_the_same_key_manager_flow(ca):
    m = ca
    m.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    m.ok("ca", "sign", "www.csr", "--out", "www.pem")
    m.ok("cert", "install", "www", "www.pem")
    assert keys(m)["www"]["state"] == "active"
    assert keys(m)["www"]["issuer"] == "CN=Test Root"


def test_bad_requests_change_nothing(ca):
    m = ca
    req = csr(m, "www", "www.example.com")
    before = dump(m.store)
    # A request whose signature does not verify: flip a byte of the signature (the DER's tail).
    raw = bytearray(der_of(req))
    raw[-5] ^= 0x55
    (m.dir / "bad.der").write_bytes(bytes(raw))
    r = m.fails("ca", "sign", "bad.der", "--out", "bad.pem")
    assert "signature" in r.stderr
    assert not (m.dir / "bad.pem").exists()
    # Not a request at all.
    (m.dir / "junk.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nxx\n-----END CERTIFICATE REQUEST-----\n")
    m.fails("ca", "sign", "junk.csr", "--out", "junk.pem")
    # A request asking to be a CA.
    csr(m, "sub", "sub.example.com", ("-addext", "basicConstraints=critical,CA:TRUE"))
    r = m.fails("ca", "sign", "sub.csr", "--out", "sub.pem")
    assert "CA" in r.stderr
    # Longer than the profile allows.
    r = m.fails("ca", "sign", req, "--out", "long.pem", "--days", "400")
    assert "90" in r.stderr
    # Unknown profile.
    m.fails("ca", "sign", req, "--out", "x.pem", "--profile", "banana")
    m.fails("ca", "sign", req, code=2)
    assert dump(m.store) == before


def der_of(req):
    return subprocess.run(["openssl", "req", "-in", str(req), "-outform", "DER"], capture_output=True,
                          check=True).stdout


def test_sign_without_a_ca(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    r = moat.fails("ca", "sign", "www.csr", "--out", "www.pem")
    assert "ca init" in r.stderr


def test_issue_server_and_client(ca):
    m = ca
    r = m.ok("ca", "issue", "api", "--cn", "api.example.com")
    assert "not exportable" in r.stdout
    k = keys(m)["api"]
    assert k["state"] == "active" and k["exportable"] is False
    r = m.ok("ca", "issue", "alice", "--cn", "alice@example.com", "--profile", "client",
             "--san", "email:alice@example.com")
    assert "exportable" in r.stdout and "export-client" in r.stdout
    assert keys(m)["alice"]["exportable"] is True
    pw = write_pw(m.dir, "alice pw")
    m.ok("ca", "export-client", "alice", "--out", "alice.p12", "--password-file", pw)
    pem = openssl("pkcs12", "-in", m.dir / "alice.p12", "-nodes", "-passin", f"file:{pw}").stdout
    (m.dir / "alice.pem").write_text(pem)
    openssl("verify", "-CAfile", m.dir / "root.pem", "-purpose", "sslclient", m.dir / "alice.pem")
    assert "ca.export-client" in dump(m.store)
    # A server certificate is not a client bundle.
    r = m.fails("ca", "export-client", "api", "--out", "api.p12", "--password-file", pw)
    assert "not a client certificate" in r.stderr
    before = dump(m.store)
    m.fails("ca", "issue", "api", "--cn", "api.example.com")
    assert dump(m.store) == before


def test_intermediate_issues_and_root_goes_offline(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Offline Root", "--exportable")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    pw = write_pw(m.dir, "root pw")
    r = m.fails("ca", "export-root", "--out", "root.p12", "--password-file", pw, "--remove-key")
    assert "intermediate" in r.stderr
    assert not (m.dir / "root.p12").exists()
    m.ok("ca", "init", "--intermediate", "--cn", "Issuing CA", "--permit", "example.com")
    (m.dir / "inter.pem").write_text(m.ok("ca", "cert").stdout)
    t = text_of(m.dir / "inter.pem")
    assert "Issuer: CN = Offline Root" in t and "pathlen:0" in t and "example.com" in t
    m.ok("ca", "issue", "www", "--cn", "www.example.com")
    m.ok("cert", "export", "www", "--chain", "--out", "chain.pem")
    chain = (m.dir / "chain.pem").read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
    m.ok("cert", "export", "www", "--out", "leaf.pem")
    openssl("verify", "-CAfile", m.dir / "root.pem", "-untrusted", m.dir / "inter.pem", m.dir / "leaf.pem")
    m.ok("ca", "export-root", "--out", "root.p12", "--password-file", pw, "--remove-key")
    pem = openssl("pkcs12", "-in", m.dir / "root.p12", "-nodes", "-passin", f"file:{pw}").stdout
    (m.dir / "root-back.pem").write_text(pem)
    assert pubkey(m.dir / "root-back.pem", "key") == pubkey(m.dir / "root.pem", "cert")
    assert "moat-ca-root" not in keys(m)
    # The intermediate keeps issuing; the root is still printed for clients.
    m.ok("ca", "issue", "api", "--cn", "api.example.com")
    assert m.ok("ca", "cert", "--root").stdout == (m.dir / "root.pem").read_text()
    r = m.fails("ca", "export-root", "--out", "again.p12", "--password-file", pw)
    assert "offline" in r.stderr


def test_export_root_refused_when_not_exportable(ca):
    pw = write_pw(ca.dir, "pw")
    r = ca.fails("ca", "export-root", "--out", "r.p12", "--password-file", pw)
    assert "not exportable" in r.stderr


def test_list_expiring(ca):
    m = ca
    m.ok("ca", "issue", "short", "--cn", "short.example.com", "--days", "5")
    m.ok("ca", "issue", "long", "--cn", "long.example.com", "--days", "80")
    soon = json.loads(m.ok("ca", "list", "--expiring", "10", "--json").stdout)
    assert [x["name"] for x in soon] == ["short"]
    text = m.ok("ca", "list").stdout
    assert "short" in text and "long" in text


def test_set_url_goes_into_new_certificates(ca):
    m = ca
    m.fails("ca", "set-url", "ftp://nope")
    m.ok("ca", "set-url", "http://ca.example.com")
    m.ok("ca", "issue", "www", "--cn", "www.example.com")
    m.ok("cert", "export", "www", "--out", "www.pem")
    t = text_of(m.dir / "www.pem")
    assert "http://ca.example.com/.well-known/moat/" in t
    assert "OCSP - URI:http://ca.example.com" in t


def test_policy_names_and_validity(ca):
    m = ca
    m.ok("ca", "policy", "server", "--allow", "*.example.com", "--max-days", "30")
    pol = json.loads(m.ok("ca", "policy", "server", "--json").stdout)
    assert pol == {"profile": "server", "max_days": 30, "allow": ["*.example.com"]}
    before = dump(m.store)
    r = m.fails("ca", "issue", "evil", "--cn", "www.evil.org")
    assert "www.evil.org" in r.stderr
    csr(m, "mix", "ok.example.com", ("-addext", "subjectAltName=DNS:ok.example.com,DNS:bad.other.net"))
    r = m.fails("ca", "sign", "mix.csr", "--out", "mix.pem")
    assert "bad.other.net" in r.stderr
    r = m.fails("ca", "issue", "long", "--cn", "long.example.com", "--days", "31")
    assert "30" in r.stderr
    assert dump(m.store) == before
    m.ok("ca", "issue", "ok", "--cn", "ok.example.com")
    m.ok("ca", "policy", "server", "--allow-any")
    m.ok("ca", "issue", "other", "--cn", "www.other.org")
