"""The key manager and the store together: the newcomer's whole flow, secrets at rest, bad stores."""
import contextlib
import json
import os
import resource
import signal
import stat
import subprocess

import pytest

from keymgr_helpers import dump, fingerprint, keys, openssl, openssl_sign, pubkey, write_pw
from store_rows import foreign_database, held_open, tamper_store


def test_newcomer_flow(moat):
    m = moat
    pw = write_pw(m.dir, "backup pw")
    m.ok("ca", "init", "--cn", "Example Root")
    m.ok("ca", "cert", "--root", "--out", "root.pem")
    # A key signed by moat's CA ...
    m.ok("key", "new", "www", "--cn", "www.example.com", "--san", "DNS:www.example.com,DNS:example.com",
         "--exportable", "--csr-out", "www.csr")
    m.ok("ca", "sign", "www.csr", "--out", "www.pem")
    m.ok("cert", "install", "www", "www.pem")
    # ... and one signed by an outside CA with openssl x509 -req.
    m.ok("key", "new", "api", "--cn", "api.example.com", "--csr-out", "api.csr")
    outside = openssl_sign(m.dir, m.dir / "api.csr", m.dir / "api.pem")
    m.ok("cert", "install", "api", "api.pem", "--chain", outside)
    listing = keys(m)
    assert listing["www"]["state"] == listing["api"]["state"] == "active"
    assert listing["www"]["fingerprint"] == fingerprint(m.dir / "www.pem")
    assert listing["www"]["days_left"] in (89, 90)
    m.ok("cert", "export", "www", "--out", "www-out.pem")
    openssl("verify", "-CAfile", m.dir / "root.pem", m.dir / "www-out.pem")
    # Export and read back with openssl.
    m.ok("key", "export", "www", "--out", "www.p12", "--password-file", pw)
    openssl("pkcs12", "-in", m.dir / "www.p12", "-info", "-nokeys", "-passin", f"file:{pw}")
    back = openssl("pkcs12", "-in", m.dir / "www.p12", "-nodes", "-passin", f"file:{pw}").stdout
    (m.dir / "back.pem").write_text(back)
    assert pubkey(m.dir / "back.pem", "key") == pubkey(m.dir / "www.pem", "cert")
    # The non-exportable key says why and what to do.
    r = m.fails("key", "export", "api", "--out", "api.p12", "--password-file", pw)
    assert "not exportable" in r.stderr
    # Backup and restore, when the store commands are there.
    if m.run("store", "--help").returncode == 0:
        m.ok("store", "backup", m.dir / "backup.db")
        m.ok("key", "delete", "www")
        assert "www" not in keys(m)
        m.ok("store", "restore", m.dir / "backup.db")
        assert keys(m)["www"]["fingerprint"] == listing["www"]["fingerprint"]


def test_store_files_never_hold_the_private_key(moat):
    m = moat
    pw = write_pw(m.dir, "pw")
    m.ok("ca", "init")
    m.ok("ca", "issue", "alice", "--cn", "alice@example.com", "--profile", "client")
    m.ok("key", "new", "www", "--cn", "www.example.com", "--exportable", "--alg", "rsa-2048", "--csr-out", "w.csr")
    m.ok("ca", "sign", "w.csr", "--out", "w.pem")
    m.ok("cert", "install", "www", "w.pem")
    raw = b""
    secrets = []
    for name in ("alice", "www"):
        m.ok("key", "export", name, "--out", f"{name}.p12", "--password-file", pw)
        pem = openssl("pkcs12", "-in", m.dir / f"{name}.p12", "-nodes", "-nocerts", "-passin",
                      f"file:{pw}").stdout
        (m.dir / f"{name}.key").write_text(pem)
        secrets.append(pem.split("-----BEGIN PRIVATE KEY-----")[1].split("-----END")[0].strip().splitlines()[1])
        text = openssl("pkey", "-in", m.dir / f"{name}.key", "-noout", "-text").stdout
        # The private scalar / exponent: the hex lines after "priv:" or "privateExponent:".
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith(("priv:", "privateExponent:")):
                hexpart = "".join(l.strip() for l in lines[i + 1:i + 4]).replace(":", "")
                secrets.append(bytes.fromhex(hexpart[:40]))
        der = subprocess.run(["openssl", "pkey", "-in", m.dir / f"{name}.key", "-outform", "DER"],
                             capture_output=True, check=True).stdout
        # The needles are real: each one is found in the key's own DER or PEM.
        for s in secrets[-2:]:
            assert (s if isinstance(s, bytes) else s.encode()) in (der + pem.encode())
        secrets.append(der)
    for f in m.dir.iterdir():
        if f.name.startswith("moat.db"):
            raw += f.read_bytes()
    assert raw
    for s in secrets:
        needle = s.encode() if isinstance(s, str) else s
        assert needle not in raw, "private key material found in the store files"


