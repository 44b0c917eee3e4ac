"""Smoke test of bench/tlsbench, the handshake load generator of `make bench` (the bench itself is timed,
so it is not a test): full, resumed, verified and held connections against real TLS servers."""
import asyncio
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from conftest import SOURCE_DIR, free_port, wait_port


def _find_tlsbench():
    build = os.environ.get("MOAT_BUILD_DIR")
    candidates = [pathlib.Path(build) / "bench" / "tlsbench"] if build else []
    candidates += [SOURCE_DIR / "build" / p / "bench" / "tlsbench" for p in ("asan", "dev", "release")]
    for c in candidates:
        if c.exists():
            return str(c)
    raise RuntimeError("bench/tlsbench is not built: build a preset (it is part of every build)")


TLSBENCH = _find_tlsbench()
ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=1")


def kv(line):
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def tlsbench(*args, timeout=30, **kw):
    r = subprocess.run([TLSBENCH, "-q", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV,
                       **kw)
    assert "AddressSanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr
    return r


def make_cert(d, name):
    key, crt = d / f"{name}.key", d / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-subj", "/CN=localhost", "-days", "1",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return key, crt


@pytest.fixture
def s_server(tmp_path):
    """openssl s_server -www on a free port (it serves one connection at a time)."""
    key, crt = make_cert(tmp_path, "server")
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", crt, "-key", key,
                             "-www", "-quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield port, crt
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_full_handshakes_never_resume(s_server):
    port, _ = s_server
    r = tlsbench("-n", 30, "-c", 2, "-d", 10, "127.0.0.1", port)
    assert r.returncode == 0, r.stderr
    v = kv(r.stdout.splitlines()[-1])
    assert int(v["handshakes"]) >= 30
    assert v["new"] == v["handshakes"] and v["resumed"] == "0" and v["failed"] == "0"
    assert v["version"] == "TLSv1.3" and v["peer_key"] == "EC-256"


def test_resume_mode_resumes_all_but_the_first(s_server):
    port, _ = s_server
    r = tlsbench("-r", "-n", 30, "-c", 3, "-d", 10, "127.0.0.1", port)
    assert r.returncode == 0, r.stderr
    v = kv(r.stdout.splitlines()[-1])
    assert v["new"] == "1" and int(v["resumed"]) == int(v["handshakes"]) - 1 >= 29


def test_verified_get_and_a_wrong_ca_fails(s_server, tmp_path):
    port, crt = s_server
    r = tlsbench("-A", crt, "-s", "localhost", "-G", "/", "-n", 3, "-c", 1, "127.0.0.1", port)
    assert r.returncode == 0, r.stderr
    assert int(kv(r.stdout.splitlines()[-1])["bytes"]) > 100  # the s_server status page came back
    _, other = make_cert(tmp_path, "other")
    r = tlsbench("-A", other, "-n", 3, "-c", 1, "-d", 2, "127.0.0.1", port)
    assert r.returncode == 1
    assert "certificate verify failed" in r.stderr
    assert kv(r.stdout.splitlines()[-1])["handshakes"] == "0"


def test_resume_against_a_server_without_tickets_says_so(tmp_path):
    key, crt = make_cert(tmp_path, "server")
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", crt, "-key", key,
                             "-www", "-quiet", "-no_ticket", "-no_cache"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        r = tlsbench("-r", "-n", 5, "-c", 1, "-d", 5, "127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert r.returncode != 0
    assert "no session ticket" in r.stderr or "RESUMPTION FAILED" in r.stderr


class CurtServer:
    """Sends one ticket, closes without close_notify after the client's: what moat does, and the case
    where a careless client loses its session (OpenSSL then marks it not resumable)."""

    def __init__(self, key, crt):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.ctx.num_tickets = 1
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                raw, _ = self.sock.accept()
            except socket.timeout:
                continue
            raw.settimeout(5)
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as tls:
                    while tls.recv(4096):
                        pass
            except (OSError, ssl.SSLError):
                pass  # closed without unwrap(): no close_notify

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join(10)
        self.sock.close()


def test_resume_survives_a_server_that_closes_without_close_notify(tmp_path):
    key, crt = make_cert(tmp_path, "server")
    with CurtServer(key, crt) as srv:
        r = tlsbench("-r", "-n", 40, "-c", 1, "-d", 20, "127.0.0.1", srv.port)
    assert r.returncode == 0, r.stderr
    v = kv(r.stdout.splitlines()[-1])
    assert v["new"] == "1" and int(v["resumed"]) == int(v["handshakes"]) - 1 >= 39


class HoldServer:
    """A TLS server that keeps any number of connections open (s_server serves one at a time)."""

    def __init__(self, key, crt):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.port = free_port()
        self.open = 0
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader, writer):
        self.open += 1
        try:
            await reader.read()  # until the client closes
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ctx, backlog=128))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_hold_mode_keeps_connections_open(tmp_path):
    key, crt = make_cert(tmp_path, "server")
    with HoldServer(key, crt) as srv:
        p = subprocess.Popen([TLSBENCH, "-q", "-H", "40", "-c", "8", "-d", "20", "127.0.0.1", str(srv.port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENV)
        ready = kv(p.stdout.readline())
        assert ready.get("open") == "40", ready
        for _ in range(100):  # the server finishes each handshake just after the client does
            if srv.open == 40:
                break
            time.sleep(0.05)
        assert srv.open == 40
        out, err = p.communicate("done\n", timeout=20)
    assert p.returncode == 0, err
    v = kv(out.splitlines()[-1])
    assert v["held"] == "40" and v["still_open"] == "40" and v["new"] == "40"


def test_usage_errors():
    r = tlsbench("-c", "0", "127.0.0.1", "1")
    assert r.returncode == 1 and "-c wants" in r.stderr
    r = tlsbench("-H", "5", "-r", "127.0.0.1", "1")
    assert r.returncode == 1 and "do not go together" in r.stderr
    r = tlsbench("only-a-host")
    assert r.returncode == 1 and "usage" in r.stderr
    assert tlsbench("-h").returncode == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
