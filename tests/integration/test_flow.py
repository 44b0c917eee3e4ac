"""The key manager and CA flow a user runs, end to end against a running server: new key -> request ->
sign -> install -> renew -> sign -> install -> backup -> revoke -> restore. At each step the command says
what the running server did with it, and a real TLS client sees what is served."""
import hashlib
import json
import ssl
import subprocess

from serve_helpers import config, free_port, site, tls_connect, wait_for


def served_fpr(m):
    """SHA-256 of the certificate the server hands a client asking for localhost."""
    s = tls_connect(m.https, sni="localhost", verify=False)
    der = s.getpeercert(binary_form=True)
    s.close()
    return hashlib.sha256(der).hexdigest()


def fpr_of(m, pem):
    der = ssl.PEM_cert_to_DER_cert(pem)
    return hashlib.sha256(der).hexdigest()


def ocsp(m, cert):
    r = subprocess.run(["openssl", "ocsp", "-issuer", m.dir / "root.pem", "-cert", m.dir / cert, "-url",
                        f"http://127.0.0.1:{m.http}/.well-known/moat/ocsp", "-CAfile", m.dir / "root.pem"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def applied(r):
    """The generation the running server applied the change in (the command said so, exit 0)."""
    assert "applied the change in generation" in r.stdout, (r.stdout, r.stderr)
    return int(r.stdout.rsplit("generation", 1)[1].split()[0])


def test_key_request_sign_install_renew_backup_revoke_restore(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Flow Root")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    m.ok("key", "new", "www", "--cn", "localhost", "--san", "DNS:localhost", "--csr-out", m.dir / "www.csr")
    m.ok("ca", "sign", m.dir / "www.csr", "--out", m.dir / "www1.pem")
    m.ok("cert", "install", "www", m.dir / "www1.pem")  # no server yet: says so, exit 0
    m.https, m.http = free_port(), free_port()
    m.serve(config(m, [site(["localhost"], m.https, default=True, http_port=m.http,
                            extra="certificate: www\nca_publish: true")]), wait=(m.https, m.http))
    first = fpr_of(m, (m.dir / "www1.pem").read_text())
    assert served_fpr(m) == first

    # renewal: a new key and request, signed, installed; the command returns once the server serves it
    m.ok("key", "renew", "www", "--csr-out", m.dir / "www2.csr")
    m.ok("ca", "sign", m.dir / "www2.csr", "--out", m.dir / "www2.pem")
    g1 = applied(m.ok("cert", "install", "www", m.dir / "www2.pem"))
    second = fpr_of(m, (m.dir / "www2.pem").read_text())
    assert served_fpr(m) == second != first
    hist = json.loads(m.ok("cert", "history", "www", "--json").stdout)
    assert len(hist) == 2, hist  # the first certificate is kept for a rollback

    # backup, then the renewed certificate is revoked: the server is told, OCSP says revoked
    m.ok("store", "backup", m.dir / "before-revoke.db")
    (m.dir / "www2-leaf.pem").write_text((m.dir / "www2.pem").read_text().split("-----END CERTIFICATE-----")[0]
                                         + "-----END CERTIFICATE-----\n")
    assert "www2-leaf.pem: good" in ocsp(m, "www2-leaf.pem")
    serial = subprocess.run(["openssl", "x509", "-in", m.dir / "www2-leaf.pem", "-noout", "-serial"],
                            capture_output=True, text=True, check=True).stdout.strip().split("=")[1]
    r = m.ok("ca", "revoke", serial, "--reason", "key-compromise", "--force")  # a site serves it
    g2 = applied(r)
    assert g2 > g1
    assert wait_for(lambda: "www2-leaf.pem: revoked" in ocsp(m, "www2-leaf.pem"), timeout=10)

    # restoring the backup from before the revocation keeps the revocation: the certificate stays revoked
    r = m.ok("store", "restore", m.dir / "before-revoke.db")
    assert applied(r) > g2
    assert serial in m.ok("ca", "list", "--revoked").stdout
    # (the command returned once the server applied the restored store: no wait is needed)
    out = ocsp(m, "www2-leaf.pem")
    assert "www2-leaf.pem: revoked" in out and "keyCompromise" in out, out
    # the site still has its certificate (revoked: a note, not a refusal) and the server answers
    assert served_fpr(m) == second
