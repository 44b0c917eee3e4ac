"""Accepting under pressure: out of file descriptors (EMFILE) pauses accepting on a timer and logs once per
pause instead of spinning; max_connections is capped by the open file limit at start; the limit is one for
the whole server, so no connection waits in one worker's queue while the server has room."""
import os
import socket
import ssl
import subprocess
import time

from serve_helpers import CA, config, free_port, get, site, tls_connect, wait_for

PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00"  # a ClientHello's first bytes: TCP_DEFER_ACCEPT lets it in


def _cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _served(moat, workers=1, limits="", prefix=()):
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("ok\n")
    port = free_port()
    proc = moat.serve(config(moat, [site(["localhost"], port, root=root)], workers=workers, limits=limits),
                      wait=[port], prefix=prefix)
    return ca, port, proc


def test_out_of_descriptors_pauses_accepting(moat):
    ca, port, proc = _served(moat, limits="max_connections: 10000, header_timeout_s: 30",
                             prefix=["prlimit", "--nofile=512:512", "--"])
    log = moat.dir / "error.log"
    # capped at start, saying so
    assert wait_for(lambda: "accepting at most" in log.read_text())
    line = [x for x in log.read_text().splitlines() if "accepting at most" in x][0]
    assert "max_connections is 10000" in line and "open file limit is 512" in line, line
    # descriptors taken by something else: lower the limit under the running server
    nfd = len(os.listdir(f"/proc/{proc.pid}/fd"))
    subprocess.run(["prlimit", f"--pid={proc.pid}", f"--nofile={nfd + 10}:512"], check=True)
    held = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(PARTIAL_HELLO)
        held.append(s)
    time.sleep(0.5)
    size0, cpu0, t0 = log.stat().st_size, _cpu_s(proc.pid), time.time()
    time.sleep(3)
    grown, cpu, wall = log.stat().st_size - size0, _cpu_s(proc.pid) - cpu0, time.time() - t0
    assert grown < 4096, f"the error log grew by {grown} bytes in {wall:.1f} s"
    assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.1f} s while out of descriptors"
    text = log.read_text()
    assert "not accepting for 500 ms" in text and "Too many open files" in text, text[-2000:]
    # descriptors back: accepting resumes by itself
    for s in held:
        s.close()
    subprocess.run(["prlimit", f"--pid={proc.pid}", "--nofile=512:512"], check=True)
    t0 = time.time()
    assert get(port, "/", sni="localhost", cafile=ca.pem)[0] == 200
    assert time.time() - t0 < 3


def _handshake(port, ca, timeout):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        raw.close()
        return None


def test_no_connection_waits_while_the_server_has_room(moat):
    # 2 workers, 40 connections allowed: 39 at once must all be served, however the kernel spreads them
    # over the two listeners (a per-worker share of 20 left the 21st of one worker in its queue)
    ca, port, proc = _served(moat, workers=2, limits="max_connections: 40, idle_timeout_s: 60")
    for rnd in range(3):
        held = [_handshake(port, ca, 3) for _ in range(39)]
        waited = sum(1 for s in held if s is None)
        for s in held:
            if s is not None:
                s.close()
        assert waited == 0, f"round {rnd}: {waited} of 39 connections waited below the limit of 40"
        time.sleep(0.3)
    # at the limit the next one waits; when any connection closes, it is served
    held = [_handshake(port, ca, 3) for _ in range(40)]
    assert all(s is not None for s in held)
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    extra.settimeout(1.0)
    try:
        ctx.wrap_socket(extra, server_hostname="localhost")
        assert False, "served past max_connections"
    except (OSError, ssl.SSLError):
        pass
    extra.close()
    for s in held[:20]:
        s.close()
    t0 = time.time()
    s = _handshake(port, ca, 3)
    assert s is not None and time.time() - t0 < 2
    s.close()
    for s in held[20:]:
        s.close()
