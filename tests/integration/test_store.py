"""moat store backup / restore / info through the real binary.

The store is built from the schema-1 fixture (tests/data/store/schema_v1.sql plus its master key), so
these tests also prove that a store made by the first moat is upgraded by any command and keeps its keys.
"""
import hashlib
import json
import os
import shutil
import stat
import threading

from conftest import SOURCE_DIR
from store_rows import audit, foreign_database, held_open, integrity, peek_store, tamper_store

FIXTURE = SOURCE_DIR / "tests" / "data" / "store"


def make_v1_store(moat, path=None, key=None):
    """A schema-1 store with keys www, api (active, with certificates) and mail (pending)."""
    path = path or moat.store
    key = key or str(path) + ".key"
    tamper_store(path, (FIXTURE / "schema_v1.sql").read_text())
    os.chmod(path, 0o600)
    shutil.copyfile(FIXTURE / "v1.masterkey", key)
    os.chmod(key, 0o600)
    return path


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def content(path):
    """What a person would call the store's content (file bytes differ after a WAL checkpoint)."""
    return {t: peek_store(path, f"SELECT * FROM {t} ORDER BY 1")
            for t in ("keys", "certs", "cert_chain", "anchors", "ca", "issued", "audit", "settings", "generation")}


def info(moat, **kw):
    return json.loads(moat.ok("--json", "store", "info", **kw).stdout)


def test_help_and_usage(moat):
    for args in (["store", "--help"], ["store", "backup", "--help"], ["store", "restore", "--help"],
                 ["store", "info", "--help"]):
        r = moat.ok(*args)
        assert "usage:" in r.stdout
    listed = moat.ok("store", "--help").stdout.split("commands:\n", 1)[1]
    assert [line.split()[0] for line in listed.split("\n\n")[0].splitlines()] == \
        ["backup", "restore", "info", "upgrade", "audit"]
    moat.fails("store", code=2)
    moat.fails("store", "frobnicate", code=2)
    assert "missing FILE" in moat.fails("store", "backup", code=2).stderr  # the usage line's name for it
    assert "missing CERT.pem" in moat.fails("cert", "install", "www", code=2).stderr
    moat.fails("store", "backup", "a", "b", code=2)
    moat.fails("store", "restore", "--bogus", "x", code=2)
    assert "store" in moat.ok("--help").stdout


def test_upgrade_of_v1_keeps_keys(moat):
    make_v1_store(moat)
    assert "needs an upgrade" in moat.fails("store", "info").stderr
    assert "upgraded store" in moat.ok("store", "upgrade").stderr
    assert "already" in moat.ok("store", "upgrade").stdout
    data = info(moat)
    assert data["store"] == str(moat.store)
    assert data["schema_version"] == 6
    assert data["keys"] == 2 and data["pending_keys"] == 1
    assert data["certificates"] == 2
    assert data["master_key_present"] is True
    assert data["server"]["applied_generation"] is None
    text = moat.ok("store", "info").stdout
    assert "schema version: 6" in text and "2 with a certificate" in text and ", 1 pending" in text


def test_missing_store(moat):
    r = moat.fails("store", "info")
    assert str(moat.store) in r.stderr
    r = moat.fails("store", "backup", moat.dir / "b.db")
    assert "no store" in r.stderr
    assert not (moat.dir / "b.db").exists()


def test_backup_is_0600_and_says_where_the_master_key_is(moat):
    make_v1_store(moat)
    out = moat.dir / "backup.db"
    r = moat.ok("store", "backup", out)
    assert mode(out) == 0o600
    assert str(moat.store) + ".key" in r.stdout
    assert "separately" in r.stdout
    # The copy holds the encrypted key rows, not the master key.
    assert open(FIXTURE / "v1.masterkey", "rb").read() not in open(out, "rb").read()
    # Never overwritten without --force.
    before = digest(out)
    r = moat.fails("store", "backup", out)
    assert "--force" in r.stderr and "exists" in r.stderr
    assert digest(out) == before
    r = moat.ok("--json", "store", "backup", out, "--force")
    data = json.loads(r.stdout)
    assert data["backup"] == str(out) and data["master_key_included"] is False
    assert "master key" in r.stderr
    # Audited.
    rows = audit(moat, "store.backup")
    assert len(rows) == 2 and rows[0]["object"] == str(out)


