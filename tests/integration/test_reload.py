"""Hot reload: store changes apply by themselves and config changes on SIGHUP / moat reload, without a
failed request; a change that does not load is refused and the running state keeps serving."""
import os
import signal
import socket
import ssl
import threading
import time

from serve_helpers import CA, cert_der, config, free_port, get, request, site, tls_connect, wait_for


def start(moat, workers=2):
    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("v1\n")
    first = ca.issue(moat, "www", ["localhost"])
    port = free_port()
    text = config(moat, [site(["localhost"], port, root=root)], workers=workers)
    proc = moat.serve(text, wait=[port])
    return ca, port, first, proc, root


def test_certificate_replaced_under_load_without_a_failed_request(moat):
    ca, port, first, proc, root = start(moat)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    stop = threading.Event()
    results = {"ok": 0, "failed": [], "seen": []}

    def loop():
        while not stop.is_set():
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                s = ctx.wrap_socket(raw, server_hostname="localhost")
                der = s.getpeercert(binary_form=True)
                st, _, body = request(s, "/", close=True)
                s.close()
                if st != 200 or body != b"v1\n":
                    results["failed"].append(st)
                else:
                    results["ok"] += 1
                    results["seen"].append((time.time(), der))
            except Exception as e:  # any failure counts
                results["failed"].append(repr(e))
    threads = [threading.Thread(target=loop) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    new = ca.renew(moat, "www", ["localhost"])
    installed = time.time()
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join()
    assert not results["failed"], results["failed"][:5]
    assert results["ok"] > 10
    new_der = cert_der(new)
    first_new = [t for t, der in results["seen"] if der == new_der]
    assert first_new, "new handshakes see the new certificate"
    assert min(first_new) - installed < 2.0
    late = [der for t, der in results["seen"] if t > installed + 2.0]
    assert late and all(d == new_der for d in late), "after 2 s only the new certificate is served"
    assert cert_der(first) != new_der


def test_connection_in_flight_finishes_on_the_old_generation(moat):
    ca, port, first, proc, root = start(moat, workers=1)
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    assert request(s, "/")[0] == 200
    ca.renew(moat, "www", ["localhost"])
    wait_for(lambda: "reloaded" in (moat.dir / "error.log").read_text(), timeout=5)
    # the old keep-alive connection still works, a new one gets the new certificate
    assert request(s, "/")[0] == 200
    assert s.getpeercert(binary_form=True) == cert_der(first)
    s.close()
    t = tls_connect(port, sni="localhost", cafile=ca.pem)
    assert t.getpeercert(binary_form=True) != cert_der(first)
    t.close()


def test_bad_config_reload_is_refused_and_old_state_kept(moat):
    ca, port, first, proc, root = start(moat)
    cfg = moat.dir / "moat.yaml"
    good = cfg.read_text()
    cfg.write_text(good + "    unknown_key: 1\n")
    proc.send_signal(signal.SIGHUP)
    log = moat.dir / "error.log"
    assert wait_for(lambda: "reload refused" in log.read_text(), timeout=5), log.read_text()
    assert "moat.yaml:" in log.read_text()
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    # a config naming a key that does not exist does not load either
    cfg.write_text(good.replace("root:", "certificate: nope\n    root:"))
    r = moat.fails("reload", "-c", cfg)
    assert "refused the reload" in r.stderr and "nope" in r.stderr
    # the site keeps its certificate (a change refused for one site does not stop the others)
    assert log.read_text().count("reload refused") + log.read_text().count("its change is refused") >= 2
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    # a good change applies: a second site on the same port
    ca.issue(moat, "two", ["two.test"])
    cfg.write_text(good + site(["two.test"], port, root=root))
    r = moat.ok("reload", "-c", cfg)
    assert "reloaded" in r.stdout
    assert _sni_works(port, ca, "two.test"), "the new site answers as soon as moat reload returns"
    assert proc.poll() is None


def _sni_works(port, ca, name):
    try:
        return get(port, "/", sni=name, cafile=ca.pem)[0] == 200
    except (ssl.SSLError, OSError):
        return False


def test_store_change_that_cannot_load_keeps_serving(moat):
    ca, port, first, proc, root = start(moat)
    # with the config at hand the change is refused before the commit: nothing changed
    r = moat.fails("key", "delete", "www")
    assert "the server would not load this change" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert "www" in moat.ok("key", "list").stdout
    # made without the config (from another folder), the server itself refuses it
    elsewhere = moat.dir / "elsewhere"
    elsewhere.mkdir()
    r = moat.fails("key", "delete", "www", cwd=elsewhere)
    assert "refused the change and keeps serving generation" in r.stderr, r.stderr
    log = moat.dir / "error.log"
    assert wait_for(lambda: "refused" in log.read_text(), timeout=5), log.read_text()
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    assert s.getpeercert(binary_form=True) == cert_der(first)
    s.close()


def test_tickets_survive_a_reload(moat):
    ca, port, first, proc, root = start(moat)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    s = tls_connect(port, sni="localhost", ctx=ctx)
    request(s, "/")
    sess = s.session
    s.close()
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded" in (moat.dir / "error.log").read_text(), timeout=5)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
    request(t, "/")
    assert t.session_reused
    t.close()


def test_reload_without_a_server_says_so(moat):
    r = moat.fails("reload")
    assert "no moat server runs" in r.stderr


def test_a_server_is_found_as_soon_as_it_accepts_and_a_second_one_leaves_it_found(moat):
    """The pid file moat reload looks for is written before the listeners open, so a client that can
    connect can also reload; a second server on the same store that cannot listen (the port is taken)
    leaves the first one's pid file alone."""
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    text = config(moat, [site(["localhost"], port)])
    first = moat.serve(text, wait=[port])
    pidfile = moat.dir / "moat.db.pid"
    assert pidfile.read_text().strip() == str(first.pid)
    assert "reloaded" in moat.ok("reload", "-c", moat.dir / "moat.yaml").stdout
    second = moat.serve(text, name="second.yaml")
    assert second.wait(timeout=30) != 0
    assert pidfile.read_text().strip() == str(first.pid)
    assert "reloaded" in moat.ok("reload", "-c", moat.dir / "moat.yaml").stdout
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] in (200, 404)


def test_the_pid_file_is_written_before_any_listener_opens(moat):
    """A client that can connect can also reload: the order of the system calls says so, where a timed
    check would only catch a slow start now and then."""
    CA(moat.dir).issue(moat, "www", ["localhost"])
    port = free_port()
    trace = moat.dir / "serve.trace"
    moat.env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"  # LeakSanitizer cannot run under ptrace
    proc = moat.serve(config(moat, [site(["localhost"], port)]), wait=[port],
                      prefix=["strace", "-f", "-qq", "-o", trace, "-e", "trace=openat,listen"])
    pidfile = moat.dir / "moat.db.pid"
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=15)
    os.kill(int(pidfile.read_text()), signal.SIGTERM)  # moat, under strace
    proc.wait(timeout=30)
    calls = trace.read_text().splitlines()
    pid_at = next(i for i, c in enumerate(calls) if "moat.db.pid" in c and "O_CREAT" in c)
    listen_at = next(i for i, c in enumerate(calls) if " listen(" in c)
    assert pid_at < listen_at, "\n".join(calls[listen_at:pid_at + 1])
