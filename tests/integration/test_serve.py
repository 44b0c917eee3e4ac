"""moat serve: TLS sites from store certificates, SNI and listener rules, static files, redirects, HSTS,
the access log, --check, TLS settings, resumption and a clean SIGTERM. Real binary, real clients."""
import hashlib
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from serve_helpers import (CA, cert_der, config, free_port, get, read_response, request, site, tls_connect,
                           wait_for)


@pytest.fixture
def ca(moat):
    return CA(moat.dir)


@pytest.fixture
def www(moat):
    root = moat.dir / "www"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>moat test</h1>\n")
    (root / "docs" / "index.html").write_text("docs index\n")
    (root / "style.css").write_text("body{}\n")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return root


def peer_der(sock):
    return sock.getpeercert(binary_form=True)


def test_serves_a_site_from_a_store_certificate(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost", "127.0.0.1"])
    moat.serve(config(moat, [site(["localhost", "127.0.0.1"], port, root=www)]), wait=[port])
    st, hd, body = get(port, "/", sni="localhost", cafile=ca.pem)
    assert st == 200 and body == b"<h1>moat test</h1>\n"
    assert hd["content-type"].startswith("text/html")
    out = wait_for(lambda: "listening" in (moat.dir / "serve.out").read_text() and
                   (moat.dir / "serve.out").read_text())
    assert str(moat.store) in out, "serve prints the absolute store path"
    assert f"https://127.0.0.1:{port}" in out
    # curl, verifying against the CA, by name and by IP
    r = subprocess.run(["curl", "-sS", "--cacert", ca.pem, f"https://localhost:{port}/style.css"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"body{}\n", r.stderr
    r = subprocess.run(["curl", "-sS", "--cacert", ca.pem, f"https://127.0.0.1:{port}/"], capture_output=True,
                       timeout=30)
    assert r.returncode == 0 and b"moat test" in r.stdout, r.stderr


def test_many_sites_on_one_port_by_sni(moat, ca, moat_tmp=None):
    port = free_port()
    names = ["alpha.test", "beta.test", "gamma.test"]
    sites, certs = [], {}
    for n in names:
        root = moat.dir / n
        root.mkdir()
        (root / "index.html").write_text(f"site {n}\n")
        certs[n] = ca.issue(moat, n.split(".")[0], [n])
        sites.append(site([n], port, root=root))
    moat.serve(config(moat, sites, workers=2), wait=[port])
    for n in names * 2:
        s = tls_connect(port, sni=n, cafile=ca.pem)
        assert peer_der(s) == cert_der(certs[n])
        st, _, body = request(s, "/", host=n, close=True)
        assert st == 200 and body == f"site {n}\n".encode()
        s.close()
    # openssl s_client -servername picks the same way
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "beta.test",
                        "-CAfile", str(ca.pem), "-verify_return_error"], input=b"", capture_output=True,
                       timeout=30)
    assert b"Verify return code: 0 (ok)" in r.stdout and b"CN = beta.test" in r.stdout


def test_default_site_no_sni_and_unrecognized_name(moat, ca):
    p1, p2 = free_port(), free_port()
    a = ca.issue(moat, "a", ["a.test"])
    b = ca.issue(moat, "b", ["b.test"])
    moat.serve(config(moat, [site(["a.test"], [f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"]),
                             site(["b.test"], p1, default=True)]), wait=[p1, p2])
    # p1 has a default site: no SNI and unknown names get it
    s = tls_connect(p1, sni=None)
    assert peer_der(s) == cert_der(b)
    s.close()
    s = tls_connect(p1, sni="unknown.test")
    assert peer_der(s) == cert_der(b)
    s.close()
    s = tls_connect(p1, sni="a.test", cafile=ca.pem)
    assert peer_der(s) == cert_der(a)
    s.close()
    # p2 has none: unknown or missing SNI is refused with unrecognized_name
    for sni in ("unknown.test", None):
        with pytest.raises(ssl.SSLError) as e:
            tls_connect(p2, sni=sni)
        assert "UNRECOGNIZED_NAME" in str(e.value).upper().replace(" ", "_")
    s = tls_connect(p2, sni="a.test", cafile=ca.pem)
    assert peer_der(s) == cert_der(a)
    s.close()


def test_ip_literal_without_sni_matches_the_site_listing_that_ip(moat, ca):
    port = free_port()
    ca.issue(moat, "name", ["name.test"])
    ip = ca.issue(moat, "ip", ["127.0.0.1"])
    moat.serve(config(moat, [site(["name.test"], port), site(["127.0.0.1"], port)]), wait=[port])
    s = tls_connect(port, sni=None)
    assert peer_der(s) == cert_der(ip)
    s.close()


def test_host_naming_another_site_than_sni_is_421(moat, ca, www):
    port = free_port()
    ca.issue(moat, "one", ["one.test"])
    ca.issue(moat, "two", ["two.test"])
    moat.serve(config(moat, [site(["one.test"], port, root=www), site(["two.test"], port, root=www)]),
               wait=[port])
    st, _, _ = get(port, "/", sni="one.test", cafile=ca.pem, host="two.test")
    assert st == 421
    st, _, _ = get(port, "/", sni="one.test", cafile=ca.pem, host=f"one.test:{port}")
    assert st == 200


def test_ipv6_listener(moat, ca, www):
    port = free_port()
    ca.issue(moat, "v6", ["::1", "localhost"])
    moat.serve(config(moat, [site(["::1", "localhost"], [f"[::1]:{port}"], root=www)]))
    wait_for(lambda: _can_connect("::1", port))
    st, _, body = get(port, "/", sni="localhost", cafile=ca.pem, addr="::1")
    assert st == 200 and b"moat test" in body
    r = subprocess.run(["curl", "-sS", "-g", "--cacert", ca.pem, f"https://[::1]:{port}/"], capture_output=True,
                       timeout=30)
    assert r.returncode == 0 and b"moat test" in r.stdout, r.stderr


def _can_connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_static_files_keepalive_pipelining_range_304(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    st, hd, body = request(s, "/")
    assert st == 200 and body == b"<h1>moat test</h1>\n"
    etag, lm = hd["etag"], hd["last-modified"]
    # same connection: conditional requests, HEAD, ranges
    assert request(s, "/", headers=[("If-None-Match", etag)])[0] == 304
    assert request(s, "/", headers=[("If-Modified-Since", lm)])[0] == 304
    st, hd, body = request(s, "/", method="HEAD")
    assert st == 200 and hd["content-length"] == "19" and body == b""
    st, hd, body = request(s, "/index.html", headers=[("Range", "bytes=4-7")])
    assert st == 206 and body == b"moat" and hd["content-range"] == "bytes 4-7/19"
    assert request(s, "/index.html", headers=[("Range", "bytes=100-")])[0] == 416
    st, _, body = request(s, "/docs/")
    assert st == 200 and body == b"docs index\n"
    st, hd, _ = request(s, "/docs")
    assert st == 301 and hd["location"].endswith("/docs/")
    assert request(s, "/missing.txt")[0] == 404
    # pipelining: three requests in one write, three answers in order
    s.sendall(b"GET /style.css HTTP/1.1\r\nHost: localhost\r\n\r\n"
              b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n"
              b"GET /docs/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
    rest = b""
    bodies = []
    for _ in range(3):
        class Buf:
            def __init__(self, data, sock):
                self.data, self.sock = data, sock

            def recv(self, n):
                if self.data:
                    d, self.data = self.data, b""
                    return d
                return self.sock.recv(n)
        st, _, body, rest = read_response(Buf(rest, s))
        bodies.append((st, body))
    assert bodies == [(200, b"body{}\n"), (200, b"<h1>moat test</h1>\n"), (200, b"docs index\n")]
    # a large file arrives intact
    st, hd, body = request(s, "/big.bin")
    assert st == 200 and hashlib.sha256(body).digest() == hashlib.sha256((www / "big.bin").read_bytes()).digest()
    s.close()
    # no escape from the root: dot segments, encoded or not
    assert get(port, "/%2e%2e/%2e%2e/etc/passwd", sni="localhost", cafile=ca.pem)[0] in (400, 404)
    # symlinks leaving the root are refused
    os.symlink("/etc/passwd", www / "leak")
    assert get(port, "/leak", sni="localhost", cafile=ca.pem)[0] in (403, 404)


def test_https_redirect_and_hsts(moat, ca, www):
    port, hport = free_port(), free_port()
    ca.issue(moat, "secure", ["secure.test", "localhost"])
    moat.serve(config(moat, [site(["secure.test", "localhost"], port, root=www, http_port=hport,
                                  extra="require_secure_channel: true\nhsts_max_age: 600")]),
               wait=[port, hport])
    with socket.create_connection(("127.0.0.1", hport)) as s:
        st, hd, _ = request(s, "/docs/x?q=1", host="secure.test")
        assert st == 301 and hd["location"] == f"https://secure.test:{port}/docs/x?q=1"
        # CA publication paths stay on plain HTTP
        st, hd, _ = request(s, "/.well-known/moat/ca.pem", host="secure.test")
        assert st != 301
    st, hd, _ = get(port, "/", sni="secure.test", cafile=ca.pem)
    assert st == 200 and hd["strict-transport-security"] == "max-age=600"
    st, hd, _ = get(port, "/", sni="localhost", cafile=ca.pem)
    assert st == 200 and "strict-transport-security" not in hd, "no HSTS for localhost"


def test_access_log_fields(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    assert get(port, "/style.css", sni="localhost", cafile=ca.pem)[0] == 200
    log = moat.dir / "access.log"
    line = wait_for(lambda: log.exists() and log.read_text().strip(), timeout=5)
    assert line, "access log written within a second or two"
    assert re.search(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1 localhost TLSv1\.3 TLS_\S+ http/1\.1 '
                     r'"GET /style\.css" 200 7 [\d.]+ms ccert=-$', line, re.M), line


def test_check_validates_config_store_and_certificates(moat, ca, www):
    port = free_port()
    cfg = moat.dir / "moat.yaml"
    cfg.write_text(config(moat, [site(["localhost"], port, root=www)]))
    r = moat.fails("serve", "-c", cfg, "--check")
    assert "no store" in r.stderr
    assert r.stderr.count(str(moat.store)) == 1, "the store's path is named once: " + r.stderr
    ca.issue(moat, "other", ["other.test"])
    r = moat.fails("serve", "-c", cfg, "--check")
    assert "no valid server certificate" in r.stderr and "localhost" in r.stderr
    ca.issue(moat, "www", ["localhost"])
    r = moat.ok("serve", "-c", cfg, "-t")
    assert "ok" in r.stdout
    cfg.write_text(config(moat, [site(["localhost"], port, root=www)]) + "    bogus_key: 1\n")
    r = moat.fails("serve", "-c", cfg, "--check")
    assert re.search(r"moat\.yaml:\d+:\d+", r.stderr), r.stderr
    cfg.write_text(config(moat, [site(["localhost"], port, root=www, extra="certificate: nosuchkey")]))
    r = moat.fails("serve", "-c", cfg, "--check")
    assert "nosuchkey" in r.stderr
    assert not _can_connect("127.0.0.1", port), "--check does not serve"


def test_auto_never_picks_client_or_ca_certificates(moat, ca, www):
    port = free_port()
    ca.issue(moat, "client", ["localhost"], eku="clientAuth", days=29)
    good = ca.issue(moat, "server", ["localhost"], days=10)
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    assert peer_der(s) == cert_der(good)
    s.close()


def test_exact_name_beats_wildcard_and_named_key(moat, ca, www):
    port, port2 = free_port(), free_port()
    ca.issue(moat, "wild", ["*.example.test"], days=29)
    exact = ca.issue(moat, "exact", ["www.example.test"], days=10)
    named = ca.issue(moat, "pinned", ["www.example.test"], days=5)
    moat.serve(config(moat, [site(["www.example.test"], port, root=www),
                             site(["www.example.test"], port2, root=www, extra="certificate: pinned")]),
               wait=[port, port2])
    s = tls_connect(port, sni="www.example.test", cafile=ca.pem)
    assert peer_der(s) == cert_der(exact)
    s.close()
    s = tls_connect(port2, sni="www.example.test", cafile=ca.pem)
    assert peer_der(s) == cert_der(named)
    s.close()


def test_tls_settings_versions_groups_and_dual_certificates(moat, ca, www):
    port = free_port()
    ec = ca.issue(moat, "ec", ["dual.test"])
    rsa = ca.issue(moat, "rsa", ["dual.test"], alg="rsa")
    moat.serve(config(moat, [site(["dual.test"], port, root=www)]), wait=[port])

    def s_client(*args):
        return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                               "dual.test", *args], input=b"", capture_output=True, timeout=30)
    r = s_client("-tls1_3")
    assert b"Server Temp Key: X25519" in r.stdout and b"TLSv1.3" in r.stdout
    r = s_client("-tls1_2")
    assert b"Protocol  : TLSv1.2" in r.stdout and b"GCM" in r.stdout
    r = s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert b"Cipher is (NONE)" in r.stdout or r.returncode != 0, "TLS 1.1 is refused"
    # both certificates are loaded: the client's signature algorithms pick one
    s = tls_connect(port, sni="dual.test", cafile=ca.pem)
    assert peer_der(s) == cert_der(ec)
    s.close()
    r = s_client("-tls1_2", "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256")
    assert b"CN = dual.test" in r.stdout and b"Peer signature type: RSA" in r.stdout, r.stdout
    del rsa


def test_session_tickets_resume_across_workers(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)], workers=2), wait=[port])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    s = tls_connect(port, sni="localhost", ctx=ctx)
    request(s, "/")  # the ticket arrives after the handshake
    sess = s.session
    s.close()
    resumed = 0
    for _ in range(8):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        t = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
        request(t, "/")
        resumed += t.session_reused
        t.close()
    assert resumed == 8, "every connection resumes, whichever worker takes it"


def test_client_close_notify_is_answered(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # a bare TCP close must not pass for close_notify
    # Right after the handshake, and after a request on a kept-alive connection (a small file, a streamed one).
    # The client's Finished leaves together with its next records (close_notify or the request), the case where
    # the server answers those before sending its tickets.
    for path in (None, "/index.html", "/big.bin"):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname="localhost")

        def pump(step):
            """Runs <step>, feeding it what the server sends until it wants no more."""
            while True:
                try:
                    return step()
                except ssl.SSLWantReadError:
                    raw.sendall(out.read())
                    data = raw.recv(65536)
                    if not data:
                        inc.write_eof()
                        return step()
                    inc.write(data)
        pump(tls.do_handshake)
        if path:
            tls.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            got = pump(lambda: tls.read(65536))
            assert got.startswith(b"HTTP/1.1 200")
            head, body = got.split(b"\r\n\r\n", 1)
            size = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            while len(body) < size:
                body += pump(lambda: tls.read(65536))
            assert body == (www / path.lstrip("/")).read_bytes()
        # unwrap() sends our close_notify and succeeds only once the server's close_notify is read
        pump(tls.unwrap)
        raw.sendall(out.read())
        assert raw.recv(1) == b"", "the server closes after its close_notify"
        raw.close()


def test_a_client_that_shuts_its_side_after_its_last_request_is_closed_at_once(moat, ca, www):
    """The last request and the client's end of the stream (a TCP close without close_notify) arrive
    together on a kept-alive connection: the answer goes out and the connection ends then, not after the
    idle timeout (60 s)."""
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="localhost")

    def read_answer():
        got = b""
        while b"docs index" not in got and b"moat test" not in got:
            try:
                got += tls.read(65536)
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    raw.sendall(pending)
                data = raw.recv(65536)
                assert data, "closed before the answer"
                inc.write(data)
        return got
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(out.read())
            inc.write(raw.recv(65536))
    tls.write(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert read_answer().startswith(b"HTTP/1.1 200")
    time.sleep(0.2)  # the server waits for the next request
    tls.write(b"GET /docs/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
    raw.sendall(out.read())
    raw.shutdown(socket.SHUT_WR)  # in the same moment: the request and the end of the stream
    t = time.time()
    assert b"docs index" in read_answer()
    while raw.recv(65536):
        pass
    assert time.time() - t < 5, "the connection stayed open until the idle timeout"
    raw.close()


def test_sigterm_finishes_and_exits_zero(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    proc = moat.serve(config(moat, [site(["localhost"], port, root=www)], workers=2), wait=[port])
    idle = tls_connect(port, sni="localhost", cafile=ca.pem)
    request(idle, "/")
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert time.time() - t0 < 5, "an idle keep-alive connection does not hold the stop"
    assert not (moat.dir / "moat.db.pid").exists()
    assert not _can_connect("127.0.0.1", port)


def test_a_second_server_on_the_same_port_is_refused(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    text = config(moat, [site(["localhost"], port, root=www)])
    moat.serve(text, wait=[port])
    (moat.dir / "second.yaml").write_text(text.replace("access.log", "access2.log").replace("error.log",
                                                                                             "error2.log"))
    r = moat.fails("serve", "-c", moat.dir / "second.yaml", timeout=30)
    assert "already in use" in r.stderr and str(port) in r.stderr


def test_changed_file_is_served_fresh_within_a_second(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    assert request(s, "/style.css")[2] == b"body{}\n"
    assert request(s, "/style.css")[2] == b"body{}\n"
    (www / "style.css").write_text("body{color:red}\n")
    time.sleep(1.2)
    st, hd, body = request(s, "/style.css")
    assert body == b"body{color:red}\n" and hd["content-length"] == "16"
    st, hd, body = request(s, "/style.css", method="HEAD")
    assert st == 200 and body == b"" and hd["content-length"] == "16"
    s.close()


def test_sigusr1_reopens_the_logs(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    proc = moat.serve(config(moat, [site(["localhost"], port, root=www)]), wait=[port])
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and "GET /" in log.read_text(), timeout=5)
    log.rename(moat.dir / "access.log.1")
    (moat.dir / "error.log").rename(moat.dir / "error.log.1")
    proc.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: (moat.dir / "error.log").exists() and "reopened" in (moat.dir / "error.log").read_text())
    assert get(port, "/style.css", sni="localhost", cafile=ca.pem)[0] == 200
    assert wait_for(lambda: log.exists() and "GET /style.css" in log.read_text(), timeout=5)
    assert "style.css" not in (moat.dir / "access.log.1").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_root_drops_to_the_configured_user(moat, ca, www):
    import pwd
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    import shutil
    import tempfile
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    # the document root must be readable by that user (the test folder is not)
    pub = pathlib.Path(tempfile.mkdtemp(prefix="moat-www-", dir="/tmp"))
    os.chmod(pub, 0o755)
    shutil.copy(www / "index.html", pub / "index.html")
    os.chmod(pub / "index.html", 0o644)
    proc = moat.serve(config(moat, [site(["localhost"], port, root=pub)], extra="user: nobody\n"), wait=[port])
    def uid_line():
        status = open(f"/proc/{proc.pid}/status").read()
        return [ln for ln in status.splitlines() if ln.startswith("Uid:")][0]

    # the listeners open before the switch, so the port answers a moment before the user changes
    assert wait_for(lambda: uid_line().split()[1:] == [str(nobody.pw_uid)] * 4, timeout=10), uid_line()
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    assert os.stat(moat.dir / "access.log").st_uid == nobody.pw_uid
    # the store still reloads after the switch
    ca.renew(moat, "www", ["localhost"])
    assert wait_for(lambda: "reloaded" in (moat.dir / "error.log").read_text(), timeout=20)
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    shutil.rmtree(pub)