def test_backup_while_another_writer_is_busy(moat):
    """The copy is taken at once while a writer holds the lock; only the audit entry waits for it."""
    make_v1_store(moat)
    moat.ok("store", "upgrade")
    out = moat.dir / "hot.db"
    with held_open(moat.store, write_lock=True) as db:
        db.execute("INSERT INTO settings (name, value) VALUES ('uncommitted', 'x')")
        timer = threading.Timer(1.5, lambda: db.execute("ROLLBACK"))
        timer.start()
        try:
            moat.ok("store", "backup", out, timeout=60)
        finally:
            timer.join()
    assert peek_store(out, "SELECT count(*) FROM settings WHERE name = 'uncommitted'")[0][0] == 0
    assert peek_store(out, "SELECT count(*) FROM keys")[0][0] == 3
    assert integrity(out) == "ok"


def test_restore_dry_run_then_restore(moat):
    make_v1_store(moat)
    out = moat.dir / "backup.db"
    moat.ok("store", "backup", out)
    gen_before = info(moat)["generation"]
    # Lose a key and a certificate, and gain a trust anchor, in the live store.
    der = peek_store(moat.store, "SELECT der FROM certs LIMIT 1")[0][0]
    tamper_store(moat.store, "PRAGMA foreign_keys = ON; DELETE FROM keys WHERE name = 'mail'; "
                             "DELETE FROM keys WHERE name = 'api';")
    tamper_store(moat.store, "INSERT INTO anchors (name, der, subject, fingerprint, not_after, created) "
                             "VALUES ('corp', ?, 'CN=x', 'ff', 0, 0)", (der,))
    before = content(moat.store)

    r = moat.ok("store", "restore", out, "--dry-run")
    assert "would change" in r.stdout
    assert "added   key     mail (pending)" in r.stdout
    assert "added   key     api" in r.stdout
    assert "added   cert    api" in r.stdout
    assert "removed anchor  corp" in r.stdout
    assert "was not changed" in r.stdout
    assert content(moat.store) == before
    assert moat.ok("store", "restore", out, "-n").stdout == r.stdout  # the short name of --dry-run
    data = json.loads(moat.ok("--json", "store", "restore", out, "--dry-run").stdout)
    assert data["dry_run"] is True and data["restored"] is False
    changes = {(c["kind"], c["name"], c["change"]) for c in data["changes"]}
    assert changes == {("key", "mail (pending)", "added"), ("key", "api", "added"), ("cert", "api", "added"),
                       ("anchor", "corp", "removed")}

    data = json.loads(moat.ok("--json", "store", "restore", out).stdout)
    assert data["restored"] is True
    assert data["generation"] > gen_before
    after = info(moat)
    assert after["keys"] == 2 and after["pending_keys"] == 1 and after["trust_anchors"] == 0
    assert after["generation"] == data["generation"]
    actions = [a["action"] for a in audit(moat)]
    # The live log is kept, not rolled back to the backup's (which would end before its own backup entry).
    assert actions == ["key.new", "store.backup", "store.restore"], actions
    assert not [p for p in os.listdir(moat.dir) if "restore" in p or ".tmp-" in p]
    # Restoring the same backup again changes nothing.
    r = moat.ok("store", "restore", out)
    assert "no key, certificate, trust anchor or CA changed" in r.stdout


def test_restore_refuses_bad_backups_without_change(moat):
    make_v1_store(moat)
    moat.ok("store", "upgrade")
    # A backup from a newer moat.
    newer = moat.dir / "newer.db"
    moat.ok("store", "backup", newer)
    tamper_store(newer, "PRAGMA user_version = 7")
    before = content(moat.store)
    junk = moat.dir / "junk.db"
    junk.write_bytes(os.urandom(8192))
    os.chmod(junk, 0o600)
    r = moat.fails("store", "restore", junk)
    assert "not a moat store" in r.stderr
    r = moat.fails("store", "restore", moat.dir / "missing.db")
    assert "missing.db" in r.stderr
    # Another application's database.
    other = moat.dir / "other.db"
    foreign_database(other)
    r = moat.fails("store", "restore", other)
    assert "not a moat store" in r.stderr
    r = moat.fails("store", "restore", newer, "--dry-run")
    assert "upgrade moat" in r.stderr and "7" in r.stderr
    # A backup others can read is refused, with the fix.
    good = moat.dir / "good.db"
    moat.ok("store", "backup", good)
    before = content(moat.store)
    os.chmod(good, 0o644)
    r = moat.fails("store", "restore", good)
    assert f"chmod 600 {good}" in r.stderr
    assert content(moat.store) == before


