"""The reverse proxy through the real binary: moat in front of a small Python application (and a
WebSocket server) on loopback, reached with curl over HTTP/1.1 and HTTP/2 and with raw sockets: the
request and its fields as the application sees them, client certificates handed on (RFC 9440), bodies
both ways, chunked responses, an upstream that is down, slow, hanging or answering garbage, load
balancing, and smuggling probes that must reach the application as exactly one request each."""
import base64
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from proxy_helpers import curl, serve
from proxy_upstream import Upstream
from serve_helpers import config, free_port, site, tls_connect, wait_for


def read_all(s):
    """Everything the server sends on <s> until it closes (or stops for the socket's timeout)."""
    buf = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except (socket.timeout, ssl.SSLError, ConnectionError):
        pass
    return buf


def fields(echo):
    """The application's view of the request's header fields: lowercase name -> list of values."""
    d = {}
    for k, v in echo["headers"]:
        d.setdefault(k.lower(), []).append(v)
    return d


@pytest.fixture
def app():
    ups = Upstream()
    yield ups
    ups.stop()


def test_get_both_protocols_and_forwarded_fields(moat, app, ca):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port)
    for h2 in (False, True):
        st, hd, body, err = curl(port, "/echo?x=1", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "Forwarded: for=6.6.6.6",
                                 "-H", "Client-Cert: :AAAA:", "-H", "X-Moat-Client-Cert: ok", "-H", "X-Custom: yes",
                                 http2=h2, cafile=ca)
        assert st == 200, err
        e = json.loads(body)
        f = fields(e)
        assert e["method"] == "GET" and e["path"] == "/echo?x=1"
        assert f["host"] == [f"localhost:{port}"]
        assert f["x-forwarded-for"] == ["127.0.0.1"]  # the client's value replaced: not a trusted proxy
        assert f["x-forwarded-proto"] == ["https"]
        assert f["x-forwarded-host"] == [f"localhost:{port}"]
        assert f["forwarded"] == [f'for=127.0.0.1;host="localhost:{port}";proto=https']
        assert "client-cert" not in f and "x-moat-client-cert" not in f
        assert f["x-custom"] == ["yes"]
    log = (moat.dir / "access.log")
    wait_for(lambda: log.exists() and log.read_text().count("upstream=") >= 2)
    lines = [ln for ln in log.read_text().splitlines() if "/echo" in ln]
    assert any(" h2 " in ln for ln in lines) and any(" http/1.1 " in ln for ln in lines)
    assert all(re.search(rf"upstream=127\.0\.0\.1:{app.port} ustatus=200 utime=\d+\.\d+ms", ln) for ln in lines)


def test_trusted_proxy_fields_are_extended(moat, app, ca):
    """From a peer in trusted_proxies, Forwarded and X-Forwarded-* are kept: the lists get the peer's address
    after every value the proxy sent, Proto and Host stay as it said."""
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, extra="trusted_proxies: ['127.0.0.0/8']\n")
    for h2 in (False, True):
        st, _, body, err = curl(port, "/echo", "-H", "X-Forwarded-For: 6.6.6.6", "-H", "X-Forwarded-For: 7.7.7.7",
                                "-H", "Forwarded: for=6.6.6.6", "-H", "X-Forwarded-Proto: http",
                                "-H", "X-Forwarded-Host: app.example", http2=h2, cafile=ca)
        assert st == 200, err
        f = fields(json.loads(body))
        assert f["x-forwarded-for"] == ["6.6.6.6, 7.7.7.7, 127.0.0.1"]
        assert f["forwarded"] == [f'for=6.6.6.6, for=127.0.0.1;host="localhost:{port}";proto=https']
        assert f["x-forwarded-proto"] == ["http"] and f["x-forwarded-host"] == ["app.example"]
    # nothing sent: the lists hold the peer alone
    st, _, body, err = curl(port, "/echo", cafile=ca)
    f = fields(json.loads(body))
    assert f["x-forwarded-for"] == ["127.0.0.1"] and f["forwarded"][0].startswith("for=127.0.0.1;")


