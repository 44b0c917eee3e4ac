"""HTTPS upstreams through the real binary: moat in front of a Python ssl application on loopback whose
certificate moat's CA issued (or an outside CA moat does not trust), reached with curl over HTTP/1.1 and
HTTP/2: the certificate verified for the name, 502 tls-verify when it is not, mutual TLS with a store key's
certificate (and tls-handshake without it), kept connections and resumed sessions, large bodies both ways,
configuration errors with their place, hot reload, serve --check and doctor."""
import hashlib
import json
import os
import re
import ssl

import pytest

from proxy_helpers import curl, serve
from proxy_upstream import Upstream
from serve_helpers import CA, config, free_port, openssl, site, tls_connect, wait_for


def issued(moat, name, *sans, profile="server"):
    """Key <name> and its certificate from moat's CA, exported: (certificate + chain PEM, key PEM)."""
    args = [x for s in sans for x in ("--san", s)]
    moat.ok("ca", "issue", name, "--cn", name, *args, "--profile", profile,
            *(["--exportable"] if profile == "server" else []))
    pw = moat.dir / "pw.txt"
    pw.write_text("pw\n")
    p12 = moat.dir / f"{name}.p12"
    moat.ok("key", "export", name, "--out", p12, "--password-file", pw, "--force")
    key, crt = moat.dir / f"{name}.key", moat.dir / f"{name}.crt"
    key.write_bytes(openssl("pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", "pass:pw").stdout)
    crt.write_bytes(openssl("pkcs12", "-in", p12, "-clcerts", "-nokeys", "-passin", "pass:pw").stdout +
                    openssl("pkcs12", "-in", p12, "-cacerts", "-nokeys", "-passin", "pass:pw").stdout)
    return crt, key


def server_ctx(crt, key, client_ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return ctx


@pytest.fixture
def tls_app(moat, ca):
    crt, key = issued(moat, "upstream", "DNS:localhost", "IP:127.0.0.1")
    ups = Upstream(tls=server_ctx(crt, key))
    yield ups
    ups.stop()


def error_log(moat):
    p = moat.dir / "error.log"
    return p.read_text() if p.exists() else ""


def get_many(port, ca, paths):
    """The answers to <paths> on one client connection (so one worker, one pool): their echoes."""
    s = tls_connect(port, sni="localhost", cafile=ca, timeout=20)
    out = []
    for p in paths:
        s.sendall(f"GET {p} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(rest) < n:
            rest += s.recv(65536)
        out.append(json.loads(rest))
    s.close()
    return out


def test_https_upstream_both_protocols(moat, ca, tls_app):
    port = free_port()
    # a host name: sent as SNI and checked; the ::1 localhost also has refuses and is left out
    serve(moat, [f"localhost:{tls_app.port}"], port, upstream_extra="tls: {trust: [moat-ca]}")
    for h2 in (False, True):
        st, hd, body, err = curl(port, "/echo?x=1", http2=h2, cafile=ca)
        assert st == 200, (err, body)
        e = json.loads(body)
        assert e["path"] == "/echo?x=1" and e["tls"]["version"] == "TLSv1.3"
        assert e["tls"]["sni"] == "localhost" and e["tls"]["client_cert_sha256"] is None
    moat.stop_all()
    # an IP address: checked against the certificate's IP SAN (no SNI); trust: by default moat's CA
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port, upstream_extra="tls: {}")
    st, _, body, err = curl(port, "/echo", http2=True, cafile=ca)
    assert st == 200, err
    assert json.loads(body)["tls"]["sni"] is None
    assert "upstream_error" not in (moat.dir / "access.log").read_text()


def test_wrong_name_untrusted_ca_and_reload(moat, ca, tls_app, tmp_path):
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port,
          upstream_extra="tls: {trust: [moat-ca], server_name: wrong.example}")
    for h2 in (False, True):
        st, hd, body, _ = curl(port, "/echo", http2=h2, cafile=ca)
        assert st == 502 and hd["x-moat-upstream"] == "tls-verify", (st, hd)
        assert b"TLS certificate" in body and f"127.0.0.1:{tls_app.port}".encode() in body
    assert tls_app.seen == []
    assert wait_for(lambda: "TLS: its certificate is refused: hostname mismatch (the name checked: "
                            "wrong.example; tls.trust: moat-ca)" in error_log(moat))
    assert f"upstream app 127.0.0.1:{tls_app.port}: TLS:" in error_log(moat)
    # a reload with the right name: the next requests go through (the contexts are the new generation's)
    ups = f"upstreams:\n  app:\n    servers: ['127.0.0.1:{tls_app.port}']\n    tls: {{server_name: localhost}}\n"
    loc = "locations:\n  - path: /\n    proxy: app\n"
    (moat.dir / "moat.yaml").write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
    moat.ok("reload", "-c", moat.dir / "moat.yaml")
    assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 200, timeout=10)
    assert json.loads(curl(port, "/echo", cafile=ca)[2])["tls"]["sni"] == "localhost"
    moat.stop_all()

    # a certificate from a CA moat was not told to trust
    other = CA(tmp_path, name="Other Root")
    key, csr, crt = tmp_path / "o.key", tmp_path / "o.csr", tmp_path / "o.crt"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=localhost")
    other.sign(csr, crt, "DNS:localhost,IP:127.0.0.1")
    stranger = Upstream(tls=server_ctx(crt, key))
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{stranger.port}"], port, upstream_extra="tls: {trust: [moat-ca]}")
        for h2 in (False, True):
            st, hd, _, _ = curl(port, "/echo", http2=h2, cafile=ca)
            assert st == 502 and hd["x-moat-upstream"] == "tls-verify", (st, hd)
        assert stranger.seen == []
        assert wait_for(lambda: "TLS: its certificate is refused: unable to get local issuer certificate" in
                        error_log(moat)), error_log(moat)
        log = (moat.dir / "access.log")
        assert wait_for(lambda: log.read_text().count("upstream_error=tls-verify") >= 2)
    finally:
        stranger.stop()


