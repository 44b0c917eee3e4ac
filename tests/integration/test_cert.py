"""moat cert install / export / history / rollback, with certificates from openssl and from moat's CA."""
import json

import pytest

from keymgr_helpers import dump, fingerprint, keys, openssl, openssl_sign, outside_ca, outside_chain, pubkey


@pytest.fixture
def pending(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--san", "DNS:www.example.com,DNS:example.com",
            "--csr-out", "www.csr")
    return moat


def test_help(moat):
    assert "install" in moat.ok("cert", "--help").stdout
    for sub in ("install", "export", "history", "rollback"):
        assert moat.ok("cert", sub, "--help").stdout.startswith("usage: moat cert " + sub)


def test_install_a_certificate_signed_by_openssl(pending):
    m = pending
    ikey, icrt, root = outside_chain(m.dir)
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "www.pem", ca=(ikey, icrt))
    (m.dir / "chain-in.pem").write_text(icrt.read_text() + root.read_text())
    r = m.ok("cert", "install", "www", "www.pem", "--chain", "chain-in.pem")
    assert "www" in r.stdout and "active" in r.stdout
    k = keys(m)["www"]
    assert k["state"] == "active"
    assert k["issuer"] == "CN=Outside Intermediate"
    assert k["fingerprint"] == fingerprint(m.dir / "www.pem")
    assert sorted(k["sans"]) == ["DNS:example.com", "DNS:www.example.com"]
    assert 28 <= k["days_left"] <= 30
    # The exported chain is leaf then intermediate (never the root), and verifies.
    m.ok("cert", "export", "www", "--chain", "--out", "chain.pem")
    text = (m.dir / "chain.pem").read_text()
    assert text.count("BEGIN CERTIFICATE") == 2
    openssl("verify", "-CAfile", root, "-untrusted", m.dir / "chain.pem", m.dir / "www.pem")
    first = text.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    (m.dir / "first.pem").write_text(first)
    assert fingerprint(m.dir / "first.pem") == k["fingerprint"]


def test_bundled_chain_in_any_order_is_ordered(pending):
    m = pending
    ikey, icrt, root = outside_chain(m.dir)
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "www.pem", ca=(ikey, icrt))
    # Root, leaf, intermediate: moat must put the leaf first and the intermediate after it.
    (m.dir / "bundle.pem").write_text(root.read_text() + (m.dir / "www.pem").read_text() + icrt.read_text())
    m.ok("cert", "install", "www", "bundle.pem")
    out = m.ok("cert", "export", "www", "--chain").stdout
    (m.dir / "got.pem").write_text(out.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    assert fingerprint(m.dir / "got.pem") == fingerprint(m.dir / "www.pem")
    assert out.count("BEGIN CERTIFICATE") == 2


def test_export_formats(pending):
    m = pending
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "www.pem")
    m.ok("cert", "install", "www", "www.pem")
    pem = m.ok("cert", "export", "www").stdout
    assert pem.count("BEGIN CERTIFICATE") == 1
    m.ok("cert", "export", "www", "--der", "--out", "www.der")
    der = (m.dir / "www.der").read_bytes()
    assert der[0] == 0x30
    text = openssl("x509", "-inform", "DER", "-in", m.dir / "www.der", "-noout", "-subject").stdout
    assert "www.example.com" in text


def test_export_of_a_pending_key_says_why(pending):
    r = pending.fails("cert", "export", "www")
    assert "pending" in r.stderr and "cert install" in r.stderr


def test_mismatched_certificate_names_both_fingerprints(pending):
    m = pending
    m.ok("key", "new", "other", "--cn", "other.example.com", "--csr-out", "other.csr")
    openssl_sign(m.dir, m.dir / "other.csr", m.dir / "other.pem")
    before = dump(m.store)
    r = m.fails("cert", "install", "www", "other.pem")
    assert "does not match" in r.stderr
    www_fp = keys(m)["www"]["key_fingerprint"]
    other_fp = keys(m)["other"]["key_fingerprint"]
    assert www_fp[:23] in r.stderr and other_fp[:23] in r.stderr
    assert dump(m.store) == before


def test_expired_and_not_yet_valid_need_force(pending):
    m = pending
    key, crt = outside_ca(m.dir)
    # An expired certificate: valid for one day, a year ago.
    _sign_with_ca_cmd(m, key, crt, "20240101000000Z", "20240102000000Z", "old.pem")
    before = dump(m.store)
    r = m.fails("cert", "install", "www", "old.pem")
    assert "expired" in r.stderr and "2024-01-02" in r.stderr and "--force" in r.stderr
    assert dump(m.store) == before
    _sign_with_ca_cmd(m, key, crt, "20991230000000Z", "20991231000000Z", "future.pem")
    r = m.fails("cert", "install", "www", "future.pem")
    assert "not valid before" in r.stderr and "2099-12-30" in r.stderr
    assert dump(m.store) == before
    m.ok("cert", "install", "www", "old.pem", "--force")
    assert keys(m)["www"]["state"] == "expired"


