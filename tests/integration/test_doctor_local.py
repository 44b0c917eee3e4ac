"""`moat doctor [-c moat.yaml]`: local findings through the real binary (store, config, listeners)."""
import datetime
import json
import os
import signal
import socket
import time

from conftest import free_port
from keymgr_helpers import write_pw
from serve_helpers import config, site, write_config
from doctor_pki import Pki
from store_rows import tamper_store


def run_doctor(moat, *args, code=None):
    r = moat.run("doctor", "--json", "--timeout", "1", *args)
    assert r.returncode in (0, 1), f"doctor exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    moat._check_sanitizers(r.stderr)
    rep = json.loads(r.stdout)
    if code is not None:
        assert r.returncode == code, f"exit {r.returncode}, expected {code}\n{r.stdout}"
    return rep


def ids(rep, severity=None):
    return {f["id"] for f in rep["findings"] if severity is None or f["severity"] == severity}


def test_missing_store_and_absolute_path(moat):
    rep = run_doctor(moat, code=1)
    assert ids(rep) == {"store-missing"}
    assert rep["store"] == str(moat.store)
    # A relative --store is printed as the absolute path doctor inspects.
    r = moat.run("doctor", "--store", "sub/x.db", cwd=moat.dir)
    assert r.returncode == 1
    assert f"store:  {moat.dir}/sub/x.db\n" in r.stdout
    assert os.path.isabs(r.stdout.split("store:  ")[1].split("\n")[0])


def test_invalid_config_is_a_finding(moat):
    cfg = moat.dir / "moat.yaml"
    cfg.write_text("sites:\n  - hosts: [a.example]\n    listen: [\"*:99999\"]\n")
    rep = run_doctor(moat, "-c", cfg, code=1)
    assert "config-invalid" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "config-invalid")
    assert "moat.yaml:3:" in f["what"] and "99999" in f["what"]
    assert "moat serve --check" in f["fix"]


# ---- through the key manager, the CA and the server -------------------------------------------------


def finding(rep, fid):
    return next(f for f in rep["findings"] if f["id"] == fid)