def test_mutual_tls(moat, ca, tmp_path):
    crt, key = issued(moat, "upstream", "DNS:localhost", "IP:127.0.0.1")
    root = moat.dir / "root.pem"
    root.write_text(moat.ok("ca", "cert", "--root").stdout)
    moat.ok("ca", "issue", "to-app", "--cn", "moat proxy", "--profile", "client")
    want = hashlib.sha256(ssl.PEM_cert_to_DER_cert(moat.ok("cert", "export", "to-app").stdout)).hexdigest()
    app = Upstream(tls=server_ctx(crt, key, client_ca=root))
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{app.port}"], port, upstream_extra="tls: {trust: [moat-ca], client_key: to-app}")
        for h2 in (False, True):
            st, _, body, err = curl(port, "/echo", http2=h2, cafile=ca)
            assert st == 200, (err, body)
            assert json.loads(body)["tls"]["client_cert_sha256"] == want
        moat.stop_all()
        # without client_key the application refuses moat, and nothing reaches it
        n = len(app.seen)
        port = free_port()
        serve(moat, [f"127.0.0.1:{app.port}"], port, upstream_extra="tls: {trust: [moat-ca]}")
        for h2 in (False, True):
            st, hd, body, _ = curl(port, "/echo", http2=h2, cafile=ca)
            assert st == 502 and hd["x-moat-upstream"] == "tls-handshake", (st, hd, body)
            assert b"client certificate" in body
        assert len(app.seen) == n
        assert wait_for(lambda: "TLS: the server said: certificate required (before any answer"
                        in error_log(moat)), error_log(moat)
        assert any("certificate" in e for e in app.tls_errors), app.tls_errors
    finally:
        app.stop()


def test_pool_reuse_and_session_resumption(moat, ca, tls_app):
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port, upstream_extra="tls: {trust: [moat-ca]}")
    echoes = get_many(port, ca, ["/echo"] * 6)
    # one TLS connection to the application carried every request
    assert len({e["peer_port"] for e in echoes}) == 1, [e["peer_port"] for e in echoes]
    st, _, body, _ = curl(port, "/echo", http2=True, cafile=ca)
    assert st == 200 and json.loads(body)["peer_port"] == echoes[0]["peer_port"]
    moat.stop_all()
    # nothing kept: each request a new connection, each after the first resuming the session
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port, upstream_extra="keepalive: 0\ntls: {trust: [moat-ca]}")
    echoes = get_many(port, ca, ["/echo"] * 4)
    assert len({e["peer_port"] for e in echoes}) == 4
    assert [e["tls"]["resumed"] for e in echoes] == [False, True, True, True]


