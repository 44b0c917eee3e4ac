"""Regression tests for issue 11: the key manager and CA flows, one rule in one place."""
import subprocess
import time

from keymgr_helpers import openssl, openssl_sign, outside_chain


def count_certs(text):
    return text.count("BEGIN CERTIFICATE")


def two_tier(m, permit=()):
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "init", "--intermediate", "--cn", "Issuing", *[a for p in permit for a in ("--permit", p)])
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)


def verify(m, leaf_and_chain):
    """openssl verify of a leaf (first certificate of the file) with the rest as untrusted, root trusted."""
    f = m.dir / "check.pem"
    f.write_text(leaf_and_chain)
    blocks = leaf_and_chain.split("-----END CERTIFICATE-----")
    (m.dir / "leaf.pem").write_text(blocks[0] + "-----END CERTIFICATE-----\n")
    (m.dir / "rest.pem").write_text("-----END CERTIFICATE-----".join(blocks[1:]).strip() + "\n")
    args = ["verify", "-CAfile", m.dir / "root.pem"]
    if count_certs(leaf_and_chain) > 1:
        args += ["-untrusted", m.dir / "rest.pem"]
    return openssl(*args, m.dir / "leaf.pem", check=False)


# 2. The intermediate is dropped by ca sign + cert install.
def test_ca_sign_then_install_keeps_the_intermediate(moat):
    m = moat
    two_tier(m)
    m.ok("key", "new", "w", "--cn", "w.example.test", "--csr-out", m.dir / "w.csr")
    m.ok("ca", "sign", m.dir / "w.csr", "--out", m.dir / "w.pem")
    assert count_certs((m.dir / "w.pem").read_text()) == 2, "ca sign writes the leaf and the intermediate"
    leaf_only = openssl("x509", "-in", m.dir / "w.pem").stdout
    (m.dir / "leaf-only.pem").write_text(leaf_only)
    m.ok("cert", "install", "w", m.dir / "leaf-only.pem")
    exported = m.ok("cert", "export", "w", "--chain").stdout
    assert count_certs(exported) == 2, "installing attaches moat's own intermediate"
    assert verify(m, exported).returncode == 0


# 3. A chain can be added to an installed certificate.
def test_chain_completed_for_an_installed_certificate(moat):
    m = moat
    ikey, icrt, root = outside_chain(m.dir)
    m.ok("key", "new", "x", "--cn", "x.test", "--csr-out", m.dir / "x.csr")
    openssl_sign(m.dir, m.dir / "x.csr", m.dir / "x.crt", ca=(ikey, icrt))
    m.ok("cert", "install", "x", m.dir / "x.crt")
    assert count_certs(m.ok("cert", "export", "x", "--chain").stdout) == 1
    r = m.ok("cert", "install", "x", m.dir / "x.crt", "--chain", icrt)
    assert "completed the chain" in r.stdout
    exported = m.ok("cert", "export", "x", "--chain").stdout
    assert count_certs(exported) == 2
    # Nothing more to add is still refused, with the reason.
    r = m.fails("cert", "install", "x", m.dir / "x.crt", "--chain", icrt)
    assert "already installed" in r.stderr
    assert len(m.ok("cert", "history", "x", "--json").stdout.strip()) > 0


# 4. Issuance refuses names outside the intermediate's name constraints.
def test_name_constraints_enforced_at_issuance(moat):
    m = moat
    two_tier(m, permit=["example.test"])
    for args in (["c", "--cn", "carol", "--profile", "client"], ["o", "--cn", "www.other.test"],
                 ["l", "--cn", "www.example.test", "--san", "DNS:localhost"]):
        r = m.fails("ca", "issue", *args)
        assert "name constraints" in r.stderr and "permitted subtree violation" in r.stderr, r.stderr
    assert all(k["name"] not in ("c", "o", "l") for k in __import__("json").loads(
        m.ok("key", "list", "--json").stdout))
    m.ok("key", "new", "s", "--cn", "www.other.test", "--csr-out", m.dir / "s.csr")
    r = m.fails("ca", "sign", m.dir / "s.csr", "--out", m.dir / "s.pem")
    assert "name constraints" in r.stderr
    assert not (m.dir / "s.pem").exists()
    # Inside the constraints: issued, and clients accept it.
    m.ok("ca", "issue", "ok", "--cn", "www.example.test")
    assert verify(m, m.ok("cert", "export", "ok", "--chain").stdout).returncode == 0
    assert "www.other.test" not in m.ok("ca", "list").stdout


