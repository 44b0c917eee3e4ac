"""Every error-log line about a connection carries its context: the connection id, the peer (address and
port), the SNI name once known, the protocol and what the connection was doing. Driven by a file that
shrinks while it is being sent, over HTTP/1.1 and over HTTP/2."""
import os
import re
import socket

import pytest

from h2_helpers import H2, WindowUpdateFrame
from serve_helpers import CA, config, free_port, site, tls_connect, wait_for

BIG = 32 << 20


@pytest.fixture
def served(moat):
    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("ok\n")
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)]), wait=[port])
    return moat, ca, port, root


def shrink_line(moat):
    text = (moat.dir / "error.log").read_text()
    return next((line for line in text.splitlines() if "the file shrank" in line), None)


def context_of(line):
    m = re.search(r" error conn (conn=\d+ peer=\S+ (?:sni=\S+ )?(?:proto=\S+ )?state=\S+): (.*)$", line)
    assert m, f"no connection context in {line!r}"
    return dict(kv.split("=", 1) for kv in m.group(1).split()), m.group(2)


def test_http11_line_names_the_connection(served):
    moat, ca, port, root = served
    big = root / "big.bin"
    with open(big, "wb") as f:
        f.truncate(BIG)
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    local_port = s.getsockname()[1]
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 200")
    # moat is now blocked on a full socket; the file shrinks under it
    os.truncate(big, 1 << 20)
    got = 0
    try:
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            got += len(data)
    except (OSError, socket.timeout):
        pass
    s.close()
    assert got < BIG
    assert wait_for(lambda: shrink_line(moat) is not None, timeout=10)
    ctx, msg = context_of(shrink_line(moat))
    assert re.fullmatch(r"\d+", ctx["conn"])
    assert ctx["peer"] == f"127.0.0.1:{local_port}"
    assert ctx["sni"] == "localhost"
    assert ctx["proto"] == "http/1.1"
    assert ctx["state"] == "send"
    assert msg.startswith("reading a file to send")


def test_h2_line_names_the_connection_and_the_stream(served):
    moat, ca, port, root = served
    big = root / "big.bin"
    with open(big, "wb") as f:
        f.truncate(1 << 20)
    c = H2(port, ca.pem)
    local_port = c.s.getsockname()[1]
    sid = c.get("/big.bin")
    # Without WINDOW_UPDATE the stream stops after the initial 64 KiB window.
    c.frames(timeout=1)
    os.truncate(big, 1000)
    c.send(WindowUpdateFrame(0, window_increment=1 << 24), WindowUpdateFrame(sid, window_increment=1 << 24))
    c.frames(timeout=2)
    c.close()
    assert wait_for(lambda: shrink_line(moat) is not None, timeout=10)
    ctx, msg = context_of(shrink_line(moat))
    assert ctx["peer"] == f"127.0.0.1:{local_port}"
    assert ctx["sni"] == "localhost"
    assert ctx["proto"] == "h2"
    assert ctx["state"] == "h2"
    assert msg.startswith(f"stream={sid} reading a file to send")
