"""moat serve as an ACME server (RFC 8555) for other machines: Debian's lego (http-01, tls-alpn-01),
certbot (http-01) and uacme (http-01 for an IP identifier, over HTTP/2) obtain, renew and revoke
certificates from moat's CA on loopback, with real validation (moat connects back to the client's own
challenge listener on 127.0.0.1). Then: revocation seen by OCSP and the CRL, renewalInfo (RFC 9773),
external account binding required / accepted / refused, a name outside acme_server.allow, an address
ordered as a DNS name, the hourly order limit; over the wire with a small client of the test's own: a
replayed nonce, a bad signature, a wrong url, a CSR whose names differ from the order; a body over the
limit (413 as a problem document over HTTP/1.1 and HTTP/2), requests cancelled while the service works,
a reload that adds acme_server (refused, with the reason), and moat's own ACME client (certificate:
acme) renewing from moat."""
import base64
import datetime
import json
import os
import shutil
import subprocess

import pytest
from cryptography import x509

from acme_helpers import access_log, acme_site, issued, run, verify
from conftest import Moat, free_port, wait_port
from serve_helpers import config, site, wait_for

LEGO = shutil.which("lego")
CERTBOT = shutil.which("certbot")
UACME = shutil.which("uacme")


def start(m, extra="", days=30):
    m.serve(config(m, [acme_site(m, extra, days)]), wait=(m.https, m.http))


def lego(m, *args, path="lego", email="ops@example.test"):
    return run(LEGO, "--path", m.dir / path, "--server", m.directory, "--email", email, "--accept-tos", *args,
               env={"LEGO_CA_CERTIFICATES": str(m.dir / "root.pem")})


def lego_http(m, *args, domain="localhost", **kw):
    return lego(m, "--domains", domain, "--http", "--http.port", f"127.0.0.1:{m.http01}", *args, **kw)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def refused(r, *words):
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    for w in words:
        assert w in out, f"{w!r} not in:\n{out}"
    return out


