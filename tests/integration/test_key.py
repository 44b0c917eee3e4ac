"""moat key new / renew / list / show / delete through the real binary, checked with openssl."""
import json
import os
import pty
import select
import subprocess
import time

import pytest

from conftest import MOAT_BIN
from keymgr_helpers import dump, keys, openssl, pubkey


def test_group_and_every_subcommand_answer_help(moat):
    assert "new" in moat.ok("key", "--help").stdout
    for sub in ("new", "renew", "list", "show", "import", "export", "delete"):
        r = moat.ok("key", sub, "--help")
        assert r.stdout.startswith("usage: moat key " + sub), r.stdout


def test_key_without_command_is_usage_error(moat):
    moat.fails("key", code=2)
    moat.fails("key", "frobnicate", code=2)


def test_new_writes_a_csr_with_subject_and_sans(moat):
    r = moat.ok("key", "new", "www", "--cn", "www.example.com", "--san", "DNS:example.com,IP:192.0.2.7",
                "--san", "DNS:www.example.com", "--org", "Example Ltd", "--ou", "Web", "--locality", "Paris",
                "--state", "IDF", "--country", "FR", "--email", "ops@example.com", "--csr-out", "www.csr")
    assert "www.csr" in r.stdout and "moat cert install www" in r.stdout
    csr = moat.dir / "www.csr"
    text = openssl("req", "-in", csr, "-noout", "-text", "-verify").stdout
    for want in ("CN = www.example.com", "O = Example Ltd", "OU = Web", "L = Paris", "ST = IDF", "C = FR",
                 "DNS:example.com", "IP Address:192.0.2.7", "DNS:www.example.com", "ASN1 OID: prime256v1"):
        assert want in text, (want, text)
    k = keys(moat)["www"]
    assert k["state"] == "pending"
    assert k["algorithm"] == "ec-p256"
    assert k["exportable"] is False
    assert k["not_after"] is None and k["fingerprint"] is None


def test_new_without_csr_out_prints_the_request_on_stdout(moat):
    r = moat.ok("key", "new", "api", "--cn", "api.example.com")
    assert r.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    assert "moat cert install api" in r.stderr
    csr = moat.dir / "api.csr"
    csr.write_text(r.stdout)
    text = openssl("req", "-in", csr, "-noout", "-text").stdout
    # With no --san the CN is copied into the SANs (browsers ignore the CN).
    assert "DNS:api.example.com" in text


@pytest.mark.parametrize("alg,marker", [("ec-p384", "secp384r1"), ("rsa-2048", "2048 bit"),
                                        ("rsa-3072", "3072 bit"), ("ed25519", "ED25519")])
def test_algorithms(moat, alg, marker):
    r = moat.ok("key", "new", "k", "--cn", "k.example.com", "--alg", alg, "--csr-out", "k.csr")
    text = openssl("req", "-in", moat.dir / "k.csr", "-noout", "-text", "-verify").stdout
    assert marker in text
    assert keys(moat)["k"]["algorithm"] == alg
    if alg == "ed25519":
        assert "browsers" in r.stderr and "warning" in r.stderr.lower()
    else:
        assert "browsers" not in r.stderr


