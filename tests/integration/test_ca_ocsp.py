"""moat's CA inside moat serve: the OCSP responder (RFC 6960, POST and GET, over http and https) on a site
with ca_publish, and OCSP stapling of the certificates the CA issued, checked with openssl ocsp and
openssl s_client -status; answers follow `moat ca revoke` within about two seconds."""
import base64
import datetime
import http.client
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse

import pytest

from serve_helpers import config, free_port, site, wait_for
from store_rows import audit, generation, peek_store, tamper_store

OCSP = "/.well-known/moat/ocsp"


def run(*args, input=None):
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=30, input=input)


@pytest.fixture
def ca_server(moat):
    """A root that issued "rootleaf" before the intermediate existed, and an intermediate that issued "www";
    one server with both sites on one https port, and an http port, publishing the CA."""
    m = moat
    m.ok("ca", "init", "--cn", "OCSP Root", "--exportable")
    m.ok("ca", "issue", "rootleaf", "--cn", "root.test")
    m.ok("ca", "init", "--intermediate", "--cn", "OCSP Issuing")
    m.ok("ca", "issue", "www", "--cn", "localhost")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    (m.dir / "inter.pem").write_text(m.ok("ca", "cert").stdout)
    m.ok("cert", "export", "www", "--out", m.dir / "www.pem")
    m.ok("cert", "export", "rootleaf", "--out", m.dir / "rootleaf.pem")
    m.https, m.http = free_port(), free_port()
    m.serve(config(m, [
        site(["localhost"], m.https, default=True, http_port=m.http,
             extra="certificate: www\nca_publish: true\nrequire_secure_channel: true"),
        site(["root.test"], m.https, extra="certificate: rootleaf"),
    ]), wait=(m.https, m.http))
    return m


def ocsp_post(m, cert, issuer, port=None, extra=()):
    """openssl ocsp (POST, with a nonce) against the server; returns its combined output."""
    r = run("openssl", "ocsp", "-issuer", m.dir / issuer, *(("-cert", m.dir / cert) if cert else ()), *extra,
            "-url", f"http://127.0.0.1:{port or m.http}{OCSP}", "-CAfile", m.dir / "root.pem")
    return r.stdout.decode() + r.stderr.decode()


def resp_text(m, der, name="resp.der"):
    (m.dir / name).write_bytes(der)
    r = run("openssl", "ocsp", "-respin", m.dir / name, "-resp_text", "-noverify")
    return r.stdout.decode() + r.stderr.decode()


def http_request(port, method, path, body=None, headers=None, tls=False):
    if tls:
        ctx = ssl.create_default_context(cafile=None)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers={"Host": "localhost", **(headers or {})})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def until(fetch, want, timeout=3):
    """Fetches until <want> is in the answer (bounded); returns the last answer."""
    last = [""]

    def probe():
        last[0] = fetch()
        return want in last[0]
    wait_for(probe, timeout=timeout)
    return last[0]


def stapled(m, sni):
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{m.https}", "-servername", sni, "-status",
            input=b"")
    return r.stdout.decode(errors="replace")


def test_post_good_then_revoked_with_reason(ca_server):
    m = ca_server
    out = ocsp_post(m, "www.pem", "inter.pem")
    assert "www.pem: good" in out and "Response verify OK" in out, out
    assert "nonce" not in out.lower(), out          # the request's nonce came back
    out = ocsp_post(m, "rootleaf.pem", "root.pem")
    assert "rootleaf.pem: good" in out and "Response verify OK" in out, out
    m.ok("ca", "revoke", "www", "--reason", "key-compromise", "--force")
    out = until(lambda: ocsp_post(m, "www.pem", "inter.pem"), "www.pem: revoked")
    assert "www.pem: revoked" in out and "keyCompromise" in out and "Response verify OK" in out, out
    # The other CA's certificate is untouched.
    assert "rootleaf.pem: good" in ocsp_post(m, "rootleaf.pem", "root.pem")


def test_unknown_serial_and_unauthorized_issuer(ca_server, tmp_path):
    m = ca_server
    out = ocsp_post(m, None, "inter.pem", extra=("-serial", "0x1234"))
    assert "0x1234: unknown" in out and "Response verify OK" in out, out
    # A serial the intermediate issued, asked about under the root: that CA never issued it.
    serial = run("openssl", "x509", "-in", m.dir / "www.pem", "-noout", "-serial").stdout.decode()
    serial = serial.strip().split("=")[1]
    out = ocsp_post(m, None, "root.pem", extra=("-serial", "0x" + serial))
    assert ": unknown" in out, out
    # Another CA altogether: unauthorized (RFC 5019 2.2.3).
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", tmp_path / "other.key", "-out", tmp_path / "other.pem", "-subj", "/CN=Other", "-days", "2")
    r = run("openssl", "ocsp", "-issuer", tmp_path / "other.pem", "-serial", "0x99", "-no_nonce",
            "-reqout", tmp_path / "other.req")
    assert r.returncode == 0
    st, hd, body = http_request(m.http, "POST", OCSP, body=(tmp_path / "other.req").read_bytes(),
                                headers={"Content-Type": "application/ocsp-request"})
    assert st == 200 and "unauthorized" in resp_text(m, body)


