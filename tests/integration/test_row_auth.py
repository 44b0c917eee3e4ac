"""Rows authenticated under the master key: whoever can write the store file but does not hold the
master key (the robustness probe used a plain sqlite3 insert as the service user) cannot add a trust
anchor or un-revoke a certificate. The running server refuses the changed store and keeps serving what it
had, the CLI refuses the row, `moat doctor` names it, and restoring a backup repairs the store."""
import json

from ccert_helpers import client, verdict
from conftest import free_port
from doctor_pki import Pki
from serve_helpers import config, site, wait_for
from store_rows import peek_store, tamper_store


def test_an_anchor_inserted_without_the_master_key_is_not_trusted(moat, setup):  # noqa: F811
    root, ca_pem = setup
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    carol = client(pki, "carol")
    bak = moat.dir / "before.db"
    moat.ok("store", "backup", bak)
    port = free_port()
    cfg = config(moat, [site(["localhost"], port, root=root, extra="""
client_certificate: required
client_revocation_unknown: allow""")])
    moat.serve(cfg, wait=[port])
    assert verdict(port, carol, ca_pem)[1] == "untrusted"

    der = pki.path("corp.pem").read_text()
    import ssl
    der = ssl.PEM_cert_to_DER_cert(der)
    tamper_store(moat.store, "INSERT INTO anchors (name, der, subject, fingerprint, not_after, created) "
                 "VALUES ('rogue', ?, 'CN=Corp Root', 'ff', 1900000000, 1)", (der,))
    tamper_store(moat.store, "UPDATE generation SET value = value + 1")
    log = moat.dir / "error.log"
    assert wait_for(lambda: "reload refused" in log.read_text(), timeout=10), log.read_text()
    assert "trust anchor \"rogue\"" in log.read_text() and "without the master key" in log.read_text()
    assert verdict(port, carol, ca_pem)[1] == "untrusted"
    info = json.loads(moat.ok("store", "info", "--json").stdout)
    assert "without the master key" in json.dumps(info["server"]), info["server"]

    r = moat.fails("trust", "list")
    assert "trust anchor \"rogue\"" in r.stderr and "was changed without the master key" in r.stderr
    assert "moat doctor" in r.stderr
    r = moat.run("doctor", "-c", moat.dir / "moat.yaml")
    out = r.stdout + r.stderr
    assert "trust anchor \"rogue\" was changed without the master key" in out, out
    assert "moat store restore" in out

    # The remedy: the backup from before the change (the rogue row goes, the server reloads).
    moat.ok("store", "restore", bak)
    assert wait_for(lambda: "reloaded (store changed)" in log.read_text(), timeout=10), log.read_text()
    assert "rogue" not in moat.ok("trust", "list").stdout
    r = moat.run("doctor", "-c", moat.dir / "moat.yaml")
    assert "was changed without the master key" not in r.stdout + r.stderr
    assert verdict(port, carol, ca_pem)[1] == "untrusted"


def test_an_unrevoked_certificate_is_refused(moat):
    moat.ok("ca", "init", "--cn", "Row Root")
    moat.ok("ca", "issue", "c1", "--cn", "c1", "--profile", "client")
    serial = json.loads(moat.ok("--json", "ca", "list").stdout)
    serial = (serial["certificates"] if isinstance(serial, dict) else serial)[0]["serial"]
    moat.ok("ca", "revoke", serial)
    tamper_store(moat.store, "UPDATE issued SET revoked = 0, reason = 0")
    r = moat.fails("ca", "list")
    assert f"the record of issued certificate {serial}" in r.stderr
    r = moat.run("doctor", "-c", moat.dir / "none.yaml")
    assert f"issued certificate {serial} was changed without the master key" in r.stdout + r.stderr


def _issued_serial(moat):
    rows = json.loads(moat.ok("--json", "ca", "list").stdout)
    return (rows["certificates"] if isinstance(rows, dict) else rows)[0]["serial"]


def test_a_removed_or_replayed_row_is_refused(moat):
    """Without the master key, the set of rows cannot change either: removing the record of a revoked
    certificate, or putting back its copy from before the revocation (each row's own code still verifies),
    is refused by every command and reported by doctor, naming the table."""
    moat.ok("ca", "init", "--cn", "Set Root")
    moat.ok("ca", "issue", "c1", "--cn", "c1", "--profile", "client")
    serial = _issued_serial(moat)
    before = peek_store(moat.store, "SELECT * FROM issued")
    moat.ok("ca", "revoke", serial)
    # An older copy put back: the certificate would be valid again.
    cols = ", ".join("?" * len(before[0]))
    tamper_store(moat.store, "DELETE FROM issued")
    for row in before:
        tamper_store(moat.store, f"INSERT INTO issued VALUES ({cols})", row)
    r = moat.fails("ca", "list")
    assert "(table issued)" in r.stderr and "older copy" in r.stderr, r.stderr
    assert "moat doctor" in r.stderr
    r = moat.run("doctor", "--json", "-c", moat.dir / "none.yaml")
    found = [f for f in json.loads(r.stdout)["findings"] if f["id"] == "store-rows-tampered"]
    assert found and "(table issued)" in found[0]["what"], r.stdout
    assert "moat store restore" in found[0]["fix"]
    # The record removed: the revocation would be lost.
    tamper_store(moat.store, "DELETE FROM issued")
    r = moat.fails("ca", "list")
    assert "(table issued)" in r.stderr and "removed without the master key" in r.stderr, r.stderr
