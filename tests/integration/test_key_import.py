"""moat key import / export: PEM, DER, PKCS#8, PKCS#12 in; PKCS#12 out, read back by openssl."""
import os
import stat

import pytest

from keymgr_helpers import dump, fingerprint, keys, openssl, outside_ca, pubkey, write_pw


@pytest.fixture
def material(tmp_path):
    """An EC key with a certificate from an outside CA, in every format moat imports."""
    d = tmp_path / "m"
    d.mkdir()
    ca_key, ca_crt = outside_ca(d)
    key = d / "k.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=imp.example.com", "-addext",
            "subjectAltName=DNS:imp.example.com", "-out", d / "k.csr")
    (d / "ext").write_text("subjectAltName=DNS:imp.example.com\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", d / "k.csr", "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "30", "-extfile", d / "ext", "-out", d / "k.crt")
    pw = write_pw(d, "s3cret pw")
    openssl("pkcs8", "-topk8", "-in", key, "-outform", "DER", "-nocrypt", "-out", d / "k.der")
    openssl("pkcs8", "-topk8", "-in", key, "-v2", "aes-256-cbc", "-passout", f"file:{pw}", "-out", d / "k.enc.pem")
    openssl("pkcs12", "-export", "-inkey", key, "-in", d / "k.crt", "-certfile", ca_crt, "-passout",
            f"file:{pw}", "-out", d / "k.p12")
    openssl("pkcs12", "-export", "-legacy", "-inkey", key, "-in", d / "k.crt", "-passout", f"file:{pw}",
            "-out", d / "k-legacy.p12")
    (d / "bundle.pem").write_text((d / "k.crt").read_text() + key.read_text() + ca_crt.read_text())
    return d


def test_pem_bundle_pairs_key_and_certificate(moat, material):
    r = moat.ok("key", "import", "imp", material / "bundle.pem")
    assert "imported" in r.stdout
    k = keys(moat)["imp"]
    assert k["state"] == "active" and k["exportable"] is False
    assert k["fingerprint"] == fingerprint(material / "k.crt")
    assert k["algorithm"] == "ec-p256"


def test_der_pkcs8_without_certificate_is_pending_then_installed(moat, material):
    r = moat.ok("key", "import", "imp", material / "k.der")
    assert "pending" in r.stdout
    assert keys(moat)["imp"]["state"] == "pending"
    moat.ok("cert", "install", "imp", material / "k.crt")
    assert keys(moat)["imp"]["state"] == "active"


def test_encrypted_pkcs8(moat, material):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    before = dump(moat.store)
    r = moat.fails("key", "import", "imp", material / "k.enc.pem")   # no password, no tty
    assert "password" in r.stderr.lower() and "--password-file" in r.stderr
    bad = write_pw(moat.dir, "wrong", name="bad.txt")
    r = moat.fails("key", "import", "imp", material / "k.enc.pem", "--password-file", bad)
    assert "password" in r.stderr.lower()
    assert dump(moat.store) == before
    moat.ok("key", "import", "imp", material / "k.enc.pem", "--password-file", material / "pw.txt")
    assert keys(moat)["imp"]["state"] == "pending"


@pytest.mark.parametrize("p12", ["k.p12", "k-legacy.p12"])
def test_pkcs12_modern_and_legacy(moat, material, p12):
    moat.ok("key", "import", "imp", material / p12, "--password-file", material / "pw.txt")
    k = keys(moat)["imp"]
    assert k["state"] == "active" and k["fingerprint"] == fingerprint(material / "k.crt")


def test_wrong_pkcs12_password_changes_nothing(moat, material):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    before = dump(moat.store)
    bad = write_pw(moat.dir, "nope", name="bad.txt")
    r = moat.fails("key", "import", "imp", material / "k.p12", "--password-file", bad)
    assert "password" in r.stderr.lower()
    assert dump(moat.store) == before


@pytest.mark.parametrize("content", [
    b"-----BEGIN PRIVATE KEY-----\nAAAA####\n-----END PRIVATE KEY-----\n",
    b"\x30\x82\x05\x00\x02\x01\x03garbage",
    b"hello, I am not a key\n",
    b"",
])
def test_corrupt_input_changes_nothing(moat, content):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    before = dump(moat.store)
    (moat.dir / "bad").write_bytes(content)
    r = moat.fails("key", "import", "imp", "bad")
    assert len(r.stderr.strip().splitlines()) <= 2
    assert dump(moat.store) == before


def test_certificate_only_file_says_what_to_do(moat, material):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    r = moat.fails("key", "import", "imp", material / "k.crt")
    assert "no private key" in r.stderr and "cert install" in r.stderr


def test_duplicates_are_refused(moat, material):
    moat.ok("key", "import", "imp", material / "bundle.pem")
    before = dump(moat.store)
    r = moat.fails("key", "import", "imp", material / "bundle.pem")
    assert "exists" in r.stderr and "--replace" in r.stderr
    r = moat.fails("key", "import", "other", material / "bundle.pem")
    assert '"imp"' in r.stderr
    assert dump(moat.store) == before


def test_export_refused_unless_exportable_then_fixed_by_replace(moat, material):
    pw = write_pw(moat.dir, "export pw")
    moat.ok("key", "import", "imp", material / "k.p12", "--password-file", material / "pw.txt")
    before = dump(moat.store)
    r = moat.fails("key", "export", "imp", "--out", "out.p12", "--password-file", pw)
    assert "not exportable" in r.stderr
    assert "--exportable --replace" in r.stderr
    assert not (moat.dir / "out.p12").exists()
    assert dump(moat.store) == before
    # The documented fix: re-import from the original file.
    moat.ok("key", "import", "imp", material / "k.p12", "--password-file", material / "pw.txt",
            "--exportable", "--replace")
    assert keys(moat)["imp"]["exportable"] is True
    moat.ok("key", "export", "imp", "--out", "out.p12", "--password-file", pw)
    out = moat.dir / "out.p12"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    info = openssl("pkcs12", "-in", out, "-info", "-nokeys", "-passin", f"file:{pw}").stderr
    assert "AES-256-CBC" in info or "aes-256-cbc" in info.lower()
    pem = openssl("pkcs12", "-in", out, "-nodes", "-passin", f"file:{pw}").stdout
    (moat.dir / "back.pem").write_text(pem)
    assert pubkey(moat.dir / "back.pem", "key") == pubkey(material / "k.crt", "cert")
    assert "key.export" in dump(moat.store)
    assert "key.replace" in dump(moat.store)


def test_legacy_export(moat, material):
    pw = write_pw(moat.dir, "export pw")
    moat.ok("key", "import", "imp", material / "bundle.pem", "--exportable")
    moat.ok("key", "export", "imp", "--out", "old.p12", "--password-file", pw, "--legacy")
    info = openssl("pkcs12", "-in", moat.dir / "old.p12", "-info", "-nokeys", "-passin", f"file:{pw}",
                   check=False)
    text = info.stdout + info.stderr
    assert "3-KeyTripleDES" in text or "des-ede3" in text.lower(), text
    pem = openssl("pkcs12", "-in", moat.dir / "old.p12", "-nodes", "-passin", f"file:{pw}").stdout
    (moat.dir / "back.pem").write_text(pem)
    assert pubkey(moat.dir / "back.pem", "key") == pubkey(material / "k.crt", "cert")


def test_export_of_pending_key_and_empty_password(moat, material):
    pw = write_pw(moat.dir, "export pw")
    moat.ok("key", "new", "p", "--cn", "p.example.com", "--exportable", "--csr-out", "p.csr")
    r = moat.fails("key", "export", "p", "--out", "p.p12", "--password-file", pw)
    assert "no certificate" in r.stderr
    moat.ok("key", "import", "imp", material / "bundle.pem", "--exportable")
    empty = moat.dir / "empty.txt"
    empty.write_text("")
    r = moat.fails("key", "export", "imp", "--out", "x.p12", "--password-file", empty)
    assert "empty" in r.stderr
    assert not (moat.dir / "x.p12").exists()


def test_replace_with_an_unrelated_key_alone_is_refused(moat, material, tmp_path):
    moat.ok("key", "import", "imp", material / "bundle.pem")
    other = tmp_path / "other.pem"
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other)
    before = dump(moat.store)
    r = moat.fails("key", "import", "imp", other, "--replace")
    assert "does not match" in r.stderr
    assert dump(moat.store) == before
