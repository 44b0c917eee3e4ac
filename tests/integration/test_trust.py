"""moat trust: anchors for client certificates (add, list, remove), refusals, and no change on failure."""
import json

from doctor_pki import Pki
from pki_helpers import openssl, self_signed


def make_ca(d, name, days=365, ca=True):
    return self_signed(d / f"{name}.key", d / f"{name}.pem", f"{name} Root", days=days, ca=ca)[1]


def anchors(moat, *extra):
    return json.loads(moat.ok("trust", "list", "--json", *extra).stdout)


def fingerprints(moat):
    return sorted((x["name"], x["fingerprint"]) for x in anchors(moat))


def test_add_list_remove(moat):
    corp = make_ca(moat.dir, "corp")
    r = moat.ok("trust", "add", corp, "--name", "corp-root")
    assert 'anchor "corp-root"' in r.stdout
    a = {x["name"]: x for x in anchors(moat)}
    assert a["corp-root"]["subject"] == "CN=corp Root"
    assert a["corp-root"]["days_left"] >= 364
    assert len(a["corp-root"]["fingerprint"]) == 95
    assert "corp-root" in moat.ok("trust", "list").stdout
    moat.ok("trust", "remove", "corp-root")
    assert "corp-root" not in {x["name"] for x in anchors(moat)}


def test_name_from_cn_and_der(moat):
    corp = make_ca(moat.dir, "partner")
    openssl("x509", "-in", str(corp), "-outform", "DER", "-out", "partner.der", cwd=moat.dir)
    moat.ok("trust", "add", moat.dir / "partner.der")
    assert "partner-root" in {x["name"] for x in anchors(moat)}


def test_bundle_adds_all_or_nothing(moat):
    a = make_ca(moat.dir, "a").read_text()
    b = make_ca(moat.dir, "b").read_text()
    leaf = make_ca(moat.dir, "leaf", ca=False).read_text()
    (moat.dir / "two.pem").write_text(a + b)
    moat.ok("trust", "add", "two.pem", "--name", "pair")
    assert {"pair-1", "pair-2"} <= {x["name"] for x in anchors(moat)}
    (moat.dir / "mixed.pem").write_text(make_ca(moat.dir, "c").read_text() + leaf)
    r = moat.fails("trust", "add", "mixed.pem", "--name", "mixed")
    assert "not a CA certificate" in r.stderr
    assert not any(x["name"].startswith("mixed") for x in anchors(moat))


def test_refusals_change_nothing(moat):
    corp = make_ca(moat.dir, "corp")
    moat.ok("trust", "add", corp, "--name", "corp")
    before = fingerprints(moat)
    r = moat.fails("trust", "add", corp, "--name", "corp")
    assert "corp" in r.stderr
    r = moat.fails("trust", "add", make_ca(moat.dir, "leaf", ca=False))
    assert "cannot be a trust anchor" in r.stderr and "not a CA certificate" in r.stderr
    (moat.dir / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    moat.fails("trust", "add", "junk.pem")
    r = moat.fails("trust", "add", make_ca(moat.dir, "old", days=1), "--name", "moat-ca")
    assert "moat's own CA" in r.stderr
    r = moat.fails("trust", "remove", "nope")
    assert 'no trust anchor named "nope"' in r.stderr
    moat.fails("trust", "add", code=2)
    assert fingerprints(moat) == before


def test_expired_needs_force(moat):
    pki = Pki(moat.dir)
    pki.root("top", cn="Top Root")
    old = pki.sign("old", "top", "Old Intermediate", ca=True, start=-400, end=-30)
    r = moat.fails("trust", "add", old)
    assert "expired on" in r.stderr and "--force" in r.stderr
    moat.ok("trust", "add", old, "--force")


def test_moat_ca_listed_and_sites_shown(moat):
    moat.ok("ca", "init", "--cn", "Test CA")
    corp = make_ca(moat.dir, "corp")
    moat.ok("trust", "add", corp, "--name", "corp")
    cfg = moat.dir / "moat.yaml"
    cfg.write_text(f"""
store: {moat.store}
sites:
  - hosts: [a.test]
    listen: ["127.0.0.1:1443"]
    client_certificate: required
    client_trust: [corp]
  - hosts: [b.test]
    listen: ["127.0.0.1:1443"]
""")
    a = {x["name"]: x for x in anchors(moat, "-c", cfg)}
    assert a["moat-ca"]["builtin"] is True
    assert a["moat-ca"]["subject"] == "CN=Test CA"
    assert a["corp"]["sites"] == ["a.test"]
    assert a["moat-ca"]["sites"] == []
    assert "used by a.test" in moat.ok("trust", "list", "-c", cfg).stdout
