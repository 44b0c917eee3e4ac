"""Helpers for the server tests: an outside CA made with openssl, server keys imported into the store,
configs, and small HTTPS clients (python ssl, raw sockets) that talk to 127.0.0.1 / ::1 only."""
import pathlib
import socket
import ssl
import threading
import time

import pki_helpers
from conftest import free_port  # noqa: F401  (re-exported for the tests)


def openssl(*args, input=None):
    """openssl with bytes output, as the server tests compare what was served byte for byte."""
    return pki_helpers.openssl(*args, input=input, text=False)


class CA:
    """A throwaway CA made with openssl: the independent reference for what moat serves."""

    def __init__(self, d, name="Serve Test Root"):
        self.dir = pathlib.Path(d)
        self.key = self.dir / "ca.key"
        self.pem = self.dir / "ca.pem"
        self.n = 0
        pki_helpers.self_signed(self.key, self.pem, name)

    def sign(self, csr, out, sans, days=20, eku="serverAuth"):
        self.n += 1
        ext = self.dir / f"leaf{self.n}.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       f"extendedKeyUsage={eku}\nsubjectAltName={sans}\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key, "-CAcreateserial",
                "-days", days, "-extfile", ext, "-out", out)
        return out

    def issue(self, moat, name, hosts, alg="ec", days=20, eku="serverAuth"):
        """Makes a key and certificate for <hosts> and imports both into moat's store as key <name>."""
        self.n += 1
        key = self.dir / f"{name}-{self.n}.key"
        csr = self.dir / f"{name}-{self.n}.csr"
        crt = self.dir / f"{name}-{self.n}.crt"
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if alg == "ec" else \
            ["-newkey", "rsa:2048"]
        openssl("req", *newkey, "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={hosts[0]}")
        self.sign(csr, crt, sans_of(hosts), days=days, eku=eku)
        bundle = self.dir / f"{name}-{self.n}.pem"
        bundle.write_bytes(key.read_bytes() + crt.read_bytes())
        moat.ok("key", "import", name, bundle)
        return crt

    def renew(self, moat, name, hosts, days=25):
        """moat key renew + sign + moat cert install: the certificate of <name> is replaced."""
        self.n += 1
        csr = self.dir / f"{name}-renew{self.n}.csr"
        crt = self.dir / f"{name}-renew{self.n}.crt"
        moat.ok("key", "renew", name, "--csr-out", csr)
        self.sign(csr, crt, sans_of(hosts), days=days)
        moat.ok("cert", "install", name, crt)
        return crt


def sans_of(hosts):
    out = []
    for h in hosts:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in h else socket.AF_INET, h)
            out.append(f"IP:{h}")
        except OSError:
            out.append(f"DNS:{h}")
    return ",".join(out)


def fingerprint_der(der):
    import hashlib
    return hashlib.sha256(der).hexdigest()


def cert_der(path):
    return ssl.PEM_cert_to_DER_cert(pathlib.Path(path).read_text())


def site(hosts, port, root=None, default=False, http_port=None, extra="", certificate=None):
    """One entry of sites: (YAML text); <port> a port on 127.0.0.1 or a list of listen addresses."""
    lines = [f"  - hosts: [{', '.join(repr(h) for h in hosts)}]",
             f"    listen: [\"127.0.0.1:{port}\"]" if not isinstance(port, list) else
             f"    listen: [{', '.join(repr(p) for p in port)}]"]
    if certificate is not None:
        lines.append(f"    certificate: {certificate}")
    if default:
        lines.append("    default: true")
    if root is not None:
        lines.append(f"    root: {root}")
    if http_port is not None:
        lines.append(f"    http_listen: [\"127.0.0.1:{http_port}\"]")
    if extra:
        lines.extend("    " + x for x in extra.strip().splitlines())
    return "\n".join(lines) + "\n"


def config(moat, sites, workers=1, limits="", extra="", log=True):
    """A moat.yaml (text) for this test's store; log=False leaves the logs on the server's stderr."""
    text = f"store: {moat.store}\nworkers: {workers}\n"
    if log:
        text += f"log: {{ access: {moat.dir}/access.log, error: {moat.dir}/error.log }}\n"
    if limits:
        text += f"limits: {{ {limits} }}\n"
    text += extra
    return text + "sites:\n" + "".join(sites)


def write_config(moat, sites, name="moat.yaml", **kw):
    """config() written to <name> in the test's folder; returns the path."""
    path = moat.dir / name
    path.write_text(config(moat, sites, **kw))
    return path


def client_ctx(cafile=None, verify=True, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(port, sni=None, cafile=None, host="127.0.0.1", verify=None, ctx=None, timeout=5):
    if ctx is None:
        ctx = client_ctx(cafile, verify=(cafile is not None) if verify is None else verify)
        if sni is None:
            ctx.check_hostname = False
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.connect((host, port))
    return ctx.wrap_socket(raw, server_hostname=sni)


def read_response(sock, head_only=False):
    """Reads one HTTP/1.1 response (Content-Length framed). Returns (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise ConnectionError(f"connection closed after {buf!r}")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = sock.recv(65536)
        if not d:
            break
        rest += d
    return status, headers, rest[:n], rest[n:]


def request(sock, path="/", host="localhost", method="GET", headers=(), close=False):
    h = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    for k, v in headers:
        h += f"{k}: {v}\r\n"
    if close:
        h += "Connection: close\r\n"
    sock.sendall((h + "\r\n").encode())
    st, hd, body, _ = read_response(sock, head_only=(method == "HEAD"))
    return st, hd, body


def get(port, path="/", sni="localhost", cafile=None, host=None, headers=(), method="GET", addr="127.0.0.1"):
    s = tls_connect(port, sni=sni, cafile=cafile, host=addr)
    try:
        return request(s, path, host=host or sni or addr, headers=headers, method=method, close=True)
    finally:
        s.close()


def wait_for(pred, timeout=10.0, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class RawServer:
    """A TCP server on 127.0.0.1 for what no real server does (answers broken off, not HTTPS at all):
    each connection it accepts goes to answer(conn), in the server's thread, and is closed after."""

    def __init__(self, answer):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._answer = answer
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                try:
                    self._answer(c)
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self._t.join()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