def test_pending_key_and_no_backup(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    rep = run_doctor(moat, code=0)
    assert {"key-pending", "key-no-backup", "no-config"} <= ids(rep)
    assert finding(rep, "key-pending")["subject"] == "key www"
    assert "moat cert install www" in finding(rep, "key-pending")["fix"]
    assert "moat store backup" in finding(rep, "key-no-backup")["fix"]


def test_site_names_a_missing_or_pending_key(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    port = free_port()
    cfg = write_config(moat, [site(["a.example"], port, certificate="nosuchkey"),
                              site(["www.example.com"], port, certificate="www")], log=False)
    rep = run_doctor(moat, "-c", cfg, code=1)
    assert finding(rep, "site-key-missing")["subject"] == "site a.example"
    assert finding(rep, "site-key-pending")["subject"] == "site www.example.com"
    # Nothing runs: the listener is down, and two sites share it with no default.
    assert "listener-down" in ids(rep, "error")
    assert finding(rep, "shared-listener")["severity"] == "warning"


def test_unbound_key_uncovered_host_and_shared_listener(moat):
    moat.ok("ca", "init", "--cn", "Doctor Local CA")
    moat.ok("ca", "issue", "www", "--cn", "www.example.com", "--san", "DNS:www.example.com")
    moat.ok("ca", "issue", "old", "--cn", "old.example.com", "--san", "DNS:old.example.com")
    port = free_port()
    cfg = write_config(moat, [site(["www.example.com", "api.example.com"], port, certificate="www",
                                   default=True),
                              site(["b.example.com"], port, certificate="www")], log=False)
    rep = run_doctor(moat, "-c", cfg, code=1)
    mm = [f for f in rep["findings"] if f["id"] == "name-mismatch"]
    assert any(f["subject"] == "site www.example.com" and "api.example.com" in f["what"] for f in mm)
    assert finding(rep, "key-unused")["subject"] == "key old"
    shared = finding(rep, "shared-listener")
    assert shared["severity"] == "info" and "a client without SNI gets www.example.com" in shared["what"]


def test_expired_certificate_from_outside_ca(moat):
    pki = Pki(moat.dir / "pki")
    pki.root()
    pki.sign("inter", "root", "Outside Intermediate", ca=True)
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    pki.sign("www", "inter", "www.example.com", "DNS:www.example.com", start=-60, end=-1, csr=moat.dir / "www.csr")
    moat.ok("cert", "install", "www", pki.path("www.pem"), "--chain", pki.path("inter.pem"), "--force")
    cfg = write_config(moat, [site(["www.example.com"], free_port(), certificate="www")], log=False)
    rep = run_doctor(moat, "-c", cfg, "--ca", pki.path("root.pem"), code=1)
    assert finding(rep, "cert-expired")["subject"] == "site www.example.com"
    assert "moat key renew www" in finding(rep, "cert-expired")["fix"]
    # Without the outside root, the trust store that would need it is named.
    rep = run_doctor(moat, "-c", cfg, "--no-system-trust", code=1)
    assert "untrusted-root" in ids(rep) or "chain-incomplete" in ids(rep)


def test_ca_expiring_and_client_trust_missing(moat):
    port = free_port()
    cfg = write_config(moat, [site(["a.example"], port, certificate="auto", extra="client_certificate: required")],
                       log=False)
    moat.ok("key", "new", "x", "--cn", "x.example", "--csr-out", "x.csr")  # creates the store
    rep = run_doctor(moat, "-c", cfg, code=1)
    assert finding(rep, "client-trust-missing")["subject"] == "site a.example"
    moat.ok("ca", "init", "--cn", "Short CA", "--days", "20")
    rep = run_doctor(moat, "-c", cfg, code=1)
    assert "client-trust-missing" not in ids(rep)
    assert finding(rep, "ca-expiring")["subject"] == "ca root"


def test_port_held_by_another_process_that_never_answers(moat):
    moat.ok("key", "new", "x", "--cn", "x.example", "--csr-out", "x.csr")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    try:
        cfg = write_config(moat, [site(["a.example"], port, certificate="auto")], log=False)
        rep = run_doctor(moat, "-c", cfg, code=1)
    finally:
        srv.close()
    held = finding(rep, "port-held")
    assert f"pid {os.getpid()}" in held["what"]
    assert "listener-no-answer" in ids(rep, "error")
    assert "listener-down" not in ids(rep)


def test_running_server_is_healthy_then_a_refused_reload_is_reported(moat):
    moat.ok("ca", "init", "--cn", "Doctor Serve CA")
    moat.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost")
    port = free_port()
    text = config(moat, [site(["localhost"], port, certificate="www")], log=False)
    proc = moat.serve(text, wait=[port])
    cfg = moat.dir / "moat.yaml"
    rep = run_doctor(moat, "-c", cfg)
    assert ids(rep, "error") == set(), rep["findings"]
    serves = [f["value"] for s in rep["subjects"] for f in s["facts"] if f["key"] == "serves"]
    assert any("CN=localhost" in v for v in serves)
    # From outside, moat's own CA (found in the store) is a trust anchor too.
    r = moat.run("doctor", "--json", "--timeout", "2", "--no-system-trust", f"https://localhost:{port}")
    remote = json.loads(r.stdout)
    assert r.returncode == 0, remote["findings"]
    assert remote["store"] == str(moat.store)
    assert "untrusted-root" not in ids(remote) and "self-signed" not in ids(remote)
    # A config the server cannot load: it keeps the old one and says why; doctor shows both.
    cfg.write_text(config(moat, [site(["localhost"], port, certificate="nosuchkey")], log=False))
    proc.send_signal(signal.SIGHUP)
    for _ in range(40):
        rep = run_doctor(moat, "-c", cfg)
        if "change-refused" in ids(rep):
            break
        time.sleep(0.25)
    assert "change-refused" in ids(rep, "error"), rep["findings"]
    assert "site-key-missing" in ids(rep, "error")
    assert "nosuchkey" in finding(rep, "change-refused")["what"]


def test_missing_intermediate_in_the_store(moat):
    pki = Pki(moat.dir / "pki")
    pki.root()
    pki.sign("inter", "root", "Outside Intermediate", ca=True)
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    pki.sign("www", "inter", "www.example.com", "DNS:www.example.com", csr=moat.dir / "www.csr")
    moat.ok("cert", "install", "www", pki.path("www.pem"))  # no --chain
    cfg = write_config(moat, [site(["www.example.com"], free_port(), certificate="www")], log=False)
    rep = run_doctor(moat, "-c", cfg, "--ca", pki.path("root.pem"), code=1)
    f = finding(rep, "chain-incomplete")
    assert f["subject"] == "site www.example.com" and "Outside Intermediate" in f["what"]
    assert "moat cert install www" in f["fix"] and "--chain" in f["fix"]
    # Following the fix: a renewed certificate installed with its intermediate completes the chain.
    moat.ok("key", "renew", "www", "--csr-out", "www2.csr")
    pki.sign("www2", "inter", "www.example.com", "DNS:www.example.com", csr=moat.dir / "www2.csr")
    moat.ok("cert", "install", "www", pki.path("www2.pem"), "--chain", pki.path("inter.pem"))
    rep = run_doctor(moat, "-c", cfg, "--ca", pki.path("root.pem"))
    assert "chain-incomplete" not in ids(rep) and "untrusted-root" not in ids(rep), rep["findings"]


def test_store_backup_clears_the_no_backup_finding(moat):
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", "www.csr")
    assert "key-no-backup" in ids(run_doctor(moat))
    moat.ok("store", "backup", moat.dir / "backup.db")
    assert "key-no-backup" not in ids(run_doctor(moat))
    # An exportable key never needed one.
    moat.ok("key", "new", "api", "--cn", "api.example.com", "--exportable", "--csr-out", "api.csr")
    assert "key-no-backup" not in ids(run_doctor(moat))


def test_server_on_an_older_generation(moat):
    moat.ok("ca", "init", "--cn", "Doctor Behind CA")
    moat.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost")
    port = free_port()
    proc = moat.serve(config(moat, [site(["localhost"], port, certificate="www")], log=False), wait=[port])
    cfg = moat.dir / "moat.yaml"
    for _ in range(40):  # the server records the generation it runs shortly after it starts
        rep = run_doctor(moat, "-c", cfg)
        if "server-behind" not in ids(rep):
            break
        time.sleep(0.25)
    assert "server-behind" not in ids(rep)
    # A stopped server cannot pick up the next store change: doctor sees it still on the old generation.
    proc.send_signal(signal.SIGSTOP)
    try:
        moat.ok("ca", "issue", "api", "--cn", "api.localhost", "--san", "DNS:api.localhost")
        rep = run_doctor(moat, "-c", cfg, "--timeout", "1")
        f = finding(rep, "server-behind")
        assert f"pid {proc.pid}" in f["what"]
    finally:
        proc.send_signal(signal.SIGCONT)
    for _ in range(40):
        rep = run_doctor(moat, "-c", cfg)
        if "server-behind" not in ids(rep):
            break
        time.sleep(0.25)
    assert "server-behind" not in ids(rep)


def test_ocsp_stapling_configured_but_failing(moat):
    """The root issued the site's certificate, then went offline: nothing can sign the staple. The server
    logs it and records it in the store; doctor reports it with the cause and the fix."""
    moat.ok("ca", "init", "--cn", "Doctor Staple Root", "--exportable")
    moat.ok("ca", "issue", "www", "--cn", "localhost")
    moat.ok("ca", "init", "--intermediate", "--cn", "Doctor Staple Issuing")
    moat.ok("ca", "export-root", "--out", moat.dir / "root-offline.p12", "--remove-key",
            "--password-file", write_pw(moat.dir))
    port = free_port()
    text = config(moat, [site(["localhost"], port, certificate="www")], log=False)
    moat.serve(text, wait=[port])
    cfg = moat.dir / "moat.yaml"
    rep = run_doctor(moat, "-c", cfg, code=1)
    f = finding(rep, "ocsp-stapling-failed")
    assert f["severity"] == "error" and f["subject"] == "site localhost"
    assert "www" in f["what"] and "offline" in f["what"]
    assert f["why"] and "moat ca issue" in f["fix"]
    assert "OCSP stapling of key \"www\" failed" in (moat.dir / "serve.out").read_text()
    # A certificate from the intermediate staples again, and the finding goes away with the record.
    moat.ok("ca", "issue", "www2", "--cn", "localhost")
    cfg.write_text(config(moat, [site(["localhost"], port, certificate="www2")], log=False))
    moat.ok("reload", "-c", cfg)
    rep = run_doctor(moat, "-c", cfg)
    assert "ocsp-stapling-failed" not in ids(rep), rep["findings"]
    facts = [f["value"] for s in rep["subjects"] for f in s["facts"] if f["key"] == "ocsp"]
    assert any(v.startswith("stapled: good") for v in facts), facts


def store_crl(moat, role, pem):
    tamper_store(moat.store, "insert or replace into settings(name, value) values (?, ?)", (f"ca.crl.{role}", pem))


def crl_pem(cn, last_days, next_days):
    """A CRL with the given dates, as time would leave one in the store (doctor reads only its dates)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .last_update(now + datetime.timedelta(days=last_days))
           .next_update(now + datetime.timedelta(days=next_days))
           .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    return crl.public_bytes(Encoding.PEM).decode()


def test_moat_crl_out_of_date_expiring_or_unreadable(moat):
    moat.ok("ca", "init", "--cn", "CRL Root", "--url", "http://ca.example")
    moat.ok("ca", "crl", "--root")
    rep = run_doctor(moat)
    assert not {"crl-expired", "crl-expiring", "crl-unreadable"} & ids(rep)

    store_crl(moat, "root", crl_pem("CRL Root", -10, -1))
    rep = run_doctor(moat, code=1)
    f = finding(rep, "crl-expired")
    assert f["severity"] == "error" and f["subject"] == "ca root"
    assert "moat ca crl --root" in f["fix"]

    store_crl(moat, "root", crl_pem("CRL Root", -5, 2))
    rep = run_doctor(moat)
    f = finding(rep, "crl-expiring")
    assert f["severity"] == "warning" and "crl-expired" not in ids(rep)

    store_crl(moat, "root", "-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n")
    rep = run_doctor(moat, code=1)
    assert finding(rep, "crl-unreadable")["severity"] == "error"

    # The fix the findings name clears them, an unreadable CRL included (it used to be refused).
    assert "does not parse; signing a new one" in moat.ok("ca", "crl", "--root").stderr
    rep = run_doctor(moat)
    assert not {"crl-expired", "crl-expiring", "crl-unreadable"} & ids(rep)
