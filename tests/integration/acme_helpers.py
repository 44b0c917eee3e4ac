"""Pebble (Debian's ACME test server) with pebble-challtestsrv as its DNS server, started on loopback
on free ports by the test itself, with real validation: pebble's VA connects back to moat's listeners on
the http-01 and tls-alpn-01 ports given here, and resolves every name through challtestsrv (which
answers 127.0.0.1 for any name and serves the TXT records a dns-01 hook sets)."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from conftest import free_port, terminate, wait_port
from pki_helpers import openssl
from serve_helpers import site

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"


class Pebble:
    def __init__(self, tmp_path, eab=None, nonce_reject=30, env=None):
        self.dir = tmp_path / "pebble"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.mgmt_port = free_port()
        self.dns_port = free_port()
        self.chall_mgmt_port = free_port()
        self.http_port = free_port()
        self.tls_port = free_port()
        self.eab = eab
        self.nonce_reject = nonce_reject
        self.extra_env = env or {}
        self.procs = []
        self._make_tls()

    def _make_tls(self):
        d = self.dir
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                 "-subj", "/CN=pebble test CA", "-keyout", "ca.key", "-out", "ca.pem",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
                 cwd=d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj",
                 "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr", cwd=d)
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
        self.ca_pem = d / "ca.pem"

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self):
        cfg = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.dir / "server.pem"),
            "privateKey": str(self.dir / "server.key"),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": self.eab is not None,
            "externalAccountMACKeys": dict([self.eab]) if self.eab else {},
        }}
        (self.dir / "pebble.json").write_text(json.dumps(cfg))
        log = open(self.dir / "challtestsrv.out", "ab")
        self.procs.append((subprocess.Popen(
            [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01",
             f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{self.chall_mgmt_port}"],
            stdout=log, stderr=subprocess.STDOUT), log))
        wait_port(self.chall_mgmt_port)
        env = dict(os.environ)
        env.pop("PEBBLE_VA_ALWAYS_VALID", None)
        env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject),
                    "PEBBLE_AUTHZREUSE": "0"})
        env.update(self.extra_env)
        if "PEBBLE_VA_SLEEPTIME" in env:
            env.pop("PEBBLE_VA_NOSLEEP")
        log = open(self.dir / "pebble.out", "ab")
        self.procs.append((subprocess.Popen(
            [PEBBLE, "-config", str(self.dir / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.dir), log))
        wait_port(self.port)
        return self

    def log_count(self, text):
        """How often pebble's log has <text> (e.g. "POST /order-plz")."""
        return (self.dir / "pebble.out").read_text(errors="replace").count(text)

    def stop_pebble(self):
        """Stops the ACME server only (challtestsrv keeps running)."""
        proc, log = self.procs[-1]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    def root_pem(self):
        """Pebble's issuing root (it makes a new one on each start), over its management interface."""
        import ssl
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt_port}/roots/0", context=ctx, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        for proc, log in reversed(self.procs):
            terminate(proc, 10)
            log.close()
        self.procs = []


@pytest.fixture
def pebble(tmp_path):
    p = Pebble(tmp_path)
    yield p
    p.stop()


def challtestsrv(pb, path, body):
    """Calls pebble-challtestsrv's management interface (set-txt, add-a, clear-a, ...)."""
    req = urllib.request.Request(f"http://127.0.0.1:{pb.chall_mgmt_port}/{path}", data=json.dumps(body).encode(),
                                 method="POST")
    urllib.request.urlopen(req, timeout=5).read()


class AriServer:
    """A small https server in front of pebble (which has no ARI): /dir is pebble's directory plus a
    renewalInfo URL served here, with the window the test sets; everything else goes to pebble itself."""

    def __init__(self, pb):
        import http.server
        import ssl
        import threading
        self.pb = pb
        self.asked = []
        self.window = None  # (start, end) epoch seconds
        ctx = ssl.create_default_context(cafile=str(pb.ca_pem))
        with urllib.request.urlopen(pb.directory, context=ctx, timeout=10) as r:
            directory = json.loads(r.read())
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/dir":
                    d = dict(directory)
                    d["renewalInfo"] = f"https://127.0.0.1:{outer.port}/renewal-info/"
                    body, code = json.dumps(d).encode(), 200
                elif self.path.startswith("/renewal-info/") and outer.window is not None:
                    outer.asked.append(self.path[len("/renewal-info/"):])
                    fmt = "%Y-%m-%dT%H:%M:%SZ"
                    w = {"start": time.strftime(fmt, time.gmtime(outer.window[0])),
                         "end": time.strftime(fmt, time.gmtime(outer.window[1]))}
                    body, code = json.dumps({"suggestedWindow": w}).encode(), 200
                else:
                    body, code = b'{"type":"urn:ietf:params:acme:error:malformed"}', 404
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(str(pb.dir / "server.pem"), str(pb.dir / "server.key"))
        self.httpd.socket = sctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- moat as the ACME server (the acme_ca fixture in conftest.py) ------------------------------------


def run(*args, env=None, timeout=180):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=e)


def acme_site(m, extra="", days=30):
    text = (f"certificate: www\nca_publish: true\nacme_server:\n"
            f"  allow: [localhost, '127.0.0.1']\n  days: {days}\n"
            f"  http01_port: {m.http01}\n  tls_alpn01_port: {m.tls01}\n")
    text += "".join("  " + line + "\n" for line in extra.strip().splitlines())
    return site(["localhost", "127.0.0.1"], m.https, default=True, http_port=m.http, extra=text)


def verify(m, path):
    r = run("openssl", "verify", "-CAfile", m.dir / "root.pem", "-untrusted", path, path)
    assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr


def issued(m, serial):
    rows = json.loads(m.ok("--json", "ca", "list").stdout)
    return next(x for x in rows if int(x["serial"], 16) == serial)


def access_log(m):
    p = m.dir / "access.log"
    return p.read_text(errors="replace") if p.exists() else ""