def test_two_upstreams_with_other_tls_settings_on_one_address_keep_their_connections(moat, ca, tls_app):
    """Pools are kept per address and TLS context: two upstreams on one address, one checking the IP address
    and one the name localhost (sent as SNI), each keep their own connection; before, each request closed
    the other upstream's kept connection and opened a new one."""
    port = free_port()
    addr = f"127.0.0.1:{tls_app.port}"
    ups = (f"upstreams:\n  by_ip:\n    servers: ['{addr}']\n    tls: {{trust: [moat-ca]}}\n"
           f"  by_name:\n    servers: ['{addr}']\n    tls: {{trust: [moat-ca], server_name: localhost}}\n")
    loc = "locations:\n  - path: /ip/\n    proxy: by_ip\n  - path: /name/\n    proxy: by_name\n"
    moat.serve(config(moat, [site(["localhost"], port, extra=loc)], extra=ups), wait=[port])
    echoes = get_many(port, ca, ["/ip/echo", "/name/echo"] * 4)
    by_ip = [e for e in echoes if e["path"] == "/ip/echo"]
    by_name = [e for e in echoes if e["path"] == "/name/echo"]
    assert len(by_ip) == 4 and len(by_name) == 4
    assert {e["tls"]["sni"] for e in by_ip} == {None} and {e["tls"]["sni"] for e in by_name} == {"localhost"}
    # two connections accepted by the application, one per upstream, each carrying its four requests
    assert len({e["peer_port"] for e in by_ip}) == 1, [e["peer_port"] for e in echoes]
    assert len({e["peer_port"] for e in by_name}) == 1, [e["peer_port"] for e in echoes]
    assert by_ip[0]["peer_port"] != by_name[0]["peer_port"]
    assert [e["tls"]["resumed"] for e in echoes[:2]] == [False, False]


def test_large_bodies_both_ways_over_tls(moat, ca, tls_app, tmp_path):
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port, upstream_extra="tls: {trust: [moat-ca]}",
          limits="body_bytes: 100000000")
    blob = tmp_path / "upload.bin"
    data = os.urandom(16 << 20)
    blob.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    for h2 in (False, True):
        for extra in ((), ("-H", "Transfer-Encoding: chunked")):
            st, _, body, err = curl(port, "/upload", "--data-binary", f"@{blob}", *extra, http2=h2, cafile=ca,
                                    timeout=60)
            assert st == 200, err
            e = json.loads(body)
            assert e["body_len"] == len(data) and e["body_sha256"] == want
        for chunked in ("0", "1"):
            st, _, body, err = curl(port, f"/big?n={32 << 20}&chunked={chunked}", http2=h2, cafile=ca, timeout=60)
            assert st == 200, err
            assert len(body) == 32 << 20 and body == (bytes(range(256)) * 256) * 512


def test_unknown_anchor_and_key_are_config_errors(moat, ca):
    port = free_port()
    loc = "locations:\n  - path: /\n    proxy: app\n"
    cases = (("tls:\n      trust: [moat-ca, corp-root]\n", 8, 24, "upstreams.app.tls.trust: \"corp-root\": no such "
              "trust anchor in the store"),
             ("tls: {client_key: nobody}\n", 7, 23, "upstreams.app.tls.client_key: \"nobody\": no key of that name "
              "with a certificate in the store"))
    for tls, line, col, want in cases:
        ups = "upstreams:\n  app:\n    servers: ['127.0.0.1:3000']\n    " + tls
        bad = moat.dir / "bad.yaml"
        bad.write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
        r = moat.run("serve", "--check", "-c", bad)
        assert r.returncode != 0
        assert f"{bad}:{line}:{col}: {want}" in r.stderr, r.stderr
    # a unix socket has no host name to check
    ups = "upstreams:\n  app:\n    servers: ['unix:/run/app.sock']\n    tls: {}\n"
    bad.write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
    r = moat.run("serve", "--check", "-c", bad)
    assert r.returncode != 0 and "a unix: server has no host name for TLS to check" in r.stderr, r.stderr