def test_response_fields_hop_by_hop_and_status(moat, app, ca):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port)
    for h2 in (False, True):
        st, hd, body, _ = curl(port, "/status?code=201", http2=h2, cafile=ca)
        assert st == 201 and body == b"status\n"
        assert hd["x-app"] == "yes"
        assert "x-hop" not in hd and "keep-alive" not in hd
        st, hd, body, _ = curl(port, "/status?code=204", http2=h2, cafile=ca)
        assert st == 204 and body == b""
        st, hd, body, _ = curl(port, "/echo", "-I", http2=h2, cafile=ca)  # HEAD: the length a GET has
        assert st == 200 and body.strip() == b"" and int(hd["content-length"]) > 0



def test_bodies_both_ways(moat, app, ca, tmp_path):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, limits="body_bytes: 100000000")
    blob = tmp_path / "upload.bin"
    data = os.urandom(8 << 20)
    blob.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    for h2 in (False, True):
        # Content-Length upload, then a chunked one (h1) / one without a length (h2)
        st, _, body, err = curl(port, "/upload", "--data-binary", f"@{blob}", http2=h2, cafile=ca)
        assert st == 200, err
        e = json.loads(body)
        assert e["body_len"] == len(data) and e["body_sha256"] == want
        st, _, body, err = curl(port, "/upload", "--data-binary", f"@{blob}", "-H", "Transfer-Encoding: chunked",
                                http2=h2, cafile=ca)
        assert st == 200, err
        e = json.loads(body)
        assert e["body_len"] == len(data) and e["body_sha256"] == want
        # downloads: Content-Length and chunked from the application
        for chunked in ("0", "1"):
            st, hd, body, err = curl(port, f"/big?n={20 << 20}&chunked={chunked}", http2=h2, cafile=ca)
            assert st == 200, err
            assert len(body) == 20 << 20 and body == (bytes(range(256)) * 256) * 320
            if not h2:
                assert (hd.get("transfer-encoding") == "chunked") == (chunked == "1")


def test_http10_client_and_close_delimited_body(moat, app, ca):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port)
    s = tls_connect(port, sni="localhost", cafile=ca)
    s.sendall(b"GET /big?n=100000&chunked=1 HTTP/1.0\r\nHost: localhost\r\n\r\n")
    buf = read_all(s)
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert len(body) == 100000
    st, _, body, _ = curl(port, "/close", cafile=ca)  # the application's body ends with its close
    assert st == 200 and body == b"until the close\n"


def test_upstream_down_slow_hanging_garbage(moat, app, ca):
    port, dead = free_port(), free_port()
    serve(moat, [f"127.0.0.1:{dead}"], port, upstream_extra="timeouts: {response_s: 1}")
    st, hd, body, _ = curl(port, "/", cafile=ca)
    assert st == 502 and hd["x-moat-upstream"] == "connect-refused"
    assert b"refused the connection" in body and f"127.0.0.1:{dead}".encode() in body
    # marked down: the next request within the pause finds no server
    st, hd, _, _ = curl(port, "/", http2=True, cafile=ca)
    assert st == 503 and hd["x-moat-upstream"] == "no-healthy-server"
    moat.stop_all()
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, upstream_extra="timeouts: {response_s: 1}")
    for h2 in (False, True):
        t = time.time()
        st, hd, body, _ = curl(port, "/hang", http2=h2, cafile=ca)
        assert st == 504 and hd["x-moat-upstream"] == "response-timeout" and time.time() - t < 5
        st, hd, body, _ = curl(port, "/garbage", http2=h2, cafile=ca)
        assert st == 502 and hd["x-moat-upstream"] == "bad-response"
        # A small answer's head waits for its body: a server that breaks off before it is complete is a
        # clean 502, not a cut 200.
        st, hd, body, err = curl(port, "/reset", http2=h2, cafile=ca)
        assert st == 502 and hd["x-moat-upstream"] == "reset", err
        # A longer one goes out as it comes: the head went, the client's side is cut.
        st, hd, body, err = curl(port, "/reset?cl=1048576", http2=h2, cafile=ca)
        assert body.endswith(b"partial") or st == 0, err
        st, _, _, _ = curl(port, "/echo", http2=h2, cafile=ca)  # and the server goes on
        assert st == 200
    log = (moat.dir / "access.log")
    wait_for(lambda: log.read_text().count("upstream_error=") >= 6)
    assert "upstream_error=response-timeout" in log.read_text()
    assert "upstream_error=bad-response" in log.read_text()


