"""Client certificates through the real server: the handshake asks and never fails for a
client-certificate reason; each request gets a verdict, a 403 page naming the reason, the
X-Moat-Client-Cert header and "403.7 ... ccert=REASON" in the access log. Fail closed: a site that
wants client certificates without a usable anchor does not load."""
import datetime

import pytest

from ccert_helpers import client_pem_from_moat, curl
from serve_helpers import CA, config, free_port, site, wait_for

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def outside_client(d, ca, name, days_from=-10, days_to=10):
    """A client certificate signed by the openssl-made CA <ca>, with any validity window."""
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.pem.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_from))
            .not_valid_after(now + datetime.timedelta(days=days_to))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = d / f"{name}.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    return pem


def test_verdicts_per_path(moat, setup):
    root, ca_pem = setup
    alice = client_pem_from_moat(moat, "alice", "alice")
    server_only = client_pem_from_moat(moat, "srv", "srv.example", profile="server")
    outside = CA(moat.dir, name="Outside Root")
    stranger = outside_client(moat.dir, outside, "stranger")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="""
client_certificate: optional
locations:
  - path: /private
    client_certificate: required
""")]), wait=[port])
    # no certificate: the public part is served, the private part answers 403 with the reason
    assert curl(port, "/", cafile=ca_pem)[0] == 200
    st, out, _ = curl(port, "/private/", cafile=ca_pem)
    assert st == 403 and "x-moat-client-cert: none" in out.lower() and "reason: none" in out and "sent no client certificate" in out
    # a valid certificate from moat's CA opens it
    st, out, err = curl(port, "/private/", cert=alice, cafile=ca_pem)
    assert st == 200 and "secret" in out, err
    # untrusted issuer, wrong purpose: the handshake still succeeds, the request says why
    st, out, _ = curl(port, "/private/", cert=stranger, cafile=ca_pem)
    assert st == 403 and "x-moat-client-cert: untrusted" in out.lower()
    st, out, _ = curl(port, "/private/", cert=server_only, cafile=ca_pem)
    assert st == 403 and "x-moat-client-cert: wrong-purpose" in out.lower()
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and "ccert=untrusted" in log.read_text(), timeout=5)
    text = log.read_text()
    assert '"GET /private/" 403.7 ' in text and "ccert=none" in text
    assert "ccert=ok subject=CN=alice" in text
    # a revocation by moat's CA applies to the running server, without a restart
    moat.ok("ca", "revoke", "alice")
    assert wait_for(lambda: "x-moat-client-cert: revoked" in curl(port, "/private/", cert=alice,
                                                                  cafile=ca_pem)[1].lower(), timeout=5)


def test_trust_store_anchor_expired_and_revocation_unknown(moat, setup):
    root, ca_pem = setup
    corp = CA(moat.dir, name="Corp Root")
    moat.ok("trust", "add", corp.pem, "--name", "corp")
    good = outside_client(moat.dir, corp, "carol")
    old = outside_client(moat.dir, corp, "dave", days_from=-30, days_to=-1)
    p1, p2 = free_port(), free_port()
    moat.serve(config(moat, [
        site(["localhost"], p1, root=root, extra="client_certificate: required\nclient_trust: [corp]"),
        site(["localhost"], p2, root=root,
             extra="client_certificate: required\nclient_trust: [corp]\nclient_revocation_unknown: allow")]),
        wait=[p1, p2])
    # no revocation source for an outside CA: denied by default (fail closed), allowed when configured
    st, out, _ = curl(p1, "/", cert=good, cafile=ca_pem)
    assert st == 403 and "revocation-unknown" in out
    assert curl(p2, "/", cert=good, cafile=ca_pem)[0] == 200
    st, out, _ = curl(p2, "/", cert=old, cafile=ca_pem)
    assert st == 403 and "x-moat-client-cert: expired" in out.lower()


def test_no_usable_anchor_fails_closed(moat):
    root = moat.dir / "www"
    root.mkdir()
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    cfg = moat.dir / "moat.yaml"
    cfg.write_text(config(moat, [site(["localhost"], port, root=root, extra="client_certificate: required")]))
    r = moat.fails("serve", "-c", cfg, "--check")
    assert "no usable trust anchor" in r.stderr
    # The server starts (other sites would serve) but does not serve this one, and says why.
    moat.serve(cfg.read_text(), wait=[port])
    status, _, why = curl(port, "/", cafile=ca.pem)
    assert status == 0 and why, why
    assert wait_for(lambda: "site localhost is not served" in (moat.dir / "error.log").read_text()
                    and "no usable trust anchor" in (moat.dir / "error.log").read_text(), timeout=5)


def _get_over(ctx, port, session=None):
    """GET /private/ with python's ssl; returns (status, X-Moat-Client-Cert or None, reused, session)."""
    import socket
    import ssl
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET /private/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                if not chunk:
                    break
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            why = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
                   if ln.lower().startswith("x-moat-client-cert:")]
            return int(head.split()[1]), (why[0] if why else None), s.session_reused, s.session


@pytest.mark.parametrize("intermediate", [False, True])
def test_resumed_session_keeps_moat_ca_verdicts(moat, setup, intermediate):
    """A resumed session carries no verified chain: the certificate is still recognised as moat's (by its
    authority key identifier), so it passes while valid and is refused once revoked."""
    import ssl
    root, ca_pem = setup
    if intermediate:
        moat.ok("ca", "init", "--intermediate", "--cn", "Serve CCert Issuing CA")
    alice = client_pem_from_moat(moat, "alice", "alice")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="client_certificate: required")]),
               wait=[port])
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.load_cert_chain(str(alice))
    st, why, reused, sess = _get_over(ctx, port)
    assert (st, why, reused) == (200, None, False)
    st, why, reused, sess = _get_over(ctx, port, sess)
    assert (st, why, reused) == (200, None, True)
    moat.ok("ca", "revoke", "alice")
    assert wait_for(lambda: _get_over(ctx, port, sess)[1] == "revoked", timeout=5)
    st, why, reused, _ = _get_over(ctx, port, sess)
    assert (st, why, reused) == (403, "revoked", True)


def test_certificate_expiring_during_a_keep_alive_connection(moat, setup):
    """The dates are checked on every request, also on one connection: a certificate that expires while
    the connection is open is refused from then on."""
    import socket
    import ssl
    import time
    root, ca_pem = setup
    corp = CA(moat.dir, name="Corp Root")
    moat.ok("trust", "add", corp.pem, "--name", "corp")
    ca_key = serialization.load_pem_private_key(corp.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(corp.pem.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "brief")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(seconds=4))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = moat.dir / "brief.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra=(
        "client_certificate: required\nclient_trust: [corp]\nclient_revocation_unknown: allow"))]), wait=[port])
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    ctx.load_cert_chain(str(pem))

    def ask(s):
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += s.recv(65536)
        status = int(head.split()[1])
        why = [ln.split(b":", 1)[1].strip().decode() for ln in head.split(b"\r\n")
               if ln.lower().startswith(b"x-moat-client-cert:")]
        return status, (why[0] if why else None)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert ask(s) == (200, None)
            assert ask(s) == (200, None)
            time.sleep(max(0.0, (now + datetime.timedelta(seconds=5.5) -
                                 datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
            assert ask(s) == (403, "expired")