def test_rsa4096_shows_progress_on_a_tty(moat):
    master, slave = pty.openpty()
    p = subprocess.Popen([MOAT_BIN, "key", "new", "big", "--cn", "big.example.com", "--alg", "rsa-4096",
                          "--csr-out", "big.csr"], env=moat.env, cwd=moat.dir, stdout=subprocess.PIPE,
                         stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    deadline = time.time() + 240
    while time.time() < deadline:
        rl, _, _ = select.select([master], [], [], 0.5)
        if rl:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0, seen
    assert b"generating" in seen.lower() and b"rsa-4096" in seen.lower(), seen
    assert keys(moat)["big"]["algorithm"] == "rsa-4096"


def test_no_progress_when_stderr_is_not_a_tty(moat):
    r = moat.ok("key", "new", "k", "--cn", "k.example.com", "--alg", "rsa-2048", "--csr-out", "k.csr")
    assert "\r" not in r.stderr


def test_unknown_algorithm_is_refused_and_lists_the_choices(moat):
    moat.ok("key", "new", "a", "--cn", "a.example.com", "--csr-out", "a.csr")
    before = dump(moat.store)
    r = moat.fails("key", "new", "b", "--cn", "b.example.com", "--alg", "dsa-1024")
    assert "dsa-1024" in r.stderr and "ec-p256" in r.stderr
    assert dump(moat.store) == before


def test_duplicate_name_suggests_renew(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "a.csr")
    before = dump(moat.store)
    r = moat.fails("key", "new", "www", "--cn", "other.example.com", "--csr-out", "b.csr")
    assert "www" in r.stderr and "exists" in r.stderr and "key renew" in r.stderr
    assert dump(moat.store) == before
    assert not (moat.dir / "b.csr").exists()


@pytest.mark.parametrize("args", [
    ("key", "new"),
    ("key", "new", "www"),                      # --cn is required
    ("key", "new", "www", "--cn"),              # value missing
    ("key", "new", "www", "--cn", "x", "--bogus"),
    ("key", "show"),
    ("key", "renew"),
    ("key", "delete"),
    ("key", "import", "www"),
    ("key", "export", "www"),                   # --out and --password-file are required
    ("key", "list", "extra"),
])
def test_missing_or_wrong_arguments_are_usage_errors(moat, args):
    r = moat.fails(*args, code=2)
    assert "usage:" in r.stderr


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/y", "-x", "a" * 128])
def test_bad_names_are_refused(moat, name):
    r = moat.run("key", "new", "--", name, "--cn", "x.example.com") if name.startswith("-") else \
        moat.run("key", "new", name, "--cn", "x.example.com")
    assert r.returncode in (1, 2) and r.stderr.strip()


@pytest.mark.parametrize("san", ["DNS:", "XYZ:foo", "IP:999.1.1.1", "DNS:bad name.example.com"])
def test_bad_sans_are_refused(moat, san):
    r = moat.fails("key", "new", "k", "--cn", "k.example.com", "--san", san)
    assert "san" in r.stderr.lower()


def test_bad_country_is_refused(moat):
    r = moat.fails("key", "new", "k", "--cn", "k.example.com", "--country", "France")
    assert "country" in r.stderr.lower()


def test_show_and_list(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--exportable", "--csr-out", "www.csr")
    moat.ok("key", "new", "api", "--cn", "api.example.com", "--alg", "ec-p384", "--csr-out", "api.csr")
    listing = json.loads(moat.ok("key", "list", "--json").stdout)
    assert [k["name"] for k in listing] == ["api", "www"]
    www = json.loads(moat.ok("key", "show", "www", "--json").stdout)
    assert www["name"] == "www" and www["exportable"] is True and www["state"] == "pending"
    assert www["subject"] == "CN=www.example.com"
    assert www["sans"] == ["DNS:www.example.com"]
    assert len(www["key_fingerprint"].split(":")) == 32
    text = moat.ok("key", "list").stdout
    assert "www" in text and "api" in text and "pending" in text
    text = moat.ok("key", "show", "www").stdout
    assert "exportable" in text and "pending" in text and "www.example.com" in text


def test_list_on_an_empty_store(moat):
    # No store at all is an error naming it (a mistyped --store must not look empty).
    assert str(moat.store) in moat.fails("key", "list").stderr
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    moat.ok("key", "delete", "x")
    assert json.loads(moat.ok("key", "list", "--json").stdout) == []
    assert "no keys" in moat.ok("key", "list").stdout.lower()


def test_show_unknown_key(moat):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    r = moat.fails("key", "show", "nope")
    assert '"nope"' in r.stderr and "key list" in r.stderr


def test_delete_is_audited_and_removes_the_key(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    moat.ok("key", "delete", "www")
    assert "www" not in keys(moat)
    moat.fails("key", "delete", "www")
    rows = dump(moat.store)
    assert "delete" in rows.lower()


def test_renew_keeps_the_old_certificate_serving(moat):
    moat.ok("ca", "init", "--cn", "Test Root")
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    moat.ok("ca", "sign", "www.csr", "--out", "www.pem")
    moat.ok("cert", "install", "www", "www.pem")
    first = keys(moat)["www"]
    assert first["state"] == "active"
    r = moat.ok("key", "renew", "www", "--csr-out", "www2.csr")
    assert "www2.csr" in r.stdout
    # The new request carries the same subject and names but a new key.
    assert pubkey(moat.dir / "www2.csr", "csr") != pubkey(moat.dir / "www.csr", "csr")
    text = openssl("req", "-in", moat.dir / "www2.csr", "-noout", "-text").stdout
    assert "CN = www.example.com" in text and "DNS:www.example.com" in text
    now = keys(moat)["www"]
    assert now["state"] == "active" and now["renewal_pending"] is True
    assert now["fingerprint"] == first["fingerprint"]
    # Renewing twice replaces the waiting request rather than stacking them.
    moat.ok("key", "renew", "www", "--csr-out", "www3.csr")
    moat.ok("ca", "sign", "www3.csr", "--out", "www3.pem")
    moat.fails("cert", "install", "www", "www.pem")   # the old cert does not match the renewal key
    moat.ok("cert", "install", "www", "www3.pem")
    now = keys(moat)["www"]
    assert now["renewal_pending"] is False and now["fingerprint"] != first["fingerprint"]


def test_renew_of_unknown_key(moat):
    moat.ok("key", "new", "x", "--cn", "x.example.com", "--csr-out", "x.csr")
    r = moat.fails("key", "renew", "nope", "--csr-out", "x.csr")
    assert "nope" in r.stderr
