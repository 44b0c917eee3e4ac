"""A transfer the client cuts off still gets its access-log line, with the bytes that were sent (it left
none)."""
import os
import socket
import time

from serve_helpers import CA, config, free_port, site, tls_connect, wait_for


def test_an_aborted_download_is_logged_with_its_bytes(moat):
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    root = moat.dir / "www"
    root.mkdir()
    size = 16 * 1024 * 1024
    (root / "big.bin").write_bytes(os.urandom(size))
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)]), wait=[port])
    s = tls_connect(port, sni="localhost", cafile=ca.pem)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
    got = 0
    while got < 100000:
        got += len(s.recv(65536))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # with unread data: a reset
    log = moat.dir / "access.log"

    def line():
        if not log.exists():
            return None
        return next((x for x in log.read_text().splitlines() if '"GET /big.bin"' in x), None)

    ln = wait_for(line, timeout=15)
    assert ln is not None, "no access-log line for the aborted transfer"
    sent = int(ln.split('"GET /big.bin"')[1].split()[1])
    assert 0 < sent < size, ln
    time.sleep(0.1)
