"""A small application server for the reverse proxy tests: threaded HTTP/1.1 on 127.0.0.1 with echo,
upload, streaming, chunked, slow, hanging, failing and garbage endpoints. It records every request it
sees, so tests can check the proxy sent exactly one per client request. Given an ssl.SSLContext it speaks
HTTPS: each connection's handshake in its own thread, and the echo says which connection (the peer's
port), whether its TLS session was resumed and which client certificate it presented."""
import hashlib
import http.server
import json
import socket
import ssl
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            h = hashlib.sha256()
            n = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return n, h.hexdigest()
                left = size
                while left:
                    d = self.rfile.read(min(left, 1 << 16))
                    h.update(d)
                    left -= len(d)
                n += size
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        left = n
        while left:
            d = self.rfile.read(min(left, 1 << 16))
            if not d:
                break
            h.update(d)
            left -= len(d)
        return n, h.hexdigest()

    def _send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout, ssl.SSLError):
            self.close_connection = True

    def _route(self):
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/healthz":  # moat's health checks: counted apart, answered as the test sets
            self.server.health_checks += 1
            self._send(200 if self.server.healthy else 503, b"ok\n" if self.server.healthy else b"down\n",
                       "text/plain")
            return
        self.server.seen.append((self.command, self.path, [(k, v) for k, v in self.headers.items()]))
        if u.path == "/slow":
            time.sleep(float(q.get("s", "2")))
        if u.path == "/split":  # the head, then after s seconds the body: two writes, as a file server does
            body = b"the body came later\n"
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body))
            self.wfile.flush()
            time.sleep(float(q.get("s", "0.3")))
            self.wfile.write(body)
            return
        if u.path == "/hang":
            time.sleep(30)
            self.close_connection = True
            return
        if u.path == "/garbage":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello")
            self.close_connection = True
            return
        if u.path == "/reset":  # cl: the length announced (a small one waits in moat for its body)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\npartial" % int(q.get("cl", "100")))
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        n, digest = self._body()
        self.server.bodies.append((self.path, n))  # a request whose body arrived complete
        if u.path == "/big":
            size = int(q.get("n", "1048576"))
            chunked = q.get("chunked") == "1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            block = bytes(range(256)) * 256
            left = size
            while left:
                d = block[:min(left, len(block))]
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(d), d))
                else:
                    self.wfile.write(d)
                left -= len(d)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if u.path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the close\n")
            self.close_connection = True
            return
        if u.path == "/status":
            code = int(q.get("code", "200"))
            self._send(code, b"" if code in (204, 304) else b"status\n", "text/plain",
                       extra=[("X-App", "yes"), ("Connection", "X-Hop"), ("X-Hop", "drop me"),
                              ("Keep-Alive", "timeout=5")])
            return
        echo = {"method": self.command, "path": self.path, "headers": self.headers.items(),
                "body_len": n, "body_sha256": digest, "peer": self.client_address[0],
                "peer_port": self.client_address[1]}
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert(binary_form=True)
            echo["tls"] = {"version": self.connection.version(), "resumed": self.connection.session_reused,
                           "sni": getattr(self.connection, "sni", None),
                           "client_cert_sha256": hashlib.sha256(cert).hexdigest() if cert else None}
        body = json.dumps(echo).encode()
        self._send(200, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _route


class TLSServer(http.server.ThreadingHTTPServer):
    """HTTPS: the handshake in the connection's own thread (a slow client holds up no other)."""
    tls = None

    def finish_request(self, request, client_address):
        try:
            request.settimeout(30)
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.tls_errors.append(str(e))
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-request: nothing to report


class Upstream:
    def __init__(self, port=0, tls=None):
        """<tls>: a server-side ssl.SSLContext, for an HTTPS upstream."""
        if tls is not None:
            self.srv = TLSServer(("127.0.0.1", port), Handler)
            self.srv.tls = tls
            tls.sni_callback = self._sni
        else:
            self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.srv.daemon_threads = True
        self.srv.seen = []
        self.srv.bodies = []
        self.srv.healthy = True  # what /healthz answers: 200, or 503 when False
        self.srv.health_checks = 0
        self.srv.tls_errors = []  # handshakes that failed, with OpenSSL's reason
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    @staticmethod
    def _sni(sock, name, ctx):
        sock.sni = name  # the server name moat sent, for the echo

    @property
    def seen(self):
        return self.srv.seen

    @property
    def health_checks(self):
        return self.srv.health_checks

    def set_healthy(self, on):
        self.srv.healthy = on

    @property
    def tls_errors(self):
        return self.srv.tls_errors

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