def test_a_small_answer_written_in_two_parts_leaves_in_one_piece(moat, ca):
    """The application writes its head, then its body later (as a file server does): the client gets
    both in one TLS record, not the head alone first."""
    up = Upstream()
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{up.port}"], port)
        s = tls_connect(port, sni="localhost", cafile=ca)
        for _ in range(2):  # a new upstream connection, then a kept one
            t = time.time()
            s.sendall(b"GET /split?s=0.3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            first = s.recv(65536)  # one record at most
            assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"\r\n\r\nthe body came later\n"), first
            assert time.time() - t >= 0.25
        s.close()
    finally:
        up.stop()


def test_balancing_keepalive_and_failover(moat, ca):
    a, b = Upstream(), Upstream()
    dead = free_port()
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}", f"127.0.0.1:{dead}"], port)
        s = tls_connect(port, sni="localhost", cafile=ca)
        for i in range(12):
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, rest = buf.partition(b"\r\n\r\n")
            n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            while len(rest) < n:
                rest += s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
        s.close()
        # round robin over the live servers: the dead one is marked down at its first refusal and its
        # turns go to the next server; no request failed
        assert len(a.seen) + len(b.seen) == 12 and len(a.seen) >= 4 and len(b.seen) >= 4
        log = moat.dir / "access.log"
        wait_for(lambda: log.exists() and log.read_text().count("upstream=") >= 12)
        assert "upstream_error" not in log.read_text()
    finally:
        a.stop()
        b.stop()


def test_client_certificate_forwarded_rfc9440(moat, app, ca):
    pw = moat.dir / "pw.txt"
    pw.write_text("pw\n")
    moat.ok("ca", "issue", "alice", "--cn", "alice", "--profile", "client")
    moat.ok("ca", "export-client", "alice", "--out", moat.dir / "alice.p12", "--password-file", pw)
    pem = moat.dir / "alice.pem"
    subprocess.run(["openssl", "pkcs12", "-in", moat.dir / "alice.p12", "-nodes", "-passin", "pass:pw", "-out", pem],
                   check=True, capture_output=True)
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, location_extra="forward_client_cert: rfc9440",
          site_extra="client_certificate: optional")
    for h2 in (False, True):
        st, _, body, err = curl(port, "/echo", "--cert", str(pem), "-H", "Client-Cert: :Zm9v:", http2=h2, cafile=ca)
        assert st == 200, err
        f = fields(json.loads(body))
        assert len(f["client-cert"]) == 1
        der = base64.b64decode(f["client-cert"][0].strip(":"))
        leaf = subprocess.run(["openssl", "x509", "-outform", "DER"], input=pem.read_bytes(), capture_output=True).stdout
        assert der == leaf
        chain = [base64.b64decode(x.strip().strip(":")) for x in f["client-cert-chain"][0].split(",")]
        root = subprocess.run(["openssl", "x509", "-outform", "DER"], input=ca.read_bytes(), capture_output=True).stdout
        assert chain[-1] == root
        # no certificate: nothing handed on, and a client's own Client-Cert is never
        st, _, body, _ = curl(port, "/echo", "-H", "Client-Cert: :Zm9v:", http2=h2, cafile=ca)
        assert st == 200 and "client-cert" not in fields(json.loads(body))