def test_serve_check_and_doctor_make_the_handshake(moat, ca, tls_app):
    port = free_port()
    loc = "locations:\n  - path: /\n    proxy: app\n"
    cfg = moat.dir / "moat.yaml"

    def write(tls):
        ups = f"upstreams:\n  app:\n    servers: ['127.0.0.1:{tls_app.port}']\n    tls: {tls}\n"
        cfg.write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))

    write("{server_name: localhost}")
    out = moat.ok("serve", "--check", "-c", cfg).stdout
    assert (f"upstream app: server 127.0.0.1:{tls_app.port} answers (over TLS, its certificate verified for "
            "localhost)") in out, out
    j = json.dumps(json.loads(moat.run("doctor", "-c", cfg, "--json").stdout))
    assert "verified for localhost" in j and "upstream-tls" not in j
    write("{server_name: wrong.example}")
    out = moat.ok("serve", "--check", "-c", cfg).stdout
    assert (f"warning: upstream app: server 127.0.0.1:{tls_app.port}: TLS: its certificate is refused: hostname "
            "mismatch (the name checked: wrong.example; tls.trust: moat-ca + trust store)") in out, out
    r = moat.run("doctor", "-c", cfg)
    assert "upstream-tls" in r.stdout + r.stderr and "hostname mismatch" in r.stdout + r.stderr
    assert tls_app.seen == []  # the checks send no request


def test_serve_check_sees_a_refused_client_certificate(moat, ca):
    crt, key = issued(moat, "upstream", "DNS:localhost", "IP:127.0.0.1")
    root = moat.dir / "root.pem"
    root.write_text(moat.ok("ca", "cert", "--root").stdout)
    moat.ok("ca", "issue", "to-app", "--cn", "moat proxy", "--profile", "client")
    app = Upstream(tls=server_ctx(crt, key, client_ca=root))
    try:
        loc = "locations:\n  - path: /\n    proxy: app\n"
        cfg = moat.dir / "moat.yaml"
        for tls, want in (("{client_key: to-app}", "answers (over TLS"),
                          ("{}", "TLS: the handshake failed: the server said: certificate required")):
            ups = f"upstreams:\n  app:\n    servers: ['127.0.0.1:{app.port}']\n    tls: {tls}\n"
            cfg.write_text(config(moat, [site(["localhost"], free_port(), extra=loc)], extra=ups))
            out = moat.ok("serve", "--check", "-c", cfg).stdout
            assert want in out, out
    finally:
        app.stop()


def test_health_checks_speak_tls_to_an_https_upstream(moat, ca, tls_app, tmp_path):
    """A health check goes the way requests go: TLS, verified the same way. A plain-HTTP check of an
    HTTPS server would fail and take every server out of service."""
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port,
          upstream_extra="tls: {trust: [moat-ca], server_name: localhost}\n"
                         "health: {path: /healthz, interval_s: 1}")
    assert wait_for(lambda: tls_app.health_checks >= 2, timeout=10)
    st, hd, body, err = curl(port, "/echo", cafile=ca)
    assert st == 200, (err, hd, body)
    assert "failed its health check" not in error_log(moat)
    tls_app.set_healthy(False)
    assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 503, timeout=10)
    assert curl(port, "/echo", cafile=ca)[1]["x-moat-upstream"] == "no-healthy-server"
    assert "failed its health check (/healthz: status 503)" in error_log(moat)
    tls_app.set_healthy(True)
    assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 200, timeout=10)
    moat.stop_all()

    # a check that fails verification says so, the same reason a request gets
    port = free_port()
    serve(moat, [f"127.0.0.1:{tls_app.port}"], port,
          upstream_extra="tls: {server_name: wrong.example}\nhealth: {path: /healthz, interval_s: 1}")
    assert wait_for(lambda: "failed its health check (/healthz: tls-verify)" in error_log(moat), timeout=10)
    assert curl(port, "/echo", cafile=ca)[1]["x-moat-upstream"] == "no-healthy-server"
