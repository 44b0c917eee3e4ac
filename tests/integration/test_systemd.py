"""systemd Type=notify: READY once moat listens, RELOADING then READY around a reload, the generation in
STATUS, STOPPING on SIGTERM; over $NOTIFY_SOCKET (a path or an abstract name) with no library."""
import signal
import socket
import time

import pytest

from serve_helpers import CA, config, free_port, site


def messages(sock, want, timeout=20.0):
    """Datagrams until one holds <want>; returns them all, as dicts of KEY=VALUE lines."""
    got, deadline = [], time.time() + timeout
    while time.time() < deadline:
        sock.settimeout(max(0.05, deadline - time.time()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        got.append(fields)
        if want in data:
            return got
    raise AssertionError(f"no {want!r} within {timeout}s; got {got}")


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_reloading_status_stopping(moat, kind):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        addr = str(moat.dir / "notify.sock")
        sock.bind(addr)
    else:
        addr = f"@moat-test-{id(sock)}-{time.time_ns()}"
        sock.bind("\0" + addr[1:])
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    moat.env["NOTIFY_SOCKET"] = addr
    try:
        proc = moat.serve(config(moat, [site(["localhost"], port)]))
        ready = messages(sock, "READY=1")
        assert ready[-1]["READY"] == "1" and ready[-1]["MAINPID"] == str(proc.pid)
        assert ready[-1]["STATUS"].startswith("serving generation ")
        # Listening when READY says so: no wait for the port needed.
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        first = int(ready[-1]["STATUS"].split()[2])
        ca.issue(moat, "api", ["api.localhost"])       # a store change: the server reloads by itself
        seen = messages(sock, "READY=1")
        assert any(m.get("RELOADING") == "1" and int(m["MONOTONIC_USEC"]) > 0 for m in seen), seen
        assert int(seen[-1]["STATUS"].split()[2]) > first, seen
        proc.send_signal(signal.SIGHUP)
        seen = messages(sock, "READY=1")
        assert seen[0].get("RELOADING") == "1" and "SIGHUP" in seen[0]["STATUS"], seen
        proc.send_signal(signal.SIGTERM)
        assert messages(sock, "STOPPING=1")[-1]["STOPPING"] == "1"
        proc.wait(timeout=20)
    finally:
        moat.env.pop("NOTIFY_SOCKET", None)
        sock.close()


def test_make_install_puts_the_unit_and_logrotate_file(tmp_path):
    from conftest import make_install
    make_install(tmp_path)
    unit = (tmp_path / "opt/moat/lib/systemd/system/moat.service").read_text()
    assert "Type=notify" in unit and "ExecStart=/opt/moat/bin/moat serve" in unit
    assert "/usr/local" not in unit, "the unit names the installed binary"
    rot = (tmp_path / "etc/logrotate.d/moat").read_text()
    assert "SIGUSR1" in rot