def test_client_certificate_required_refused_never_reaches_app(moat, app, ca):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, location_extra="forward_client_cert: rfc9440",
          site_extra="client_certificate: required")
    st, hd, _, _ = curl(port, "/echo", cafile=ca)
    assert st == 403 and hd["x-moat-client-cert"] == "none"
    assert app.seen == []


def test_expect_continue_and_body_limit(moat, app, ca, tmp_path):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, limits="body_bytes: 100000")
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"x" * 50000)
    st, _, body, err = curl(port, "/upload", "--data-binary", f"@{blob}", "-H", "Expect: 100-continue", cafile=ca)
    assert st == 200, err
    assert json.loads(body)["body_len"] == 50000
    blob.write_bytes(b"x" * 200000)
    for h2 in (False, True):
        st, _, _, _ = curl(port, "/upload", "--data-binary", f"@{blob}", http2=h2, cafile=ca)
        assert st == 413
    # a Content-Length above limits.body_bytes is refused before anything goes to the application
    assert sum(1 for x in app.seen if x[1] == "/upload") == 1
    # a chunked body has no length to check first: it is cut where it passes the limit
    st, _, _, _ = curl(port, "/upload", "--data-binary", f"@{blob}", "-H", "Transfer-Encoding: chunked", cafile=ca)
    assert st == 413


SMUGGLE = [
    # CL.TE and TE.CL: both framings at once
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    # TE.TE obfuscations
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\tchunked, chunked\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n X: y\r\n\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: +4\r\n\r\nabcd",
]


def test_smuggling_probes_reach_the_app_at_most_once(moat, app, ca):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port)
    for probe in SMUGGLE:
        before = len(app.seen)
        s = tls_connect(port, sni="localhost", cafile=ca)
        s.sendall(probe + b"GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n")
        buf = read_all(s)
        s.close()
        got = app.seen[before:]
        # malformed: refused (400/501), nothing forwarded; never a request the client did not frame
        assert buf.startswith(b"HTTP/1.1 400") or buf.startswith(b"HTTP/1.1 501"), (probe, buf[:200])
        assert got == [], (probe, got)
    # a chunked body is framed again by moat: the application gets exactly its bytes
    s = tls_connect(port, sni="localhost", cafile=ca)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\nGET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    buf = read_all(s)
    assert buf.count(b"HTTP/1.1 200") == 2
    assert [x[1] for x in app.seen[-2:]] == ["/echo", "/second"]
    e = json.loads(buf.split(b"\r\n\r\n")[1].split(b"HTTP/1.1")[0])
    assert e["body_len"] == 5


def test_websocket_both_ways(moat, ca):
    websockets = pytest.importorskip("websockets")
    import asyncio
    import threading

    async def echo(ws, path=None):
        async for msg in ws:
            await ws.send(("echo:" + msg) if isinstance(msg, str) else msg[::-1])
        # the client closed: the tunnel ends from its side

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    def run():
        asyncio.set_event_loop(loop)
        srv = loop.run_until_complete(websockets.serve(echo, "127.0.0.1", 0))
        holder["srv"] = srv
        holder["port"] = srv.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(10)
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{holder['port']}"], port)
        ctx = ssl.create_default_context(cafile=str(ca))

        async def client():
            async with websockets.connect(f"wss://localhost:{port}/ws", ssl=ctx, open_timeout=10) as ws:
                for i in range(20):
                    await ws.send(f"m{i}")
                    assert await asyncio.wait_for(ws.recv(), 10) == f"echo:m{i}"
                big = os.urandom(1 << 19)  # websockets refuses messages over 1 MiB
                await ws.send(big)
                assert await asyncio.wait_for(ws.recv(), 20) == big[::-1]
            return True

        assert asyncio.run(client())
        log = moat.dir / "access.log"
        wait_for(lambda: log.exists() and '"GET /ws" 101' in log.read_text())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)