def test_get_request_over_http_and_https_is_cached(ca_server):
    m = ca_server
    r = run("openssl", "ocsp", "-issuer", m.dir / "inter.pem", "-cert", m.dir / "www.pem", "-no_nonce",
            "-reqout", m.dir / "req.der")
    assert r.returncode == 0
    b64 = base64.b64encode((m.dir / "req.der").read_bytes()).decode()
    for path, tls, port in ((OCSP + "/" + urllib.parse.quote(b64, safe=""), False, m.http),
                            (OCSP + "/" + b64, True, m.https)):          # raw '/', '+', '=' too
        st, hd, body = http_request(port, "GET", path, tls=tls)
        assert st == 200, (st, hd)   # plain http: not redirected to https
        assert hd["content-type"] == "application/ocsp-response"
        assert hd["cache-control"].startswith("max-age=") and "public" in hd["cache-control"]
        assert 0 < int(hd["cache-control"].split("=")[1].split(",")[0]) <= 60
        t = resp_text(m, body)
        assert "Cert Status: good" in t, t
    # The same request again comes from the worker's cache: byte for byte the same signed answer.
    _, _, a = http_request(m.http, "GET", OCSP + "/" + b64)
    _, _, b = http_request(m.http, "GET", OCSP + "/" + b64)
    assert a == b
    # A revocation starts a new generation: the cached "good" is gone at once.
    m.ok("ca", "revoke", "www", "--force")
    assert wait_for(lambda: "Cert Status: revoked" in resp_text(m, http_request(m.http, "GET", OCSP + "/" + b64)[2]),
                    timeout=3)


def test_malformed_requests_get_malformed_request_status(ca_server):
    m = ca_server
    for body in (b"\x30\x03\x02\x01", b"not der at all", b"\x30\x00", b""):
        st, hd, resp = http_request(m.http, "POST", OCSP, body=body,
                                    headers={"Content-Type": "application/ocsp-request"})
        assert st == 200 and hd["content-type"] == "application/ocsp-response"
        assert hd["cache-control"] == "no-store"
        assert "malformedrequest" in resp_text(m, resp).lower()
    for path in (OCSP + "/!!notbase64", OCSP + "/", OCSP + "/%zz"):
        st, hd, resp = http_request(m.http, "GET", path)
        assert st == 200 and "malformedrequest" in resp_text(m, resp).lower(), path
    # Larger than any OCSP request: refused before it is read.
    st, _, _ = http_request(m.http, "POST", OCSP, body=b"\x30" * 9000)
    assert st == 413
    st, hd, _ = http_request(m.http, "PUT", OCSP, body=b"x")
    assert st == 405 and "POST" in hd["allow"]
    # The server still answers.
    assert "www.pem: good" in ocsp_post(m, "www.pem", "inter.pem")


def test_stapled_good_then_revoked_for_both_cas(ca_server):
    m = ca_server
    for sni in ("localhost", "root.test"):
        out = stapled(m, sni)
        assert "OCSP Response Status: successful" in out and "Cert Status: good" in out, out
    m.ok("ca", "revoke", "rootleaf", "--reason", "superseded", "--force")
    out = until(lambda: stapled(m, "root.test"), "Cert Status: revoked")
    assert "Cert Status: revoked" in out and "superseded" in out.lower(), out
    assert "Cert Status: good" in stapled(m, "localhost")
    m.ok("ca", "revoke", "www", "--force")
    assert wait_for(lambda: "Cert Status: revoked" in stapled(m, "localhost"), timeout=3)


@pytest.mark.skipif(shutil.which("gnutls-cli") is None, reason="needs gnutls-cli (scripts/deps.sh test)")
def test_gnutls_client_accepts_the_staple(ca_server):
    """GnuTLS verifies a staple whose signer the response does not carry through its trust list, by the
    responder's name only: a staple identified by key hash failed every GnuTLS handshake (uacme, wget)."""
    m = ca_server
    # root.test: a certificate of the root, sent alone (the issuer comes from the trust list); localhost:
    # one of the intermediate, sent with it.
    for sni in ("root.test", "localhost"):
        r = run("gnutls-cli", "--x509cafile", m.dir / "root.pem", "-p", m.https, "--sni-hostname", sni,
                "--verify-hostname", sni, "127.0.0.1", input=b"")
        out = r.stdout.decode() + r.stderr.decode()
        assert r.returncode == 0 and "The certificate is trusted" in out, (sni, out)


def test_no_responder_without_ca_publish(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Quiet Root")
    m.ok("ca", "issue", "www", "--cn", "localhost")
    port = free_port()
    m.serve(config(m, [site(["localhost"], port, default=True, extra="certificate: www")]), wait=(port,))
    st, _, _ = http_request(port, "POST", OCSP, body=b"\x30\x00", tls=True)
    assert st in (404, 405)
    # Stapling does not depend on publication.
    r = run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-status",
            input=b"")
    assert "Cert Status: good" in r.stdout.decode()