def test_restore_needs_the_same_master_key(moat):
    make_v1_store(moat)
    out = moat.dir / "backup.db"
    moat.ok("store", "backup", out)
    # A fresh store with another master key: the backup's keys cannot be decrypted there.
    other = moat.dir / "other" / "moat.db"
    other.parent.mkdir(mode=0o700)
    key = moat.dir / "other" / "moat.db.key"
    key.write_bytes(os.urandom(32))
    os.chmod(key, 0o600)
    r = moat.fails("--store", other, "store", "restore", out)
    assert "do not decrypt" in r.stderr and str(key) in r.stderr
    assert not other.exists()  # the failed restore left no store behind
    # Without any master key there, the restore says what is missing.
    key.unlink()
    r = moat.fails("--store", other, "store", "restore", out)
    assert "no master key" in r.stderr
    # With the right master key a lost store comes back from the backup.
    shutil.copyfile(FIXTURE / "v1.masterkey", key)
    os.chmod(key, 0o600)
    moat.ok("--store", other, "store", "restore", out)
    assert mode(other) == 0o600
    data = info(moat, env={"MOAT_STORE": str(other)})
    assert data["keys"] == 2 and data["pending_keys"] == 1


def test_permissions_refused_with_fix(moat):
    make_v1_store(moat)
    os.chmod(moat.store, 0o644)
    r = moat.fails("store", "info")
    assert f"chmod 600 {moat.store}" in r.stderr
    os.chmod(moat.store, 0o600)
    key = str(moat.store) + ".key"
    os.chmod(key, 0o644)
    r = moat.fails("store", "restore", moat.store, "--dry-run")
    assert f"chmod 600 {key}" in r.stderr


def test_newer_or_foreign_store_is_refused_unchanged(moat):
    make_v1_store(moat)
    moat.ok("store", "upgrade")
    tamper_store(moat.store, "PRAGMA user_version = 42")
    r = moat.fails("store", "info")
    assert "42" in r.stderr and "upgrade moat" in r.stderr
    junk = moat.dir / "junk.db"
    data = os.urandom(4096)
    junk.write_bytes(data)
    os.chmod(junk, 0o600)
    r = moat.fails("--store", junk, "store", "info")
    assert "not a moat store" in r.stderr
    assert junk.read_bytes() == data


def test_backup_and_restore_under_a_running_server(moat):
    """Backup is safe while the server runs; a restore is picked up by it without a restart."""
    from serve_helpers import CA, cert_der, config, free_port, site, tls_connect, wait_for

    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("hello\n")
    first = ca.issue(moat, "www", ["localhost"])
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)]), wait=[port])

    def served():
        s = tls_connect(port, sni="localhost", cafile=ca.pem)
        der = s.getpeercert(binary_form=True)
        s.close()
        return der

    assert served() == cert_der(first)
    out = moat.dir / "backup.db"
    moat.ok("store", "backup", out)
    # A renewal after the backup is served ...
    second = ca.renew(moat, "www", ["localhost"])
    assert wait_for(lambda: served() == cert_der(second))
    # ... until the backup comes back: the server reloads by itself and serves the first certificate.
    r = json.loads(moat.ok("--json", "store", "restore", out).stdout)
    assert ("cert", "www", "changed") in {(c["kind"], c["name"], c["change"]) for c in r["changes"]}
    assert wait_for(lambda: served() == cert_der(first))
    assert wait_for(lambda: info(moat)["server"]["applied_generation"] == r["generation"])
    assert info(moat)["server"]["refusal"] == ""


def test_a_backup_of_an_older_schema_restores_into_a_sealed_store(moat):
    """An older moat's backup (schema 5: rows authenticated, tables not sealed yet) restored into the
    current store comes in upgraded and sealed: every command reads it, and doctor finds nothing changed."""
    make_v1_store(moat)
    moat.ok("store", "upgrade")
    old = moat.dir / "schema5-backup.db"
    tamper_store(old, (FIXTURE / "schema_v5.sql").read_text())
    os.chmod(old, 0o600)
    moat.ok("store", "restore", old)
    assert info(moat)["schema_version"] == 6
    assert {"www", "api"} <= {k["name"] for k in json.loads(moat.ok("key", "list", "--json").stdout)}
    assert json.loads(moat.ok("trust", "list", "--json").stdout)
    rep = json.loads(moat.run("doctor", "--json").stdout)
    assert not [f for f in rep["findings"] if f["id"].startswith("store-row")], rep["findings"]
    rows = [f["value"] for s in rep["subjects"] for f in s["facts"] if f["key"] == "rows"]
    assert rows and "no row is missing" in rows[0], rows