def live_dead_and_self(moat, app):
    """A config whose upstream has a live server, a dead one and moat's own listener."""
    port, dead = free_port(), free_port()
    ups = (f"upstreams:\n  app:\n    servers: ['127.0.0.1:{app.port}', '127.0.0.1:{dead}', '127.0.0.1:{port}']\n")
    loc = "locations:\n  - path: /\n    proxy: app\n"
    cfg = moat.dir / "moat.yaml"
    cfg.write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
    return cfg, port, dead


def test_serve_check_connects_to_the_upstreams(moat, app, ca):
    cfg, port, dead = live_dead_and_self(moat, app)
    out = moat.ok("serve", "--check", "-c", cfg).stdout
    assert f"upstream app: server 127.0.0.1:{app.port} answers" in out
    assert f"warning: upstream app: server 127.0.0.1:{dead}: Connection refused" in out
    assert f"warning: upstream app: server 127.0.0.1:{port} is moat's own listener 127.0.0.1:{port}" in out


def test_reload_changes_the_upstream_for_new_requests(moat, ca):
    a, b = Upstream(), Upstream()
    try:
        port = free_port()
        serve(moat, [f"127.0.0.1:{a.port}"], port)
        assert curl(port, "/echo", cafile=ca)[0] == 200 and len(a.seen) == 1
        ups = f"upstreams:\n  app:\n    servers: ['127.0.0.1:{b.port}']\n"
        loc = "locations:\n  - path: /\n    proxy: app\n"
        (moat.dir / "moat.yaml").write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
        moat.ok("reload", "-c", moat.dir / "moat.yaml")
        assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 200 and len(b.seen) > 0, timeout=10)
        n = len(a.seen)
        assert curl(port, "/echo", http2=True, cafile=ca)[0] == 200 and len(a.seen) == n
    finally:
        a.stop()
        b.stop()


def test_h2_downgrade_probes(moat, app, ca):
    """HTTP/2 requests that would become something else as HTTP/1.1 never reach the application so."""
    from h2_helpers import H2
    from hyperframe.frame import DataFrame
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port)
    c = H2(port, ca)
    # DATA beyond the content-length: the extra bytes would be a second request upstream
    sid, f = c.headers("/echo", method="POST", extra=[("content-length", "3")], end_stream=False)
    d = DataFrame(sid, b"abcGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n")
    d.flags.add("END_STREAM")
    c.send(f, d)
    status, hdrs, _, _ = c.response(sid)
    assert status is None and "rst" in hdrs
    # less DATA than the content-length: reset, the upstream connection is not reused
    sid, f = c.headers("/echo", method="POST", extra=[("content-length", "10")], end_stream=False)
    d = DataFrame(sid, b"abc")
    d.flags.add("END_STREAM")
    c.send(f, d)
    status, hdrs, _, _ = c.response(sid)
    assert status is None and "rst" in hdrs
    # transfer-encoding and a CR/LF in a value are refused by HTTP/2 itself
    sid, f = c.headers(raw_fields=[(":method", "POST"), (":scheme", "https"), (":authority", "localhost"),
                                   (":path", "/echo"), ("transfer-encoding", "chunked")])
    c.send(f)
    assert c.response(sid)[0] is None
    status, _, body, _ = c.response(c.get("/echo"))
    assert status == 200
    c.close()
    time.sleep(0.5)
    assert all(x[1] != "/smuggled" for x in app.seen)
    assert len([x for x in app.seen if x[1] == "/echo" and x[0] == "GET"]) == 1


def test_response_timeout_longer_than_the_idle_timeout(moat, app, ca):
    """An application may take longer than limits.idle_timeout_s to answer when response_s allows it, on
    HTTP/1.1 and HTTP/2 alike (the waiting connection is not idle)."""
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, upstream_extra="timeouts: {response_s: 10}",
          limits="idle_timeout_s: 1")
    for h2 in (False, True):
        st, _, body, err = curl(port, "/slow?s=2.5", http2=h2, cafile=ca)
        assert st == 200, err