def test_store_files_are_private(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "w.csr")
    for f in moat.dir.iterdir():
        if f.name.startswith("moat.db"):
            assert stat.S_IMODE(os.stat(f).st_mode) & 0o077 == 0, f


def test_a_file_that_is_not_a_moat_store(moat, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database\n" * 100)
    junk.chmod(0o600)
    before = junk.read_bytes()
    for args in (("key", "list"), ("key", "new", "x", "--cn", "x.example.com"), ("ca", "init")):
        r = moat.fails(*args, env={"MOAT_STORE": str(junk)})
        assert str(junk) in r.stderr or "store" in r.stderr
    assert junk.read_bytes() == before
    other = foreign_database(tmp_path / "other.db")
    before = other.read_bytes()
    moat.fails("key", "new", "x", "--cn", "x.example.com", env={"MOAT_STORE": str(other)})
    assert other.read_bytes() == before


def _limit_file_size(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.parametrize("cmd,limit,held", [
    # 1 KiB and nobody else has the store open: the store cannot even start its transaction.
    (("key", "new", "big", "--cn", "big.example.com", "--csr-out", "big.csr"), 1024, False),
    # Another process (a server) holds the store open, so SQLite's shared-memory index exists; 8 KiB
    # leaves room for one page in the write-ahead log: the commit itself fails, after the file was written.
    (("key", "new", "big", "--cn", "big.example.com", "--csr-out", "big.csr"), 8192, True),
    (("ca", "sign", "w.csr", "--out", "big.csr"), 8192, True),
    (("ca", "issue", "svc", "--cn", "svc.example.com"), 8192, True),
])
def test_full_disk_changes_nothing(moat, cmd, limit, held):
    from conftest import MOAT_BIN
    moat.ok("ca", "init")
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "w.csr")
    tamper_store(moat.store, "PRAGMA wal_checkpoint(TRUNCATE)")
    before = dump(moat.store)
    with held_open(moat.store) if held else contextlib.nullcontext():
        r = subprocess.run([MOAT_BIN, *cmd], env=moat.env, cwd=moat.dir, capture_output=True, text=True,
                           timeout=120, preexec_fn=_limit_file_size(limit))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.strip() and "AddressSanitizer" not in r.stderr
    assert "disk" in r.stderr.lower() or "i/o" in r.stderr.lower(), r.stderr
    assert dump(moat.store) == before
    assert not (moat.dir / "big.csr").exists()
    assert not list(moat.dir.glob("*.tmp-*"))
    # With room again, the same command works.
    moat.ok(*cmd)


def test_missing_master_key_is_explained(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--exportable", "--csr-out", "w.csr")
    mk = [f for f in moat.dir.iterdir() if f.name.startswith("moat.db") and f.suffix == ".key"]
    assert mk, list(moat.dir.iterdir())
    mk[0].rename(moat.dir / "elsewhere.key")
    r = moat.fails("key", "renew", "www", "--csr-out", "w2.csr")
    assert "master key" in r.stderr.lower()
    r = moat.ok("key", "list", "--json")
    assert json.loads(r.stdout)[0]["name"] == "www"
