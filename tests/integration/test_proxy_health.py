"""The reverse proxy's active health checks (upstreams.NAME.health) through the real binary: the Python test
application's /healthz answers 200 or 503 as the test sets it; a server failing its check gets no requests
(on every worker), comes back once it passes, every server down is a 503 no-healthy-server, and a reload
changes, or removes, the checks."""
import socket
import time

from proxy_helpers import curl
from proxy_upstream import Upstream
from serve_helpers import RawServer, config, free_port, site, wait_for

HEALTH = "health: {path: /healthz, interval_s: 1, timeout_s: 1}"


def write_cfg(moat, port, servers, health, workers=1):
    ups = "upstreams:\n  app:\n    servers: [" + ", ".join(f"'127.0.0.1:{p}'" for p in servers) + "]\n"
    if health:
        ups += f"    {health}\n"
    loc = "locations:\n  - path: /\n    proxy: app\n"
    return config(moat, [site(["localhost"], port, extra=loc)], workers=workers, extra=ups)


def error_log(moat):
    f = moat.dir / "error.log"
    return f.read_text() if f.exists() else ""


def checks_after(ups, n, timeout=10):
    """Waits until <ups> answered <n> more health checks than now (moat saw at least one full answer)."""
    start = ups.health_checks
    return wait_for(lambda: ups.health_checks >= start + n, timeout=timeout)


def test_a_server_failing_its_check_is_skipped_then_comes_back(moat, ca):
    a, b = Upstream(), Upstream()
    try:
        port = free_port()
        moat.serve(write_cfg(moat, port, [a.port, b.port], HEALTH, workers=2), wait=[port])
        # each worker checks every server: both workers' first checks arrive
        assert wait_for(lambda: a.health_checks >= 2 and b.health_checks >= 2)
        b.set_healthy(False)
        assert wait_for(lambda: error_log(moat).count(f"server 127.0.0.1:{b.port} failed its health check")
                        >= 2, timeout=10), error_log(moat)
        assert "(/healthz: status 503)" in error_log(moat)
        seen_b = len(b.seen)
        for i in range(12):  # new connections: both workers take some
            st, _, _, err = curl(port, f"/echo?i={i}", http2=i % 2 == 1, cafile=ca)
            assert st == 200, err
        assert len(b.seen) == seen_b and len(a.seen) >= 12
        b.set_healthy(True)
        assert wait_for(lambda: error_log(moat).count(f"server 127.0.0.1:{b.port} passes its health check")
                        >= 2, timeout=10), error_log(moat)
        for i in range(8):
            assert curl(port, f"/echo?again={i}", cafile=ca)[0] == 200
        assert len(b.seen) > seen_b  # back in the rotation
    finally:
        a.stop()
        b.stop()


def test_every_server_down_is_503_no_healthy_server(moat, ca):
    a = Upstream()
    dead = free_port()  # nothing listens: its check is refused
    try:
        a.set_healthy(False)
        port = free_port()
        moat.serve(write_cfg(moat, port, [a.port, dead], HEALTH), wait=[port])
        assert wait_for(lambda: f"server 127.0.0.1:{dead} failed its health check (/healthz: connect-refused)"
                        in error_log(moat) and f"server 127.0.0.1:{a.port} failed" in error_log(moat))
        for h2 in (False, True):
            st, hd, body, err = curl(port, "/echo", http2=h2, cafile=ca)
            assert st == 503, err
            assert hd["x-moat-upstream"] == "no-healthy-server"
            assert b"failed its health check" in body
        assert a.seen == []  # no request went to the failing server
        a.set_healthy(True)
        assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 200, timeout=10)
        assert len(a.seen) >= 1
    finally:
        a.stop()


def test_a_check_not_answered_in_time_fails(moat, ca):
    a = Upstream()
    try:
        port = free_port()
        # /slow answers after 3 s: later than timeout_s
        moat.serve(write_cfg(moat, port, [a.port], "health: {path: '/slow?s=3', interval_s: 2, timeout_s: 1}"),
                   wait=[port])
        assert wait_for(lambda: "(/slow?s=3: response-timeout)" in error_log(moat), timeout=10), error_log(moat)
        st, hd, _, _ = curl(port, "/echo", cafile=ca)
        assert st == 503 and hd["x-moat-upstream"] == "no-healthy-server"
    finally:
        a.stop()


def test_a_server_that_breaks_off_its_answer_fails_the_check_at_once(moat, ca):
    """The server's first bytes and the end of its stream come in one segment (corked, then shut): the
    check fails as reset when they come, not as a timeout later."""
    def break_off(c):
        c.recv(4096)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-")
        c.shutdown(socket.SHUT_WR)  # sends the corked bytes with the FIN
        c.recv(4096)
    with RawServer(break_off) as srv:
        port = free_port()
        health = "health: {path: /healthz, interval_s: 8, timeout_s: 8}"
        moat.serve(write_cfg(moat, port, [srv.port], health), wait=[port])
        assert wait_for(lambda: "(/healthz: reset)" in error_log(moat), timeout=5), error_log(moat)
        assert "response-timeout" not in error_log(moat)


def test_reload_changes_and_removes_the_checks(moat, ca):
    a = Upstream()
    try:
        port = free_port()
        cfg = moat.dir / "moat.yaml"
        # the application answers 200 where status 204 is expected: down
        moat.serve(write_cfg(moat, port, [a.port], "health: {path: /healthz, interval_s: 1, status: 204}"),
                   wait=[port])
        assert wait_for(lambda: "(/healthz: status 200)" in error_log(moat))
        assert curl(port, "/echo", cafile=ca)[1].get("x-moat-upstream") == "no-healthy-server"
        # the expected status changes: checked again at once, and passing
        cfg.write_text(write_cfg(moat, port, [a.port], HEALTH))
        moat.ok("reload", "-c", cfg)
        assert wait_for(lambda: curl(port, "/echo", cafile=ca)[0] == 200, timeout=10)
        # a longer interval: fewer checks
        cfg.write_text(write_cfg(moat, port, [a.port], "health: {path: /healthz, interval_s: 30}"))
        moat.ok("reload", "-c", cfg)
        time.sleep(1.5)  # the reload reached the worker, and a check it started at once answered
        n = a.health_checks
        time.sleep(2.5)
        assert a.health_checks == n
        # without health: the server is never checked, and serves even when /healthz would fail
        a.set_healthy(False)
        cfg.write_text(write_cfg(moat, port, [a.port], ""))
        moat.ok("reload", "-c", cfg)
        time.sleep(1.0)
        n = a.health_checks
        for _ in range(3):
            assert curl(port, "/echo", cafile=ca)[0] == 200
        time.sleep(1.5)
        assert a.health_checks == n
    finally:
        a.stop()