def test_doctor_checks_the_upstreams(moat, app, ca):
    cfg, port, dead = live_dead_and_self(moat, app)
    r = moat.run("doctor", "-c", cfg)
    out = r.stdout + r.stderr
    assert "upstream-down" in out and f"127.0.0.1:{dead}" in out, out
    assert "upstream-loop" in out and "its requests would come back to moat" in out, out
    j = json.loads(moat.run("doctor", "-c", cfg, "--json").stdout)
    ids = json.dumps(j)
    assert "upstream-down" in ids and "upstream-loop" in ids
    assert f"127.0.0.1:{app.port}" in ids  # the one that answers, as a fact


def test_host_name_servers_are_looked_up_at_load(moat, app, ca):
    # localhost is looked up like any name: each of its addresses is a server (a ::1 the test
    # upstream does not listen on is refused, marked down and the request goes to 127.0.0.1)
    port = free_port()
    serve(moat, [f"localhost:{app.port}"], port)
    for h2 in (False, True):
        st, hd, body, err = curl(port, "/echo", http2=h2, cafile=ca)
        assert st == 200, err
    assert len(app.seen) == 2
    out = moat.ok("serve", "--check", "-c", moat.dir / "moat.yaml").stdout
    assert f"upstream app: server 127.0.0.1:{app.port} answers" in out
    # a name the resolver does not know is a configuration error naming it, with its place
    ups = "upstreams:\n  app:\n    servers: ['no-such-host.invalid:3000']\n"
    loc = "locations:\n  - path: /\n    proxy: app\n"
    bad = moat.dir / "bad.yaml"
    bad.write_text(config(moat, [site(["localhost"], port, extra=loc)], extra=ups))
    r = moat.run("serve", "--check", "-c", bad)
    assert r.returncode != 0
    assert ('upstreams.app.servers: "no-such-host.invalid:3000": the host name no-such-host.invalid was '
            'not found (') in r.stderr, r.stderr
    assert f"{bad}:6:15: " in r.stderr, r.stderr


def test_location_body_limit(moat, app, ca, tmp_path):
    port = free_port()
    serve(moat, [f"127.0.0.1:{app.port}"], port, location_extra="limits: {body_bytes: 1000}",
          limits="body_bytes: 100000")
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"x" * 1000)
    st, _, body, err = curl(port, "/upload", "--data-binary", f"@{blob}", cafile=ca)
    assert st == 200 and json.loads(body)["body_len"] == 1000, err
    blob.write_bytes(b"x" * 50000)
    for h2 in (False, True):
        st, hd, _, _ = curl(port, "/upload", "--data-binary", f"@{blob}", http2=h2, cafile=ca)
        assert st == 413 and hd.get("x-moat-upstream") == "body-too-large", hd
    # a Content-Length above the location's limit: nothing went to the application
    assert sum(1 for x in app.seen if x[1] == "/upload") == 1
    # chunked: cut where it passes the limit; the application never gets a complete request
    st, hd, _, _ = curl(port, "/upload", "--data-binary", f"@{blob}", "-H", "Transfer-Encoding: chunked", cafile=ca)
    assert st == 413, hd
    assert [b for b in app.srv.bodies if b[0] == "/upload"] == [("/upload", 1000)]
    # above the top-level limit, or on a location without proxy:, it is a configuration error
    for loc, want in (("proxy: app\n    limits: {body_bytes: 200000}",
                       "limits.body_bytes: 200000 is above the top-level limits.body_bytes (100000)"),
                      ("limits: {body_bytes: 10}", "limits.body_bytes: set on a location without proxy:")):
        bad = moat.dir / "bad.yaml"
        ups = f"upstreams:\n  app:\n    servers: ['127.0.0.1:{app.port}']\n"
        text = "locations:\n  - path: /\n    " + loc + "\n"
        bad.write_text(config(moat, [site(["localhost"], port, extra=text)], extra=ups, limits="body_bytes: 100000"))
        r = moat.run("serve", "--check", "-c", bad)
        assert r.returncode != 0 and want in r.stderr, r.stderr