# 8. A second key renew keeps the first pending request: its certificate can still be installed.
def test_second_renew_keeps_the_first_request(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("key", "new", "p", "--cn", "p.example.test", "--csr-out", m.dir / "p.csr")
    m.ok("ca", "sign", m.dir / "p.csr", "--out", m.dir / "p.pem")
    m.ok("cert", "install", "p", m.dir / "p.pem")
    m.ok("key", "renew", "p", "--csr-out", m.dir / "a.csr")
    r = m.ok("key", "renew", "p", "--csr-out", m.dir / "b.csr")
    assert "earlier request" in r.stderr
    m.ok("ca", "sign", m.dir / "a.csr", "--out", m.dir / "a.pem")
    r = m.ok("cert", "install", "p", m.dir / "a.pem")
    assert "installed" in r.stdout
    served = m.ok("cert", "export", "p").stdout
    assert openssl("x509", "-noout", "-pubkey", input=served).stdout == \
        openssl("req", "-in", m.dir / "a.csr", "-noout", "-pubkey").stdout
    # The newer request is the one still waiting, and its certificate installs as well.
    m.ok("ca", "sign", m.dir / "b.csr", "--out", m.dir / "b.pem")
    m.ok("cert", "install", "p", m.dir / "b.pem")
    served = m.ok("cert", "export", "p").stdout
    assert openssl("x509", "-noout", "-pubkey", input=served).stdout == \
        openssl("req", "-in", m.dir / "b.csr", "-noout", "-pubkey").stdout
    # A deleted name takes its set-aside requests with it.
    m.ok("key", "renew", "p", "--csr-out", m.dir / "c.csr")
    m.ok("key", "delete", "p", "--force") if "--force" in m.run("key", "delete", "--help").stdout \
        else m.ok("key", "delete", "p")
    m.ok("key", "new", "p", "--cn", "p.example.test", "--csr-out", m.dir / "d.csr")
    m.ok("ca", "sign", m.dir / "c.csr", "--out", m.dir / "c.pem")
    m.fails("cert", "install", "p", m.dir / "c.pem")


# 1. A restore never un-revokes, never forgets an issued certificate, never takes a CRL number back.
def _ocsp(m, cert, issuer):
    r = subprocess.run(["openssl", "ocsp", "-issuer", m.dir / issuer, "-cert", m.dir / cert, "-url",
                        f"http://127.0.0.1:{m.http}/.well-known/moat/ocsp", "-CAfile", m.dir / "root.pem"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def _crl(m):
    """The CRL the running server publishes, as openssl crl -text."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", m.http, timeout=10)
    c.request("GET", "/.well-known/moat/ca.crl", headers={"Host": "localhost"})
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200
    return subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text"], input=body,
                          capture_output=True, timeout=30, check=True).stdout.decode()


def _serial(m, pem):
    return openssl("x509", "-in", m.dir / pem, "-noout", "-serial").stdout.strip().split("=")[1]


def _crl_number(text):
    import re
    return int(re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text).group(1))


def test_restore_keeps_revocations_issued_certificates_and_crl_number(moat):
    from serve_helpers import config, free_port, site, wait_for
    m = moat
    two_tier(m)
    m.ok("ca", "issue", "www", "--cn", "localhost")
    m.ok("ca", "issue", "a", "--cn", "a.example.test")
    (m.dir / "inter.pem").write_text(m.ok("ca", "cert").stdout)
    m.ok("cert", "export", "a", "--out", m.dir / "a.pem")
    m.https, m.http = free_port(), free_port()
    m.serve(config(m, [site(["localhost"], m.https, default=True, http_port=m.http,
                            extra="certificate: www\nca_publish: true")]), wait=(m.https, m.http))
    assert "a.pem: good" in _ocsp(m, "a.pem", "inter.pem")
    m.ok("store", "backup", m.dir / "b.db")
    m.ok("ca", "revoke", "a", "--reason", "key-compromise")
    m.ok("ca", "issue", "late", "--cn", "late.example.test")
    m.ok("cert", "export", "late", "--out", m.dir / "late.pem")
    wait_for(lambda: "a.pem: revoked" in _ocsp(m, "a.pem", "inter.pem"))
    number = _crl_number(_crl(m))
    a, late = _serial(m, "a.pem"), _serial(m, "late.pem")

    dry = m.ok("store", "restore", m.dir / "b.db", "--dry-run").stdout
    assert "revoked" in dry and a in dry, dry
    assert "issued" in dry and late in dry, dry
    assert "crl" in dry, dry
    m.ok("store", "restore", m.dir / "b.db")

    assert a in m.ok("ca", "list", "--revoked").stdout
    # The running server reloads the restored store: still revoked by OCSP and on the CRL, whose number
    # did not go back.
    time.sleep(1.5)
    out = _ocsp(m, "a.pem", "inter.pem")
    assert "a.pem: revoked" in out and "keyCompromise" in out, out
    crl = _crl(m)
    assert a in crl and _crl_number(crl) >= number, crl
    # The certificate issued after the backup is still known, so it can still be revoked.
    assert "late.pem: good" in _ocsp(m, "late.pem", "inter.pem")
    m.ok("ca", "revoke", late)
    wait_for(lambda: "late.pem: revoked" in _ocsp(m, "late.pem", "inter.pem"))
    assert _crl_number(_crl(m)) > number


def test_restore_refuses_to_drop_a_ca_that_issued(moat):
    m = moat
    m.ok("key", "new", "k", "--cn", "k.example.test", "--csr-out", m.dir / "k.csr")
    m.ok("store", "backup", m.dir / "empty.db")
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "c", "--cn", "c.example.test")
    for extra in (["--dry-run"], []):
        r = m.fails("store", "restore", m.dir / "empty.db", *extra)
        assert "could never be revoked again" in r.stderr, r.stderr
    assert "c" in m.ok("ca", "list").stdout


def _revoked_serials(m):
    import json
    return {c["serial"] for c in json.loads(m.ok("ca", "list", "--revoked", "--json").stdout)}


def _stored_crl(m):
    """(number, serials listed) of the CRL the store holds for the issuing CA."""
    import re
    text = openssl("crl", "-noout", "-text", input=m.ok("ca", "crl").stdout).stdout
    return _crl_number(text), set(re.findall(r"Serial Number: ([0-9A-F]+)", text))


def _live_from(m, backup):
    """Makes <backup> the live store as it stood (an older copy put back by hand, another machine's)."""
    import shutil
    for side in ("-wal", "-shm"):
        (m.dir / ("moat.db" + side)).unlink(missing_ok=True)
    shutil.copy2(backup, m.store)


def test_restore_merging_revocations_re_signs_a_crl_that_lists_them_all(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    for n in "abcd":
        m.ok("ca", "issue", n, "--cn", f"{n}.example.test")
    m.ok("store", "backup", m.dir / "b0.db")
    m.ok("ca", "revoke", "a")
    m.ok("store", "backup", m.dir / "b1.db")
    base, _ = _stored_crl(m)

    # The live store lacks the backup's revocation of a, and its CRL number is higher.
    _live_from(m, m.dir / "b0.db")
    m.ok("ca", "revoke", "b")
    m.ok("ca", "revoke", "c")
    live, _ = _stored_crl(m)
    assert live > base
    dry = m.ok("store", "restore", m.dir / "b1.db", "--dry-run").stdout
    assert "crl" in dry and "re-signed" in dry, dry
    m.ok("store", "restore", m.dir / "b1.db")
    number, listed = _stored_crl(m)
    assert listed == _revoked_serials(m) and len(listed) == 3, (listed, _revoked_serials(m))
    assert number > live, (number, live)

    # The reverse: the backup's CRL number is the higher one, and the live store has a revocation it lacks.
    m.ok("store", "backup", m.dir / "b2.db")
    top = number
    _live_from(m, m.dir / "b0.db")
    m.ok("ca", "revoke", "d")
    m.ok("store", "restore", m.dir / "b2.db")
    number, listed = _stored_crl(m)
    assert listed == _revoked_serials(m) and len(listed) == 4, (listed, _revoked_serials(m))
    assert number > top, (number, top)
    # Nothing to merge: the CRL kept is already complete and is not re-signed.
    m.ok("store", "backup", m.dir / "b3.db")
    m.ok("store", "restore", m.dir / "b3.db")
    assert _stored_crl(m) == (number, listed)


# 9. --store sqlite:PATH names PATH; a read command never creates nor upgrades a store.
def test_store_sqlite_prefix_and_missing_store(moat):
    m = moat
    (m.dir / "sub").mkdir()
    m.ok("--store", "sqlite:sub/moat.db", "key", "new", "a", "--cn", "a.example.test", "--csr-out",
         m.dir / "a.csr")
    assert (m.dir / "sub" / "moat.db").exists() and not (m.dir / "sqlite:sub").exists()
    keys = __import__("json").loads(m.ok("--store", "sqlite:sub/moat.db", "--json", "key", "list").stdout)
    assert [k["name"] for k in keys] == ["a"]
    info = __import__("json").loads(m.ok("--store", "sqlite:sub/moat.db", "--json", "store", "info").stdout)
    assert info["store"] == str(m.dir / "sub" / "moat.db")
    # A mistyped store is an error naming the path, for every read command, and nothing is created.
    for args in (["key", "list"], ["key", "show", "a"], ["ca", "list"], ["trust", "list"], ["store", "info"],
                 ["cert", "history", "a"]):
        r = m.fails("--store", "sub/typo.db", *args)
        assert "there is no store at " + str(m.dir / "sub" / "typo.db") in r.stderr, (args, r.stderr)
    assert sorted(p.name for p in (m.dir / "sub").iterdir() if p.name.startswith("typo")) == []


def test_read_commands_never_upgrade_a_store(moat):
    from test_store import digest, make_v1_store, mode
    m = moat
    make_v1_store(m)
    before = digest(m.store)
    for args in (["key", "list"], ["store", "info"], ["ca", "list"], ["trust", "list"]):
        r = m.fails(*args)
        assert "needs an upgrade" in r.stderr and "moat store upgrade" in r.stderr, (args, r.stderr)
    assert digest(m.store) == before
    assert not list(m.dir.glob("*.bak"))
    # A writing command upgrades it, says so, and keeps the old file first.
    r = m.ok("store", "backup", m.dir / "b.db")
    copy = m.dir / "moat.db.schema1.bak"
    assert f"upgraded store {m.store} from schema 1 to" in r.stderr and str(copy) in r.stderr, r.stderr
    assert mode(copy) == 0o600
    assert "schema version 1 and needs an upgrade" in m.fails("--store", copy, "store", "info").stderr
    assert "www" in m.ok("key", "list").stdout


# 11. One spelling of a serial and one rule for key names, whatever front end.
def test_serial_typed_any_way_and_one_key_name_rule(moat):
    import json
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "c", "--cn", "c.example.test")
    m.ok("cert", "export", "c", "--out", m.dir / "c.pem")
    canon = _serial(m, "c.pem")              # openssl prints whole bytes, upper case
    listed = json.loads(m.ok("--json", "ca", "list").stdout)
    assert [i["serial"] for i in listed] == [canon]
    typed = "0x" + ":".join(canon[i:i + 2] for i in range(0, len(canon), 2)).lower()
    m.ok("ca", "revoke", typed)
    assert canon in m.ok("ca", "list", "--revoked").stdout
    r = m.fails("ca", "revoke", canon.lower())
    assert "already revoked" in r.stderr and canon in r.stderr
    # A key name the store would refuse is refused by the config too, where it is written.
    for bad in ("a:b", ".x"):
        r = m.run("key", "new", bad, "--cn", "x.example.test", "--csr-out", m.dir / "x.csr")
        assert r.returncode != 0 and "not a valid key name" in r.stderr, r.stderr
    (m.dir / "bad.yaml").write_text(
        "sites:\n  - hosts: [localhost]\n    listen: [\"127.0.0.1:1\"]\n    certificate: \"a:b\"\n")
    r = m.fails("serve", "-c", m.dir / "bad.yaml", "--check")
    assert "sites[0].certificate" in r.stderr and "not a name" in r.stderr, r.stderr


# 6. doctor predicts what the server serves with the server's own rule (the serving plan).
def test_doctor_agrees_with_the_server_on_ecdsa_and_rsa(moat):
    import json
    from conftest import free_port
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    # The RSA certificate lives longer: a first-match rule expects it, while the server serves both
    # (the ECDSA one to clients that support it).
    m.ok("ca", "issue", "rsa", "--cn", "localhost", "--alg", "rsa-2048", "--days", "60")
    m.ok("ca", "issue", "ec", "--cn", "localhost", "--days", "30")
    port = free_port()
    (m.dir / "moat.yaml").write_text(
        f"sites:\n  - hosts: [localhost]\n    listen: [\"127.0.0.1:{port}\"]\n    certificate: auto\n")
    m.serve((m.dir / "moat.yaml").read_text(), wait=[port])
    r = m.run("doctor", "--json", "--timeout", "2", "-c", m.dir / "moat.yaml")
    rep = json.loads(r.stdout)
    found = {f["id"] for f in rep["findings"]}
    assert "listener-wrong-cert" not in found, rep["findings"]
    autos = [f["value"] for s in rep["subjects"] for f in s["facts"] if f["key"] == "auto"]
    assert "ECDSA -> key ec" in autos and "RSA -> key rsa" in autos, autos


# 10. The CRL lifetime is a CA setting (it was a fixed 7 days).
def test_crl_lifetime_is_a_ca_setting(moat):
    import datetime
    m = moat

    def lifetime():
        text = openssl("crl", "-noout", "-lastupdate", "-nextupdate", input=m.ok("ca", "crl").stdout).stdout
        when = dict(line.split("=", 1) for line in text.strip().splitlines())
        fmt = "%b %d %H:%M:%S %Y %Z"
        return (datetime.datetime.strptime(" ".join(when["nextUpdate"].split()), fmt) -
                datetime.datetime.strptime(" ".join(when["lastUpdate"].split()), fmt)).days

    m.ok("ca", "init", "--cn", "Root", "--exportable")
    assert lifetime() == 7
    m.ok("ca", "crl", "--days", "90")
    assert lifetime() == 90
    m.ok("ca", "issue", "r", "--cn", "r.example.test")
    m.ok("ca", "revoke", "r")
    assert lifetime() == 90, "a revocation re-signs with the CA's lifetime"
    assert "90" in m.ok("store", "audit").stdout
    r = m.fails("ca", "crl", "--days", "0", code=2)
    assert "1 to 366" in r.stderr


# 6. doctor -c bad.yaml, when the config names its store, reports the config error and checks that store.
def test_doctor_reports_an_invalid_config_that_names_its_store(moat):
    import json
    m = moat
    m.ok("key", "new", "a", "--cn", "a.example.test")
    (m.dir / "bad.yaml").write_text(f"store: {m.store}\nworkrs: 2\nsites: []\n")
    r = m.run("doctor", "--json", "-c", m.dir / "bad.yaml", env={"MOAT_STORE": ""})  # the config's store
    assert r.returncode == 1, r.stderr
    m._check_sanitizers(r.stderr)
    rep = json.loads(r.stdout)
    f = next(f for f in rep["findings"] if f["id"] == "config-invalid")
    assert "bad.yaml:2:1:" in f["what"] and "workers" in f["what"], f
    assert rep["store"] == str(m.store)
    assert "key-pending" in {f["id"] for f in rep["findings"]}, "the store the config names is still checked"


# 5. One bad site freezes all: a site whose certificate is refused keeps its last good state.
def _peer_der(port, sni):
    """The certificate the server presents for <sni>, or None when the handshake fails."""
    from test_acme_client import served_cert
    return served_cert(port, sni)


def _install_expired(m, pki, name, host, served=False):
    """Installs (with --force) an expired certificate for key <name>'s new request. <served>: a server
    runs, which refuses it for that site (the command says so and exits 1)."""
    csr = m.dir / f"{name}-expired.csr"
    m.ok("key", "renew", name, "--csr-out", csr)
    pki.sign(f"{name}-expired", "root", host, f"DNS:{host}", start=-60, end=-1, csr=csr)
    args = ("cert", "install", name, pki.path(f"{name}-expired.pem"), "--force")
    return m.fails(*args) if served else m.ok(*args)


def test_one_refused_site_does_not_freeze_the_others(moat):
    import json
    from doctor_pki import Pki
    from serve_helpers import CA, cert_der, config, free_port, site, wait_for
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    a_first = ca.issue(moat, "a", ["a.example.test"])
    b_first = ca.issue(moat, "b", ["b.example.test"])
    port = free_port()
    text = config(moat, [site(["a.example.test"], port, extra="certificate: a"),
                         site(["b.example.test"], port, extra="certificate: b")])
    moat.serve(text, wait=[port])
    assert _peer_der(port, "a.example.test") == cert_der(a_first)
    _install_expired(moat, pki, "a", "a.example.test", served=True)
    b_new = ca.renew(moat, "b", ["b.example.test"])
    # The other site gets its change although site a's is refused.
    assert wait_for(lambda: _peer_der(port, "b.example.test") == cert_der(b_new), timeout=10)
    assert cert_der(b_new) != cert_der(b_first)
    # The refused site keeps serving its last good certificate.
    assert _peer_der(port, "a.example.test") == cert_der(a_first)
    server = json.loads(moat.ok("store", "info", "--json").stdout)["server"]
    assert "a.example.test" in server["refusal"] and "expired" in server["refusal"], server
    assert "b.example.test" not in server["refusal"], server
    # numbered by the generation that brought the refusal, older than the one b's change applied in
    assert 0 < server["refused_generation"] < server["applied_generation"], server
    log = (moat.dir / "error.log").read_text()
    assert "site a.example.test: its change is refused, it keeps serving its last good certificate" in log
    # Rolling back the bad certificate clears the refusal.
    moat.ok("cert", "rollback", "a")
    assert wait_for(lambda: json.loads(moat.ok("store", "info", "--json").stdout)["server"]["refusal"] == "",
                    timeout=10)
    assert _peer_der(port, "a.example.test") == cert_der(a_first)


def test_expired_site_at_start_is_not_served_and_the_others_are(moat):
    from doctor_pki import Pki
    from serve_helpers import CA, cert_der, config, free_port, site
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    good = ca.issue(moat, "good", ["good.example.test"])
    ca.issue(moat, "old", ["old.example.test"])
    _install_expired(moat, pki, "old", "old.example.test")
    port = free_port()
    text = config(moat, [site(["good.example.test"], port, extra="certificate: good"),
                         site(["old.example.test"], port, extra="certificate: old")])
    moat.serve(text, wait=[port])
    assert _peer_der(port, "good.example.test") == cert_der(good)
    assert _peer_der(port, "old.example.test") is None
    log = (moat.dir / "error.log").read_text()
    assert "site old.example.test is not served" in log and "expired" in log, log


# 7. trust remove is checked before it commits: a site that needs the anchor refuses the removal.
def test_trust_remove_refused_when_a_site_needs_the_anchor(moat):
    import json
    from test_trust import make_ca
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "a", "--cn", "a.test")
    m.ok("ca", "issue", "b", "--cn", "b.test")
    m.ok("trust", "add", make_ca(m.dir, "corp"), "--name", "corp")
    m.ok("trust", "add", make_ca(m.dir, "spare"), "--name", "spare")
    cfg = m.dir / "site.yaml"
    cfg.write_text(f"""
store: {m.store}
sites:
  - hosts: [b.test]
    listen: ["127.0.0.1:1443"]
  - hosts: [a.test]
    client_trust: [corp]
    client_certificate: required
    listen: ["127.0.0.1:1443"]
""")
    gen = json.loads(m.ok("store", "info", "--json").stdout)["generation"]
    r = m.fails("trust", "remove", "corp", "-c", cfg)
    assert "the server would not load this change" in r.stderr
    assert 'site "a.test": client_trust "corp"' in r.stderr and "nothing was changed" in r.stderr
    names = {x["name"] for x in json.loads(m.ok("trust", "list", "--json").stdout)}
    assert "corp" in names, "the refused removal changed nothing"
    assert json.loads(m.ok("store", "info", "--json").stdout)["generation"] == gen
    # An anchor no site needs goes, and so does corp once no config asks for it.
    m.ok("trust", "remove", "spare", "-c", cfg)
    m.ok("trust", "remove", "corp")


# 7. The default trust (moat's CA and every anchor): removing the last anchor of a site without moat's CA
# is refused; a site that did not load before does not block a change.
def test_trust_remove_refused_for_the_last_default_anchor(moat):
    from test_trust import make_ca
    m = moat
    corp = make_ca(m.dir, "corp")
    m.ok("trust", "add", corp, "--name", "corp")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "s.key", "-out", "s.pem", "-days", "30", "-subj", "/CN=s.test",
                    "-addext", "subjectAltName=DNS:s.test",
                    "-addext", "basicConstraints=critical,CA:FALSE"], cwd=m.dir, check=True, capture_output=True)
    (m.dir / "s-both.pem").write_text((m.dir / "s.key").read_text() + (m.dir / "s.pem").read_text())
    m.ok("key", "import", "s", m.dir / "s-both.pem")
    (m.dir / "moat.yaml").write_text(f"""
store: {m.store}
sites:
  - hosts: [s.test]
    listen: ["127.0.0.1:1443"]
    client_certificate: required
  - hosts: [missing.test]
    listen: ["127.0.0.1:1443"]
""")
    # ./moat.yaml is the config every command finds
    r = m.fails("trust", "remove", "corp")
    assert 'site "s.test" asks for client certificates but has no usable trust anchor' in r.stderr
    m.ok("trust", "add", make_ca(m.dir, "other"), "--name", "other")
    m.ok("trust", "remove", "corp")


# 5. A command that changes what is served waits for the running server and says what it did.
def test_a_change_says_what_the_running_server_did_with_it(moat):
    import json
    from doctor_pki import Pki
    from serve_helpers import CA, cert_der, config, free_port, site
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    ca.issue(moat, "a", ["a.example.test"])
    ca.issue(moat, "b", ["b.example.test"])
    ca.issue(moat, "spare", ["spare.example.test"])
    # No server yet: said plainly, and the change is still made.
    r = moat.ok("key", "delete", "spare")
    assert f"no moat server runs on store {moat.store}" in r.stdout, r.stdout
    out = json.loads(moat.ok("--json", "ca", "init", "--cn", "Spare Root").stdout)
    assert out["server"] == {"state": "no-server", "refusal": None}, out
    port = free_port()
    moat.serve(config(moat, [site(["a.example.test"], port, extra="certificate: a"),
                             site(["b.example.test"], port, extra="certificate: b")]), wait=[port])
    # Applied: the generation the server serves it in.
    csr = moat.dir / "b.csr"
    moat.ok("key", "renew", "b", "--csr-out", csr)
    ca.sign(csr, moat.dir / "b2.pem", "DNS:b.example.test")
    r = moat.ok("cert", "install", "b", moat.dir / "b2.pem")
    gen = json.loads(moat.ok("store", "info", "--json").stdout)["generation"]
    assert f"applied the change in generation {gen}" in r.stdout, r.stdout
    assert _peer_der(port, "b.example.test") == cert_der(moat.dir / "b2.pem"), \
        "served when the command returns"
    out = json.loads(moat.ok("--json", "cert", "rollback", "b").stdout)
    assert out["server"]["state"] == "applied" and out["server"]["refusal"] is None, out
    assert out["server"]["serving_generation"] >= out["server"]["generation"] == gen + 1, out
    # Refused for one site: exit 1 and why, on stderr and in the JSON result.
    r = _install_expired(moat, pki, "a", "a.example.test", served=True)
    assert "refused the change for a site" in r.stderr and "expired" in r.stderr, r.stderr
    assert "a.example.test" in r.stderr, r.stderr
    moat.ok("cert", "rollback", "a")
    csr = moat.dir / "a3.csr"
    moat.ok("key", "renew", "a", "--csr-out", csr)
    pki.sign("a3", "root", "a.example.test", "DNS:a.example.test", start=-60, end=-1, csr=csr)
    r = moat.run("--json", "cert", "install", "a", pki.path("a3.pem"), "--force")
    assert r.returncode == 1, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["server"]["state"] == "refused" and "expired" in out["server"]["refusal"], out
    assert json.loads(r.stderr)["error"]["code"], r.stderr
    moat.ok("cert", "rollback", "a")
    # Refused as a whole: the served certificate's key deleted (the server keeps it in memory). With the
    # config at hand the check before commit refuses it (test below); made from another folder, the server.
    elsewhere = moat.dir / "elsewhere"
    elsewhere.mkdir()
    r = moat.fails("key", "delete", "b", cwd=elsewhere)
    assert "refused the change and keeps serving generation" in r.stderr, r.stderr
    assert _peer_der(port, "b.example.test") is not None


# 7. cert install, cert rollback and key delete are checked before the commit against the sites of the
#    configuration (./moat.yaml here): what the server would not load is refused with the reason, and
#    nothing changes.
def test_cert_and_key_changes_checked_before_commit(moat):
    import json
    from doctor_pki import Pki
    from serve_helpers import CA, config, free_port, site
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    ca.issue(moat, "a", ["a.example.test"])
    ca.issue(moat, "b", ["b.example.test"])
    port = free_port()
    (moat.dir / "moat.yaml").write_text(config(moat, [site(["a.example.test"], port, extra="certificate: a"),
                                                      site(["b.example.test"], port, extra="certificate: b")]))
    # key delete of a key a site serves: refused, the key and its certificate still there
    r = moat.fails("key", "delete", "a")
    assert "the server would not load this change" in r.stderr and 'site "a.example.test"' in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr, r.stderr
    assert any(k["name"] == "a" for k in json.loads(moat.ok("key", "list", "--json").stdout))
    # a key no site names still goes
    ca.issue(moat, "spare", ["spare.example.test"])
    moat.ok("key", "delete", "spare")

    # cert rollback to an expired certificate of a served key: refused, the current one stays current
    _install_expired(moat, pki, "b", "b.example.test")  # --force: the user's choice, not checked
    csr = moat.dir / "b3.csr"
    moat.ok("key", "renew", "b", "--csr-out", csr)
    ca.sign(csr, moat.dir / "b3.pem", "DNS:b.example.test")
    moat.ok("cert", "install", "b", moat.dir / "b3.pem")
    before = moat.ok("cert", "export", "b").stdout
    r = moat.fails("cert", "rollback", "b")
    assert "the server would not load this change" in r.stderr and "expired" in r.stderr, r.stderr
    assert moat.ok("cert", "export", "b").stdout == before
    # without a configuration nothing is known of the sites: the same rollback goes through
    elsewhere = moat.dir / "elsewhere"
    elsewhere.mkdir()
    moat.ok("cert", "rollback", "b", cwd=elsewhere)
    assert moat.ok("cert", "export", "b").stdout != before


# 7. key import --replace of a served key is checked before it commits: new material the server would not
#    load (its certificate expired) is refused naming the site, and the served key stays as it was.
def test_key_import_replace_checked_before_commit(moat):
    from doctor_pki import Pki
    from serve_helpers import CA, config, free_port, site
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    ca.issue(moat, "a", ["a.example.test"])
    (moat.dir / "moat.yaml").write_text(config(moat, [site(["a.example.test"], free_port(),
                                                           extra="certificate: a")]))
    pki.sign("a-new", "root", "a.example.test", "DNS:a.example.test", start=-60, end=-1)
    bundle = pki.bundle("a-new-bundle.pem", pki.path("a-new.key"), pki.path("a-new.pem"))
    before = moat.ok("cert", "export", "a").stdout
    r = moat.fails("key", "import", "a", bundle, "--replace")
    assert "the server would not load this change" in r.stderr and 'site "a.example.test"' in r.stderr, r.stderr
    assert "expired" in r.stderr, r.stderr
    assert moat.ok("cert", "export", "a").stdout == before
    # without a configuration nothing is known of the sites: the same replacement goes through
    elsewhere = moat.dir / "elsewhere"
    elsewhere.mkdir()
    moat.ok("key", "import", "a", bundle, "--replace", cwd=elsewhere)
    assert moat.ok("cert", "export", "a").stdout != before


# 7. store restore is checked before it commits against the sites of the configuration: a backup that
#    brings back an expired certificate of a served key, or lacks a key a site serves, is refused naming
#    the site (the dry run says so too), nothing changes; --force restores it all the same.
def test_store_restore_checked_before_commit(moat):
    import json
    from doctor_pki import Pki
    from serve_helpers import CA, config, free_port, site
    ca = CA(moat.dir)
    pki = Pki(moat.dir / "pki")
    pki.root()
    ca.issue(moat, "a", ["a.example.test"])
    _install_expired(moat, pki, "a", "a.example.test")  # the backup holds an expired certificate of a
    moat.ok("store", "backup", moat.dir / "old.db")
    csr = moat.dir / "a3.csr"
    moat.ok("key", "renew", "a", "--csr-out", csr)
    ca.sign(csr, moat.dir / "a3.pem", "DNS:a.example.test")
    moat.ok("cert", "install", "a", moat.dir / "a3.pem")
    ca.issue(moat, "b", ["b.example.test"])  # not in the backup
    port = free_port()
    (moat.dir / "moat.yaml").write_text(config(moat, [site(["b.example.test"], port, extra="certificate: b"),
                                                      site(["a.example.test"], port, extra="certificate: a")]))
    served = moat.ok("cert", "export", "a").stdout
    gen = json.loads(moat.ok("store", "info", "--json").stdout)["generation"]

    for dry in ((), ("--dry-run",)):
        r = moat.fails("store", "restore", moat.dir / "old.db", *dry)
        assert "the server would not load this change" in r.stderr, r.stderr
        # every site the restore would break is named, each with its reason
        assert 'site "b.example.test": certificate "b"' in r.stderr, r.stderr
        assert 'site "a.example.test": the certificate of key "a" is expired' in r.stderr, r.stderr
        assert "nothing was changed" in r.stderr and "--force" in r.stderr, r.stderr
    assert moat.ok("cert", "export", "a").stdout == served
    assert any(k["name"] == "b" for k in json.loads(moat.ok("key", "list", "--json").stdout))
    assert json.loads(moat.ok("store", "info", "--json").stdout)["generation"] == gen

    # only the expired certificate: refused with the reason
    (moat.dir / "moat.yaml").write_text(config(moat, [site(["a.example.test"], port, extra="certificate: a")]))
    r = moat.fails("store", "restore", moat.dir / "old.db")
    assert 'site "a.example.test"' in r.stderr and "expired" in r.stderr, r.stderr
    assert moat.ok("cert", "export", "a").stdout == served

    # --force: the user's choice, restored as asked
    moat.ok("store", "restore", moat.dir / "old.db", "--force")
    assert moat.ok("cert", "export", "a").stdout != served
    assert not any(k["name"] == "b" for k in json.loads(moat.ok("key", "list", "--json").stdout))


# 7. ca revoke of a certificate a site serves: the server goes on serving it, with a "revoked" OCSP
#    staple that clients checking revocation refuse. Refused, naming the site, unless --force.
def test_ca_revoke_of_a_served_certificate_needs_force(moat):
    import json
    from serve_helpers import cert_der, config, free_port, site
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "a", "--cn", "a.example.test")
    m.ok("ca", "issue", "spare", "--cn", "spare.example.test")
    (m.dir / "a.pem").write_text(m.ok("cert", "export", "a").stdout)
    port = free_port()
    m.serve(config(m, [site(["a.example.test"], port, extra="certificate: a")]), wait=[port])
    gen = json.loads(m.ok("store", "info", "--json").stdout)["generation"]
    r = m.fails("ca", "revoke", "a", "--reason", "superseded")
    assert 'site "a.example.test" serves the certificate of key "a"' in r.stderr, r.stderr
    assert '"revoked" OCSP staple' in r.stderr and "--force" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr, r.stderr
    assert json.loads(m.ok("ca", "list", "--revoked", "--json").stdout) == []
    assert json.loads(m.ok("store", "info", "--json").stdout)["generation"] == gen
    # a certificate no site serves goes without --force
    m.ok("ca", "revoke", "spare")
    # --force: revoked; what the server does is what the refusal said: the same certificate, stapled revoked
    r = m.ok("ca", "revoke", "a", "--reason", "key-compromise", "--force")
    assert 'site "a.example.test" serves the certificate of key "a"' in r.stdout + r.stderr
    assert _peer_der(port, "a.example.test") == cert_der(m.dir / "a.pem")

    def staple():
        p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                            "a.example.test", "-status"], input=b"", capture_output=True, timeout=10)
        return p.stdout.decode(errors="replace")
    deadline = time.time() + 5
    while "Cert Status: revoked" not in (out := staple()) and time.time() < deadline:
        time.sleep(0.1)
    assert "Cert Status: revoked" in out and "keyCompromise" in out, out