def _sign_with_ca_cmd(m, key, crt, start, end, out):
    """OpenSSL 3.0's `x509 -req` cannot set past or future dates; `openssl ca` can."""
    d = m.dir / "ca-db"
    d.mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(f"""[ca]
default_ca = x
[x]
database = {d}/index.txt
serial = {d}/serial
new_certs_dir = {d}
certificate = {crt}
private_key = {key}
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
x509_extensions = ext
[p]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
""")
    openssl("ca", "-batch", "-config", conf, "-in", m.dir / "www.csr", "-out", m.dir / out,
            "-startdate", start, "-enddate", end, "-notext")


def test_corrupt_certificate_file(pending):
    m = pending
    before = dump(m.store)
    (m.dir / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    r = m.fails("cert", "install", "www", "bad.pem")
    assert "bad.pem" in r.stderr
    (m.dir / "bad.der").write_bytes(b"\x30\x82\x01\x00garbage")
    m.fails("cert", "install", "www", "bad.der")
    m.fails("cert", "install", "www", "missing.pem")
    assert dump(m.store) == before


def test_chain_that_does_not_belong_is_refused(pending):
    m = pending
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "www.pem")
    # A chain from another CA: it did not sign the leaf.
    other = m.dir / "other"
    other.mkdir()
    _, other_ca = outside_ca(other, name="Someone Else")
    before = dump(m.store)
    r = m.fails("cert", "install", "www", "www.pem", "--chain", other_ca)
    assert "chain" in r.stderr.lower()
    assert dump(m.store) == before


def test_install_for_unknown_key(moat):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    (moat.dir / "x.pem").write_text("")
    r = moat.fails("cert", "install", "nope", "x.pem")
    assert "nope" in r.stderr


def test_history_and_rollback(pending):
    m = pending
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "one.pem")
    m.ok("cert", "install", "www", "one.pem")
    one = fingerprint(m.dir / "one.pem")
    m.ok("key", "renew", "www", "--csr-out", "www2.csr")
    openssl_sign(m.dir, m.dir / "www2.csr", m.dir / "two.pem")
    m.ok("cert", "install", "www", "two.pem")
    two = fingerprint(m.dir / "two.pem")
    assert keys(m)["www"]["fingerprint"] == two
    hist = json.loads(m.ok("cert", "history", "www", "--json").stdout)
    assert [h["fingerprint"] for h in hist] == [two, one]
    assert hist[0]["current"] is True and hist[1]["current"] is False
    text = m.ok("cert", "history", "www").stdout
    assert one[:20] in text and two[:20] in text
    r = m.ok("cert", "rollback", "www")
    assert "rolled back" in r.stdout
    k = keys(m)["www"]
    assert k["fingerprint"] == one
    # The key in use is the old key again: its public key matches the old certificate.
    m.ok("cert", "export", "www", "--out", "now.pem")
    assert pubkey(m.dir / "now.pem", "cert") == pubkey(m.dir / "one.pem", "cert")
    hist = json.loads(m.ok("cert", "history", "www", "--json").stdout)
    assert [h["current"] for h in hist] == [False, True]
    # Nothing older than the first certificate.
    before = dump(m.store)
    r = m.fails("cert", "rollback", "www")
    assert "no earlier certificate" in r.stderr
    assert dump(m.store) == before


def test_rollback_without_history(pending):
    m = pending
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "one.pem")
    m.ok("cert", "install", "www", "one.pem")
    before = dump(m.store)
    r = m.fails("cert", "rollback", "www")
    assert "no earlier certificate" in r.stderr
    assert dump(m.store) == before


def test_install_and_rollback_bump_the_generation_once(pending):
    m = pending

    def generation():
        return json.loads(m.ok("store", "info", "--json").stdout)["generation"]
    openssl_sign(m.dir, m.dir / "www.csr", m.dir / "one.pem")
    g0 = generation()
    m.ok("cert", "install", "www", "one.pem")
    assert generation() == g0 + 1
    m.ok("key", "renew", "www", "--csr-out", "www2.csr")
    openssl_sign(m.dir, m.dir / "www2.csr", m.dir / "two.pem")
    g1 = generation()
    m.ok("cert", "install", "www", "two.pem")
    assert generation() == g1 + 1
    m.ok("cert", "rollback", "www")
    assert generation() == g1 + 2
    m.fails("cert", "install", "www", "one.pem")      # already there: nothing changes
    assert generation() == g1 + 2


def test_a_certificate_the_server_would_refuse_is_not_installed(moat):
    """Check before commit: an RSA-1024 key loads nowhere at security level 2."""
    m = moat
    openssl("req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", m.dir / "old.key", "-out",
            m.dir / "old.pem", "-subj", "/CN=old.example.com", "-days", "10")
    m.ok("key", "import", "old", "old.key")
    before = dump(m.store)
    r = m.fails("cert", "install", "old", "old.pem")
    assert "would refuse" in r.stderr and "small" in r.stderr
    assert dump(m.store) == before
    # Importing key and certificate together keeps them (an importer must not lose keys) but warns.
    (m.dir / "both.pem").write_text((m.dir / "old.key").read_text() + (m.dir / "old.pem").read_text())
    m.ok("key", "delete", "old")
    r = m.ok("key", "import", "old", "both.pem")
    assert "would refuse" in r.stderr
