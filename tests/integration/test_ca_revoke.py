"""moat ca revoke and ca crl: revocation, the re-signed CRL, checked with openssl crl and openssl verify."""
import json

import pytest

from keymgr_helpers import dump, keys, openssl
from store_rows import tamper_store


@pytest.fixture
def ca(moat):
    moat.ok("ca", "init", "--cn", "Test Root")
    (moat.dir / "root.pem").write_text(moat.ok("ca", "cert", "--root").stdout)
    return moat


def test_help(moat):
    for sub in ("crl", "revoke"):
        assert moat.ok("ca", sub, "--help").stdout.startswith("usage: moat ca " + sub)


def test_revoke_resigns_the_crl(ca):
    m = ca
    m.ok("ca", "issue", "www", "--cn", "www.example.com")
    m.ok("ca", "issue", "api", "--cn", "api.example.com")
    serial = json.loads(m.ok("key", "show", "www", "--json").stdout)["serial"]
    m.ok("ca", "crl", "--out", "crl0.pem")
    assert "No Revoked Certificates" in openssl("crl", "-in", m.dir / "crl0.pem", "-noout", "-text").stdout
    r = m.ok("ca", "revoke", "www", "--reason", "key-compromise")
    assert serial in r.stdout
    m.ok("ca", "crl", "--out", "crl.pem")
    t = openssl("crl", "-in", m.dir / "crl.pem", "-noout", "-text").stdout
    assert serial in t.replace(":", "").upper() and "Key Compromise" in t
    openssl("crl", "-in", m.dir / "crl.pem", "-noout", "-CAfile", m.dir / "root.pem")
    m.ok("cert", "export", "www", "--out", "www.pem")
    v = openssl("verify", "-crl_check", "-CAfile", m.dir / "root.pem", "-CRLfile", m.dir / "crl.pem",
                m.dir / "www.pem", check=False)
    assert v.returncode != 0 and "revoked" in (v.stdout + v.stderr)
    m.ok("cert", "export", "api", "--out", "api.pem")
    openssl("verify", "-crl_check", "-CAfile", m.dir / "root.pem", "-CRLfile", m.dir / "crl.pem", m.dir / "api.pem")
    assert keys(m)["www"]["state"] == "revoked"
    revoked = json.loads(m.ok("ca", "list", "--revoked", "--json").stdout)
    assert [x["serial"] for x in revoked] == [serial] and revoked[0]["reason"] == "key-compromise"
    before = dump(m.store)
    r = m.fails("ca", "revoke", serial)
    assert "already revoked" in r.stderr
    r = m.fails("ca", "revoke", "0123456789ABCDEF")
    assert "no certificate" in r.stderr
    m.fails("ca", "revoke", "api", "--reason", "because")
    assert dump(m.store) == before


def crl_number(m, path):
    t = openssl("crl", "-in", m.dir / path, "-noout", "-text").stdout
    return int(t.split("X509v3 CRL Number:")[1].split()[0], 0)


def test_crl_is_kept_and_resigned_when_missing_or_due(ca):
    m = ca
    m.ok("ca", "crl", "--out", "a.pem")
    m.ok("ca", "crl", "--out", "b.pem")
    assert (m.dir / "a.pem").read_text() == (m.dir / "b.pem").read_text()   # fresh: not re-signed
    n = crl_number(m, "a.pem")
    m.ok("ca", "crl", "--der", "--out", "a.der")
    openssl("crl", "-inform", "DER", "-in", m.dir / "a.der", "-noout", "-CAfile", m.dir / "root.pem")
    # A store whose CRL is gone (or due) gets a new one, signed, with the next number, and audited.
    tamper_store(m.store, "delete from settings where name like 'ca.crl.%'")
    m.ok("ca", "crl", "--out", "c.pem")
    assert crl_number(m, "c.pem") == n + 1
    openssl("crl", "-in", m.dir / "c.pem", "-noout", "-CAfile", m.dir / "root.pem")
    assert "ca.crl" in dump(m.store)


def test_intermediate_revocations_go_to_its_crl(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "init", "--intermediate", "--cn", "Issuing")
    m.ok("ca", "cert", "--root", "--out", "root.pem")
    m.ok("ca", "cert", "--out", "inter.pem")
    m.ok("ca", "issue", "www", "--cn", "www.example.com")
    m.ok("ca", "revoke", "www", "--reason", "superseded")
    m.ok("ca", "crl", "--out", "inter.crl")
    m.ok("ca", "crl", "--root", "--out", "root.crl")
    t = openssl("crl", "-in", m.dir / "inter.crl", "-noout", "-text").stdout
    assert "Issuer: CN = Issuing" in t and "Superseded" in t
    assert "No Revoked Certificates" in openssl("crl", "-in", m.dir / "root.crl", "-noout", "-text").stdout
    m.ok("cert", "export", "www", "--out", "www.pem")
    (m.dir / "crls.pem").write_text((m.dir / "inter.crl").read_text() + (m.dir / "root.crl").read_text())
    v = openssl("verify", "-crl_check_all", "-CAfile", m.dir / "root.pem", "-untrusted", m.dir / "inter.pem",
                "-CRLfile", m.dir / "crls.pem", m.dir / "www.pem", check=False)
    assert v.returncode != 0 and "revoked" in (v.stdout + v.stderr)


def test_the_server_resigns_a_missing_crl_at_start(moat):
    """The running server re-signs a CRL that is missing or due (ca.crl audited as the server's), without
    anybody running moat ca crl."""
    from serve_helpers import config, free_port, site, wait_for
    moat.ok("ca", "init", "--cn", "Root")
    moat.ok("ca", "issue", "www", "--cn", "localhost")
    tamper_store(moat.store, "delete from settings where name = 'ca.crl.root'")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, extra="certificate: www")]), wait=[port])

    def resigned():
        audit = json.loads(moat.ok("--json", "store", "audit", "--key", "root").stdout)
        return [a for a in audit if a["action"] == "ca.crl" and "by the server" in a["detail"]]
    assert wait_for(resigned, timeout=10), moat.ok("store", "audit").stdout
    crl = moat.ok("ca", "crl", "--root").stdout
    assert "BEGIN X509 CRL" in crl