def stored_crl(m, role="root"):
    """The CRL as the store holds it (`moat ca crl` would re-sign a due one, and the test watches the
    server do that)."""
    rows = peek_store(m.store, "select value from settings where name = ?", (f"ca.crl.{role}",))
    return rows[0][0] if rows else None


def crl_text(m, pem, name="crl.pem"):
    (m.dir / name).write_text(pem)
    return run("openssl", "crl", "-in", m.dir / name, "-noout", "-text").stdout.decode()


def test_server_resigns_a_crl_past_half_its_life(moat):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    m = moat
    m.ok("ca", "init", "--cn", "CRL Root")
    m.ok("ca", "issue", "www", "--cn", "localhost")
    m.ok("ca", "revoke", "www", "--reason", "superseded", "--force")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    fresh = stored_crl(m)
    number = int(crl_text(m, fresh).split("X509v3 CRL Number:")[1].split()[0], 0)
    port = free_port()
    m.serve(config(m, [site(["localhost"], port, default=True, extra="certificate: www")]), wait=(port,))
    time.sleep(1)
    assert stored_crl(m) == fresh          # a CRL in the first half of its week is left alone
    # Four days on: a CRL whose next update is three days away, as time would leave it in the store.
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    old = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CRL Root")]))
           .last_update(now - datetime.timedelta(days=4)).next_update(now + datetime.timedelta(days=3))
           .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding
    old_pem = old.public_bytes(Encoding.PEM).decode()
    gen_before = generation(m)
    tamper_store(m.store, "update settings set value = ? where name = 'ca.crl.root'", (old_pem,))
    assert wait_for(lambda: stored_crl(m) != old_pem, timeout=3)
    new = stored_crl(m)
    (m.dir / "new.pem").write_text(new)
    r = run("openssl", "crl", "-in", m.dir / "new.pem", "-noout", "-CAfile", m.dir / "root.pem")
    assert r.returncode == 0, r.stderr
    t = crl_text(m, new)
    assert int(t.split("X509v3 CRL Number:")[1].split()[0], 0) == number + 1
    assert "Superseded" in t
    nxt = datetime.datetime.strptime(t.split("Next Update:")[1].strip().splitlines()[0], "%b %d %H:%M:%S %Y %Z")
    assert abs((nxt.replace(tzinfo=datetime.timezone.utc) - now).total_seconds() - 7 * 86400) < 120
    # One transaction: the CRL, a new generation (the server serves it like any change), and the audit.
    assert generation(m) == gen_before + 1
    assert ("root", "re-signed by the server before its next update") in \
        [(a["object"], a["detail"]) for a in audit(m, "ca.crl")]
    assert "re-signed the CRL of moat's root CA" in (m.dir / "error.log").read_text()


def test_each_certificate_of_a_dual_site_gets_its_own_staple(moat):
    """A site with an ECDSA and an RSA certificate from moat's CA: the staple is about the one served."""
    m = moat
    m.ok("ca", "init", "--cn", "Dual Root")
    m.ok("ca", "issue", "www-ec", "--cn", "localhost")
    m.ok("ca", "issue", "www-rsa", "--cn", "localhost", "--alg", "rsa-2048")
    port = free_port()
    m.serve(config(m, [site(["localhost"], port, default=True)]), wait=(port,))
    for name, sigalgs in (("www-ec", "ECDSA+SHA256"), ("www-rsa", "RSA-PSS+SHA256:RSA+SHA256")):
        serial = m.ok("cert", "export", name).stdout
        (m.dir / f"{name}.pem").write_text(serial)
        serial = run("openssl", "x509", "-in", m.dir / f"{name}.pem", "-noout", "-serial").stdout.decode()
        serial = serial.strip().split("=")[1]
        for tls in ("-tls1_2", "-tls1_3"):
            r = run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-status",
                    tls, "-sigalgs", sigalgs, input=b"")
            out = r.stdout.decode(errors="replace")
            assert "Cert Status: good" in out, (name, tls, out)
            got = out.split("Serial Number: ")[1].split()[0]
            assert got.lstrip("0") == serial.lstrip("0"), (name, tls, serial, got)


def test_ocsp_post_with_expect_gets_100_continue(ca_server):
    """RFC 9110 §10.1.1: the responder reads the body, so it answers the expectation with 100 at once."""
    m = ca_server
    body = b"not der at all"
    with socket.create_connection(("127.0.0.1", m.http), timeout=5) as s:
        s.sendall(f"POST {OCSP} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\n"
                  f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(4096)
            assert d, got
            got += d
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        s.sendall(body)
        rest = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"\r\n\r\n" not in rest:
            d = s.recv(4096)
            assert d, rest
            rest += d
        assert rest.startswith(b"HTTP/1.1 200 ") and b"application/ocsp-response" in rest