# 10. An offline root comes back: after ca export-root --remove-key, a key import under the root's key name
#     (an orphan) is refused and says how; moat ca import-root FILE gives the root its key again, the root
#     signs its CRL (it lists revoked intermediates) and answers OCSP for the intermediate again, and
#     doctor no longer says "key offline". Each step is checked against the running server's sites.
def test_offline_root_comes_back(moat):
    import datetime
    import json
    from serve_helpers import config, free_port, site
    m = moat
    m.ok("ca", "init", "--cn", "Root", "--exportable")
    m.ok("ca", "init", "--intermediate", "--cn", "Issuing")
    m.ok("ca", "issue", "www", "--cn", "localhost")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    (m.dir / "inter.pem").write_text(m.ok("ca", "cert").stdout)
    (m.dir / "pw").write_text("root pw\n")
    https, http = free_port(), free_port()
    m.serve(config(m, [site(["localhost"], https, default=True, http_port=http,
                            extra="certificate: www\nca_publish: true\nclient_certificate: optional\n"
                                  "client_trust: [moat-ca]")]), wait=[https, http])

    def inter_ocsp():
        return subprocess.run(["openssl", "ocsp", "-issuer", m.dir / "root.pem", "-cert", m.dir / "inter.pem",
                               "-url", f"http://127.0.0.1:{http}/.well-known/moat/ocsp", "-CAfile",
                               m.dir / "root.pem"], capture_output=True, text=True, timeout=10)

    def doctor():
        r = m.run("doctor", "--timeout", "2", "-c", m.dir / "moat.yaml")
        rj = json.loads(m.run("doctor", "--json", "--timeout", "2", "-c", m.dir / "moat.yaml").stdout)
        return r.stdout, [f for f in rj["findings"] if f["severity"] in ("error", "warning")]

    def root_answers():
        r = inter_ocsp()
        return "Response verify OK" in r.stderr and "unauthorized" not in r.stdout + r.stderr

    assert root_answers()
    r = m.ok("ca", "export-root", "--out", m.dir / "root.p12", "--password-file", m.dir / "pw", "--remove-key")
    assert "applied the change in generation" in r.stdout, r.stdout
    assert "moat ca import-root" in r.stdout
    assert "key offline" in doctor()[0]
    assert "unauthorized" in inter_ocsp().stdout + inter_ocsp().stderr  # the root signs nothing offline
    r = m.fails("ca", "crl", "--root", "--days", "30")
    assert "offline" in r.stderr
    # the orphan of the tour: refused, and the way back is named
    r = m.fails("key", "import", "moat-ca-root", m.dir / "root.p12", "--password-file", m.dir / "pw")
    assert "moat ca import-root" in r.stderr, r.stderr
    assert "moat-ca-root" not in {k["name"] for k in json.loads(m.ok("key", "list", "--json").stdout)}
    # a file of another CA is refused, naming what it holds
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "o.key", "-out", "o.pem", "-days", "30", "-subj", "/CN=Other Root"],
                   cwd=m.dir, check=True, capture_output=True)
    subprocess.run(["openssl", "pkcs12", "-export", "-inkey", "o.key", "-in", "o.pem", "-out", "o.p12",
                    "-passout", "pass:root pw"], cwd=m.dir, check=True, capture_output=True)
    r = m.fails("ca", "import-root", m.dir / "o.p12", "--password-file", m.dir / "pw")
    assert "Other Root" in r.stderr and "not the certificate of moat's root CA" in r.stderr, r.stderr
    assert "o.p12" in r.stderr, r.stderr
    # a file that is not one, and the right file with a wrong password: named, said, nothing changed
    import os
    from store_rows import dump
    (m.dir / "junk.p12").write_bytes(os.urandom(100))
    before = dump(m.store)
    r = m.fails("ca", "import-root", m.dir / "junk.p12", "--password-file", m.dir / "pw")
    assert "junk.p12" in r.stderr and "PKCS#12" in r.stderr, r.stderr
    (m.dir / "bad-pw").write_text("not it\n")
    r = m.fails("ca", "import-root", m.dir / "root.p12", "--password-file", m.dir / "bad-pw")
    assert "root.p12" in r.stderr and "wrong password" in r.stderr, r.stderr
    assert dump(m.store) == before

    r = m.ok("ca", "import-root", m.dir / "root.p12", "--password-file", m.dir / "pw")
    assert "back online" in r.stdout and "applied the change in generation" in r.stdout, r.stdout
    keys = {k["name"]: k for k in json.loads(m.ok("key", "list", "--json").stdout)}
    assert keys["moat-ca-root"]["exportable"] is True
    m.fails("ca", "import-root", m.dir / "root.p12", "--password-file", m.dir / "pw")  # nothing to bring back
    # the root signs its CRL again, with a lifetime of its own
    m.ok("ca", "crl", "--root", "--days", "30", "--out", m.dir / "root.crl")
    t = subprocess.run(["openssl", "crl", "-in", m.dir / "root.crl", "-CAfile", m.dir / "root.pem", "-noout",
                        "-nextupdate"], capture_output=True, text=True, check=True)
    assert "verify OK" in t.stderr + t.stdout, t
    nxt = datetime.datetime.strptime(t.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    assert nxt - datetime.datetime.utcnow() > datetime.timedelta(days=29), nxt
    # and OCSP for the intermediate is answered by the root again
    deadline = time.time() + 5
    while not root_answers() and time.time() < deadline:
        time.sleep(0.1)
    assert root_answers(), inter_ocsp()
    text, bad = doctor()
    assert "key offline" not in text and bad == [], (text, bad)


# 11. An X.509 name is spelled one way: the certificate install, key show --json and doctor agree.
def test_an_x509_name_is_spelled_one_way(moat):
    m, d = moat, moat.dir
    openssl("req", "-x509", "-utf8", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", d / "root.key", "-out", d / "root.crt", "-days", "30",
            "-subj", "/O=Müller & Söhne/CN=Zürich Root", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    canon = "CN=Zürich Root,O=Müller & Söhne"  # RFC 2253 order, UTF-8 kept
    m.ok("key", "new", "www", "--cn", "localhost", "--san", "DNS:localhost", "--csr-out", d / "www.csr")
    openssl_sign(d, d / "www.csr", d / "www.crt", ca=(d / "root.key", d / "root.crt"))
    assert f"issuer  {canon}\n" in m.ok("cert", "install", "www", d / "www.crt").stdout
    import json
    assert json.loads(m.ok("key", "show", "www", "--json").stdout)["issuer"] == canon
    (d / "moat.yaml").write_text("sites:\n  - hosts: [localhost]\n    listen: [\"127.0.0.1:1\"]\n"
                                 "    certificate: www\n")
    out = m.run("doctor", "-c", d / "moat.yaml").stdout
    assert f"issuer {canon}" in out and f"was issued by {canon}," in out, out