def cert_of(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def ocsp_status(m, cert):
    r = run("openssl", "ocsp", "-issuer", m.dir / "root.pem", "-cert", cert, "-CAfile", m.dir / "root.pem",
            "-url", f"http://127.0.0.1:{m.http}/.well-known/moat/ocsp")
    return r.stdout + r.stderr


def crl_serials(m):
    import urllib.request
    der = urllib.request.urlopen(f"http://127.0.0.1:{m.http}/.well-known/moat/root.crl", timeout=10).read()
    return {e.serial_number for e in x509.load_der_x509_crl(der)}


def split_response(text):
    """(head, body) of curl -i output (text mode: lines end in \\n), past any interim 100 Continue."""
    head, _, body = text.partition("\n\n")
    while head.split(" ", 2)[1:2] == ["100"]:
        head, _, body = body.partition("\n\n")
    return head, body


def curl(m, *args):
    return run("curl", "-s", "--cacert", m.dir / "root.pem", "--resolve", f"localhost:{m.https}:127.0.0.1",
               *args)


@pytest.mark.skipif(LEGO is None, reason="needs lego (scripts/deps.sh test)")
def test_lego_http01_obtain_renew_revoke(acme_ca):
    m = acme_ca
    start(m)
    ok(lego_http(m, "run"))
    crt = m.dir / "lego/certificates/localhost.crt"
    verify(m, crt)
    c = cert_of(crt)
    assert c.subject.rfc4514_string() == "CN=localhost"
    assert c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["localhost"]
    # Listed like any certificate moat's CA issued, naming the ACME account that obtained it.
    row = issued(m, c.serial_number)
    assert row["name"].startswith("acme@") and not row["revoked"], row
    # The access log has every ACME request (lego 4.9 speaks HTTP/1.1 with its own TLS settings).
    lines = wait_for(lambda: [ln for ln in access_log(m).splitlines() if "/finalize" in ln], timeout=5)
    assert lines and all(" http/1.1 " in ln for ln in lines), lines
    assert any('"POST /acme/new-order' in ln and " 201 " in ln for ln in access_log(m).splitlines())

    # Renewal: a new certificate (new serial) for the same name.
    ok(lego_http(m, "renew", "--days", "60", "--no-random-sleep"))
    c2 = cert_of(crt)
    assert c2.serial_number != c.serial_number
    verify(m, crt)

    # Revocation by the account: the CA's list, OCSP and the CRL say so.
    m.ok("store", "backup", m.dir / "before-revoke.db")
    ok(lego_http(m, "revoke"))
    assert issued(m, c2.serial_number)["revoked"]
    wait_for(lambda: ": revoked" in ocsp_status(m, crt), timeout=10)
    assert c2.serial_number in crl_serials(m)
    # written as moat ca revoke writes it (audited as the ACME server's), and a restore of the backup from
    # before keeps it revoked
    audit = json.loads(m.ok("--json", "store", "audit").stdout)
    assert any(a["action"] == "acme.revoke" for a in audit), audit
    m.ok("store", "restore", m.dir / "before-revoke.db")
    assert issued(m, c2.serial_number)["revoked"]
    assert wait_for(lambda: c2.serial_number in crl_serials(m), timeout=10)
    assert ": good" in ocsp_status(m, m.dir / "root.pem") or c.serial_number not in crl_serials(m)


@pytest.mark.skipif(LEGO is None, reason="needs lego (scripts/deps.sh test)")
def test_lego_tls_alpn01(acme_ca):
    m = acme_ca
    start(m, "challenges: [tls-alpn-01]")
    ok(lego(m, "--domains", "localhost", "--tls", "--tls.port", f"127.0.0.1:{m.tls01}", "run"))
    verify(m, m.dir / "lego/certificates/localhost.crt")
    # With only tls-alpn-01 offered, an http-01 client finds nothing it can answer.
    out = refused(lego_http(m, "run", path="lego2"))
    assert "http-01" in out or "solver" in out, out


@pytest.mark.skipif(CERTBOT is None, reason="needs certbot (scripts/deps.sh test)")
def test_certbot_http01_obtain_renew_revoke(acme_ca):
    m = acme_ca
    start(m)
    d = m.dir / "certbot"
    common = ["--config-dir", d / "conf", "--work-dir", d / "work", "--logs-dir", d / "logs",
              "--server", m.directory, "--non-interactive"]
    env = {"REQUESTS_CA_BUNDLE": str(m.dir / "root.pem")}
    ok(run(CERTBOT, "certonly", *common, "--standalone", "--http-01-port", m.http01, "--http-01-address",
           "127.0.0.1", "-d", "localhost", "--agree-tos", "-m", "ops@example.test", "--no-eff-email", env=env))
    live = d / "conf/live/localhost"
    verify(m, live / "fullchain.pem")
    first = cert_of(live / "cert.pem").serial_number
    assert any(" http/1.1 " in ln and "/acme/new-order" in ln for ln in access_log(m).splitlines())

    ok(run(CERTBOT, "renew", *common, "--force-renewal", "--no-random-sleep-on-renew", "--standalone", "--http-01-port", m.http01,
           "--http-01-address", "127.0.0.1", env=env))
    second = cert_of(live / "cert.pem").serial_number
    assert second != first

    ok(run(CERTBOT, "revoke", *common, "--cert-path", live / "cert.pem", "--reason", "keycompromise",
           "--no-delete-after-revoke", env=env))
    assert issued(m, second)["revoked"]
    wait_for(lambda: ": revoked" in ocsp_status(m, live / "cert.pem"), timeout=10)


@pytest.mark.skipif(UACME is None or os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs uacme, and root with unshare (uacme trusts only the system CA bundle)")
def test_uacme_http01_over_h2(acme_ca):
    """uacme (libcurl with GnuTLS) speaks HTTP/2 by ALPN: the ACME client path over h2; it wants names
    with dots, so it orders 127.0.0.1 (an ip identifier). It trusts the system bundle only, so it runs in its own mount namespace where that file is moat's root. Its hook
    writes the key authorization where a small http server on 127.0.0.1 serves it."""
    m = acme_ca
    start(m)
    www = m.dir / "uacme-www"
    (www / ".well-known/acme-challenge").mkdir(parents=True)
    hook = m.dir / "hook.sh"
    hook.write_text(f"""#!/bin/sh
# uacme hook: METHOD TYPE IDENT TOKEN AUTH
[ "$2" = http-01 ] || exit 1
case "$1" in
begin) printf '%s' "$5" > {www}/.well-known/acme-challenge/"$4" ;;
*) rm -f {www}/.well-known/acme-challenge/"$4" ;;
esac
""")
    hook.chmod(0o755)
    web = subprocess.Popen(["python3", "-m", "http.server", str(m.http01), "--bind", "127.0.0.1",
                            "--directory", str(www)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(m.http01)
        conf = m.dir / "uacme"
        bundle = "/etc/ssl/certs/ca-certificates.crt"

        def uacme(*args):
            return run("unshare", "-m", "sh", "-c",
                       f'mount --make-rprivate / && mount --bind "$0" {bundle} && exec "$@"',
                       m.dir / "root.pem", UACME, "-v", "-y", "-c", conf, "-a", m.directory, "-h", hook, *args)

        ok(uacme("new", "ops@example.test"))
        ok(uacme("issue", "127.0.0.1"))
        crt = conf / "127.0.0.1/cert.pem"
        verify(m, crt)
        # An IP identifier (RFC 8738): the address is an IP SAN.
        san = cert_of(crt).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"], san
        # The access log is written at most a second later.
        lines = wait_for(lambda: [ln for ln in access_log(m).splitlines() if "/finalize" in ln], timeout=5)
        lines = [ln for ln in access_log(m).splitlines() if "/acme/" in ln]
        assert lines and all(" h2 " in ln for ln in lines), lines[:5]
        first = cert_of(crt).serial_number
        ok(uacme("-f", "issue", "127.0.0.1"))
        second = cert_of(crt).serial_number
        assert second != first
        ok(uacme("revoke", crt))
        assert issued(m, second)["revoked"]
    finally:
        web.terminate()
        web.wait(timeout=10)


@pytest.mark.skipif(LEGO is None, reason="needs lego (scripts/deps.sh test)")
def test_external_account_binding_required_accepted_refused(acme_ca):
    m = acme_ca
    start(m, "eab: required")
    meta = json.loads(curl(m, m.directory).stdout)["meta"]
    assert meta["externalAccountRequired"] is True
    refused(lego_http(m, "run"), "External Account Binding")

    key = json.loads(m.ok("--json", "acme", "eab", "new").stdout)
    assert set(key) == {"kid", "hmac", "created", "account"} and key["kid"].startswith("eab-"), key
    assert key["account"] is None and datetime.datetime.fromisoformat(key["created"].replace("Z", "+00:00"))
    text = m.ok("acme", "eab", "new").stdout
    assert "kid:" in text and "hmac:" in text
    # A wrong HMAC key: refused, naming the key id.
    bad = base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("=")
    refused(lego_http(m, "--eab", "--kid", key["kid"], "--hmac", bad, "run", path="bad"),
            "does not verify", key["kid"])
    # An unknown key id.
    refused(lego_http(m, "--eab", "--kid", "eab-unknown", "--hmac", key["hmac"], "run", path="unknown"),
            "not known")
    ok(lego_http(m, "--eab", "--kid", key["kid"], "--hmac", key["hmac"], "run", path="good"))
    verify(m, m.dir / "good/certificates/localhost.crt")
    # The key enrolled one account: a second account with it is refused.
    refused(lego_http(m, "--eab", "--kid", key["kid"], "--hmac", key["hmac"], "run", path="again",
                      email="other@example.test"), "enrolled an account already")
    assert "eab" in m.ok("acme", "eab", "--help").stdout


@pytest.mark.skipif(LEGO is None, reason="needs lego (scripts/deps.sh test)")
def test_allow_list_and_rate_limit_refusals(acme_ca):
    m = acme_ca
    start(m, "orders_per_hour: 1")
    # A name outside allow: a problem document naming the rule.
    refused(lego_http(m, "run", domain="www.example.org"), "rejectedIdentifier", "acme_server.allow")
    # An address ordered as a DNS name (lego 4.9 does this): refused with what to do instead.
    refused(lego(m, "--domains", "127.0.0.1", "--http", "--http.port", f"127.0.0.1:{m.http01}", "run",
                 path="ip"), "rejectedIdentifier", 'type "ip"')
    ok(lego_http(m, "run", path="first"))
    # A second order of the same account within the hour: rateLimited, saying the limit.
    refused(lego_http(m, "renew", "--days", "60", "--no-random-sleep", path="first"), "rateLimited", "limit 1")


def test_body_over_the_limit_is_a_problem_document(acme_ca):
    m = acme_ca
    start(m)
    big = m.dir / "big.json"
    big.write_text("{" + " " * 70000 + "}")
    for proto in ("--http1.1", "--http2"):
        r = curl(m, proto, "-i", "-X", "POST", "-H", "Content-Type: application/jose+json", "--data-binary",
                 f"@{big}", f"https://localhost:{m.https}/acme/new-order")
        head, body = split_response(r.stdout)
        assert " 413" in head.splitlines()[0], r.stdout[:300]
        assert "application/problem+json" in head.lower(), head
        doc = json.loads(body)
        assert doc["type"] == "urn:ietf:params:acme:error:malformed" and doc["status"] == 413, doc
        assert "65536" in doc["detail"], doc
    # A small bad request over HTTP/2 gets its problem document and a fresh nonce.
    r = curl(m, "--http2", "-i", "-X", "POST", "-H", "Content-Type: application/jose+json", "--data", "{}",
             f"https://localhost:{m.https}/acme/new-order")
    assert r.stdout.startswith("HTTP/2 400"), r.stdout[:300]
    assert "replay-nonce:" in r.stdout.lower() and "urn:ietf:params:acme:error:malformed" in r.stdout


class Client:
    """A small ACME client (ES256 JWS, RFC 8555 6.2) that sends what a test asks, wrong things too."""

    def __init__(self, m):
        import http.client
        import ssl
        from cryptography.hazmat.primitives.asymmetric import ec
        self.m, self.http = m, http.client
        self.ctx = ssl.create_default_context(cafile=str(m.dir / "root.pem"))
        self.base = f"https://127.0.0.1:{m.https}/acme"
        self.key, self.other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        self.kid = None

    @staticmethod
    def b64(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    def jwk(self, key):
        n = key.public_key().public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": self.b64(n.x.to_bytes(32, "big")),
                "y": self.b64(n.y.to_bytes(32, "big"))}

    def thumbprint(self):
        import hashlib
        text = json.dumps(self.jwk(self.key), sort_keys=True, separators=(",", ":")).encode()
        return self.b64(hashlib.sha256(text).digest())

    def request(self, method, url, body=None):
        c = self.http.HTTPSConnection("127.0.0.1", self.m.https, context=self.ctx, timeout=15)
        c.request(method, url, body=body, headers={"Content-Type": "application/jose+json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        doc = json.loads(data) if data and "json" in (r.getheader("Content-Type") or "") else data
        return r.status, r, doc

    def nonce(self):
        return self.request("HEAD", self.base + "/new-nonce")[1].getheader("Replay-Nonce")

    def jws(self, url, payload, nonce=None, key=None, use_jwk=False):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils
        protected = {"alg": "ES256", "nonce": nonce or self.nonce(), "url": url}
        if self.kid and not use_jwk:
            protected["kid"] = self.kid
        else:
            protected["jwk"] = self.jwk(self.key)
        p64 = self.b64(json.dumps(protected).encode())
        pl64 = "" if payload is None else self.b64(json.dumps(payload).encode())
        r, s = utils.decode_dss_signature((key or self.key).sign(f"{p64}.{pl64}".encode(),
                                                                 ec.ECDSA(hashes.SHA256())))
        return json.dumps({"protected": p64, "payload": pl64,
                           "signature": self.b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})

    def post(self, url, payload, to=None, **kw):
        return self.request("POST", to or url, self.jws(url, payload, **kw))


def problem(resp, status, kind):
    st, r, doc = resp
    assert st == status and r.getheader("Content-Type") == "application/problem+json", (st, doc)
    assert doc["type"] == f"urn:ietf:params:acme:error:{kind}" and r.getheader("Replay-Nonce"), doc
    return doc["detail"]


def test_refusals_over_the_wire_and_a_csr_that_differs_from_the_order(acme_ca):
    """A replayed nonce, a bad signature, a wrong url, then an order validated over http-01 whose CSR names
    another name too: each refused with its problem document; the right CSR then gets the chain."""
    import http.server
    import threading

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    m = acme_ca
    start(m)
    a = Client(m)
    st, r, doc = a.post(a.base + "/new-account", {"termsOfServiceAgreed": True})
    assert st == 201 and doc["status"] == "valid", doc
    a.kid = r.getheader("Location")
    order_url = a.base + "/new-order"
    order = {"identifiers": [{"type": "dns", "value": "localhost"}]}
    n = a.nonce()
    body = a.jws(order_url, order, nonce=n)
    assert a.request("POST", order_url, body)[0] == 201
    problem(a.request("POST", order_url, body), 400, "badNonce")
    assert "does not verify" in problem(a.post(order_url, order, key=a.other), 400, "malformed")
    detail = problem(a.post(a.base + "/new-account", order, to=order_url), 403, "unauthorized")
    assert "is not the URL this request was sent to" in detail, detail

    st, r, doc = a.post(order_url, order)
    assert st == 201, doc
    authz_url, finalize = doc["authorizations"][0], doc["finalize"]
    order_loc = r.getheader("Location")
    authz = a.post(authz_url, None)[2]
    ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
    keyauth = f"{ch['token']}.{a.thumbprint()}".encode()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/.well-known/acme-challenge/" + ch["token"]
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(keyauth)

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", m.http01), Answer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert a.post(ch["url"], {})[0] == 200
        assert wait_for(lambda: a.post(authz_url, None)[2]["status"] == "valid", timeout=30, step=0.3)
    finally:
        srv.shutdown()
        srv.server_close()

    def csr(names):
        k = ec.generate_private_key(ec.SECP256R1())
        req = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])).add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False).sign(k, hashes.SHA256())
        return a.b64(req.public_bytes(serialization.Encoding.DER))

    detail = problem(a.post(finalize, {"csr": csr(["localhost", "other.localhost"])}), 400, "badCSR")
    assert "other.localhost" in detail and "identifiers" in detail, detail
    st, r, doc = a.post(finalize, {"csr": csr(["localhost"])})
    assert st == 200 and doc["status"] in ("valid", "processing"), doc
    doc = wait_for(lambda: (lambda d: d if d["status"] == "valid" else None)(a.post(order_loc, None)[2]),
                   timeout=10, step=0.2)
    st, r, pem = a.post(doc["certificate"], None)
    assert st == 200 and r.getheader("Content-Type") == "application/pem-certificate-chain", st
    (m.dir / "wire.pem").write_bytes(pem)
    verify(m, m.dir / "wire.pem")


def test_requests_cancelled_while_the_service_works(acme_ca):
    """ACME requests whose HTTP/2 stream is reset, or whose HTTP/1.1 connection goes, while they wait for
    the service: the answers are dropped (no leak: LeakSanitizer reads serve.out at the stop), the
    connection and the server go on."""
    import socket
    import ssl

    from h2_helpers import CANCEL, H2
    from hyperframe.frame import DataFrame, RstStreamFrame

    m = acme_ca
    start(m)
    body = b'{"protected":"e30","payload":"","signature":""}'
    h = H2(m.https, m.dir / "root.pem")
    try:
        for _ in range(50):
            sid, f = h.headers("/acme/new-order", method="POST", end_stream=False,
                               extra=[("content-type", "application/jose+json"),
                                      ("content-length", str(len(body)))])
            d = DataFrame(sid, body)
            d.flags.add("END_STREAM")
            h.send(f, d, RstStreamFrame(sid, error_code=CANCEL))
        sid = h.get("/acme/directory")
        status, hdrs, data, _ = h.response(sid)
        assert status == 200 and b"newOrder" in data, (status, data)
    finally:
        h.close()
    ctx = ssl.create_default_context(cafile=str(m.dir / "root.pem"))
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", m.https), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as t:
                t.sendall(b"POST /acme/new-order HTTP/1.1\r\nHost: localhost:%d\r\n"
                          b"Content-Type: application/jose+json\r\nContent-Length: %d\r\n\r\n%s"
                          % (m.https, len(body), body))
    r = curl(m, "-s", "-o", "/dev/null", "-w", "%{http_code}", m.directory)
    assert r.stdout == "200", r.stdout + r.stderr


@pytest.mark.skipif(LEGO is None, reason="needs lego (scripts/deps.sh test)")
def test_renewal_info(acme_ca):
    """With the shortest lifetime (days: 1): the certificate lives one day, the window is inside it."""
    m = acme_ca
    start(m, days=1)
    ok(lego_http(m, "run"))
    c = cert_of(m.dir / "lego/certificates/localhost.crt")
    assert c.not_valid_after - c.not_valid_before <= datetime.timedelta(days=1, hours=1), c.not_valid_after
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = c.serial_number.to_bytes((c.serial_number.bit_length() + 8) // 8, "big")

    def b64(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")

    url = f"https://localhost:{m.https}/acme/renewal-info/{b64(aki)}.{b64(serial)}"
    r = curl(m, "-i", url)
    head, body = split_response(r.stdout)
    assert " 200" in head.splitlines()[0], r.stdout[:400]
    assert "retry-after:" in head.lower(), head
    w = json.loads(body)["suggestedWindow"]
    start_t = datetime.datetime.fromisoformat(w["start"].replace("Z", "+00:00"))
    end_t = datetime.datetime.fromisoformat(w["end"].replace("Z", "+00:00"))
    nb, na = c.not_valid_before.replace(tzinfo=start_t.tzinfo), c.not_valid_after.replace(tzinfo=start_t.tzinfo)
    assert nb < start_t < end_t < na, (w, nb, na)
    # Revoked: the window is now (renew at once).
    ok(lego_http(m, "revoke"))
    w = json.loads(curl(m, url).stdout)["suggestedWindow"]
    assert datetime.datetime.fromisoformat(w["start"].replace("Z", "+00:00")) <= \
        datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1), w


def test_reload_that_adds_acme_server_is_refused(acme_ca):
    m = acme_ca
    plain = config(m, [site(["localhost"], m.https, default=True, http_port=m.http, extra="certificate: www")])
    m.serve(plain, wait=(m.https,))
    assert wait_for(lambda: (m.dir / "moat.db.pid").exists(), timeout=10)
    cfg = m.dir / "moat.yaml"
    cfg.write_text(config(m, [acme_site(m)]))
    r = m.fails("reload", "-c", cfg)
    assert "acme_server" in r.stderr and "restart moat" in r.stderr, r.stderr
    # Still the old generation: no ACME directory.
    assert "404" in curl(m, "-o", "/dev/null", "-w", "%{http_code}", m.directory).stdout


def moat_client_config(m, client, port, challenges="tls-alpn-01", extra=""):
    """moat.yaml of a second moat whose one site (localhost on 127.0.0.1:<port>) gets its certificate
    from <m>'s ACME server, trusting <m>'s root (added as moat-root)."""
    acme_extra = "".join("  " + line + "\n" for line in extra.strip().splitlines())
    return f"""store: {client.store}
log: {{ error: {client.dir}/error.log }}
acme:
  directory: {m.directory}
  email: ops@example.test
  accept_terms: true
  trust: [moat-root]
  challenges: [{challenges}]
{acme_extra}sites:
  - hosts: [localhost]
    listen: ["127.0.0.1:{port}"]
    certificate: acme
"""


def acme_cert(client):
    """The certificate the client's ACME site holds, or None before the first one."""
    r = client.run("cert", "export", "acme.localhost")
    return r.stdout if r.returncode == 0 and "BEGIN CERTIFICATE" in r.stdout else None


def test_moat_renews_from_moat(acme_ca, tmp_path_factory):
    """A second moat, certificate: acme with tls-alpn-01 on its own https listener, enrolls with the first
    one and renews from it."""
    m = acme_ca
    start(m, "challenges: [tls-alpn-01]")
    client = Moat(tmp_path_factory.mktemp("client"))
    try:
        client.ok("trust", "add", m.dir / "root.pem", "--name", "moat-root")
        client.serve(moat_client_config(m, client, m.tls01), wait=(m.tls01,))

        def current():
            return acme_cert(client)

        first = wait_for(current, timeout=60)
        assert first, (client.dir / "error.log").read_text(errors="replace")[-2000:]
        c1 = x509.load_pem_x509_certificate(first.encode())
        assert c1.issuer.rfc4514_string() == "CN=ACME Test Root"
        r = client.ok("-c", client.dir / "moat.yaml", "acme", "renew", "acme.localhost", timeout=120)
        assert "renewed" in r.stdout, r.stdout
        c2 = x509.load_pem_x509_certificate(current().encode())
        assert c2.serial_number != c1.serial_number and c2.issuer == c1.issuer
        assert issued(m, c2.serial_number)["name"].startswith("acme@")
    finally:
        problems = client.stop_all()
    assert not problems, problems


def test_moat_client_asks_for_a_profile(acme_ca, tmp_path_factory):
    """acme.profile: moat's client names the profile in its order; moat's server issues the profile it
    offers and refuses one it does not, and the refusal reaches the client's user in words."""
    m = acme_ca
    start(m, "challenges: [tls-alpn-01]")
    client = Moat(tmp_path_factory.mktemp("client"))

    def conf(profile):
        return moat_client_config(m, client, m.tls01, extra=f"profile: {profile}")

    try:
        client.ok("trust", "add", m.dir / "root.pem", "--name", "moat-root")
        client.serve(conf("server"), wait=(m.tls01,))

        def current():
            return acme_cert(client)

        first = wait_for(current, timeout=60)
        assert first, (client.dir / "error.log").read_text(errors="replace")[-2000:]
        c1 = x509.load_pem_x509_certificate(first.encode())
        eku = c1.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
        # the same account asks for a profile the server does not offer: refused, the certificate stays
        (client.dir / "moat.yaml").write_text(conf("shortlived"))
        client.ok("-c", client.dir / "moat.yaml", "reload")
        r = client.run("-c", client.dir / "moat.yaml", "acme", "renew", "acme.localhost", timeout=120)
        assert r.returncode != 0, r.stdout
        assert 'profile "shortlived" is not offered' in r.stdout + r.stderr, r.stdout + r.stderr
        assert current() == first
    finally:
        problems = client.stop_all()
    assert not problems, problems


def test_moat_client_follows_moat_servers_ari_window_and_rate_limit(acme_ca, tmp_path_factory):
    """moat's client against moat's server: the next renewal comes from the server's renewalInfo window
    (inside the certificate's life, not the 1/3-left rule), and a rateLimited refusal keeps the
    certificate, waits at least an hour, and doctor names the cause."""
    m = acme_ca
    start(m, "challenges: [tls-alpn-01]\norders_per_hour: 1")
    client = Moat(tmp_path_factory.mktemp("client"))
    cfg = moat_client_config(m, client, m.tls01)
    try:
        client.ok("trust", "add", m.dir / "root.pem", "--name", "moat-root")
        client.serve(cfg, wait=(m.tls01,))
        yaml = client.dir / "moat.yaml"

        def status():
            return json.loads(client.ok("acme", "status", "--json", "-c", yaml).stdout)[0]

        st = wait_for(lambda: (lambda s: s if s["why"] == "the CA's renewal window (ARI)" else None)(status()),
                      timeout=60)
        assert st, status()
        first = client.ok("cert", "export", "acme.localhost").stdout
        cert = x509.load_pem_x509_certificate(first.encode())
        utc = datetime.timezone.utc
        nb, na = cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)
        nxt = datetime.datetime.fromisoformat(st["next"].replace("Z", "+00:00"))
        assert nb < nxt < na, (nb, nxt, na)
        assert wait_for(lambda: "/acme/renewal-info/" in access_log(m) or "renewalInfo" in access_log(m),
                        timeout=5), access_log(m)
        # a second order within the hour: refused by the server's limit, the certificate stays
        r = client.run("-c", yaml, "acme", "renew", "acme.localhost", timeout=120)
        assert r.returncode != 0, r.stdout
        st = status()
        assert "rateLimited" in st["last_error"], st
        # failing, and not retried before the hour (nor before the window, when that is later)
        assert st["state"] == "failing" and st["failures"] >= 1, st
        last = datetime.datetime.fromisoformat(st["last_try"].replace("Z", "+00:00"))
        nxt = datetime.datetime.fromisoformat(st["next"].replace("Z", "+00:00"))
        assert (nxt - last).total_seconds() >= 3600 - 5, st
        assert client.ok("cert", "export", "acme.localhost").stdout == first
        doc = client.run("doctor", "-c", yaml)
        assert "acme-renewal-failing" in doc.stdout and "rateLimited" in doc.stdout, doc.stdout
    finally:
        problems = client.stop_all()
    assert not problems, problems


def test_dns01_validation_asks_the_configured_resolver(acme_ca, tmp_path_factory):
    """dns-01 (RFC 8555 8.4): moat's server looks the TXT record up at acme_server.dns_resolver (here
    pebble-challtestsrv on loopback); moat's client sets the record through its dns_hook."""
    from acme_helpers import CHALLTESTSRV
    from test_acme_client import DNS_HOOK
    m = acme_ca
    dns_port, mgmt_port = free_port(), free_port()
    dns = subprocess.Popen([CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
                            f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                            "-management", f"127.0.0.1:{mgmt_port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Moat(tmp_path_factory.mktemp("client"))
    try:
        wait_port(mgmt_port)
        start(m, f"challenges: [dns-01]\ndns_resolver: '127.0.0.1:{dns_port}'")
        hook, hook_log = client.dir / "dns-hook", client.dir / "hook.log"
        hook.write_text(DNS_HOOK % {"port": mgmt_port, "log": hook_log})
        hook.chmod(0o755)
        client.ok("trust", "add", m.dir / "root.pem", "--name", "moat-root")
        port = free_port()
        client.serve(moat_client_config(m, client, port, challenges="dns-01", extra=f"dns_hook: {hook}"),
                     wait=(port,))

        def current():
            return acme_cert(client)

        pem = wait_for(current, timeout=60)
        assert pem, (client.dir / "error.log").read_text(errors="replace")[-2000:]
        assert x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string() == "CN=ACME Test Root"
        calls = hook_log.read_text().splitlines()
        assert [c.split()[:2] for c in calls][:1] == [["set", "_acme-challenge.localhost."]], calls
    finally:
        problems = client.stop_all()
        dns.terminate()
        dns.wait(timeout=10)
    assert not problems, problems
