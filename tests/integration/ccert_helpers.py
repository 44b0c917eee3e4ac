"""Client certificates through the real server: curl presenting one, certificates from moat's CA for
curl, and a CA moat does not run with its CRLs served over http on 127.0.0.1."""
import functools
import http.server
import re
import subprocess
import threading

from serve_helpers import config, openssl, site


def curl(port, path, cert=None, cafile=None):
    args = ["curl", "-sS", "-D", "-", "--cacert", str(cafile), f"https://localhost:{port}{path}"]
    if cert:
        args[1:1] = ["--cert", str(cert)]
    r = subprocess.run(args, capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace")
    status = int(out.split()[1]) if out.startswith("HTTP/") else 0
    return status, out, r.stderr.decode(errors="replace")


def client_pem_from_moat(moat, name, cn, profile="client"):
    """A key and certificate issued by moat's CA, exported and turned into one PEM for curl."""
    pw = moat.dir / "pw.txt"
    pw.write_text("pw\n")
    if profile == "client":
        moat.ok("ca", "issue", name, "--cn", cn, "--profile", "client")
        moat.ok("ca", "export-client", name, "--out", moat.dir / f"{name}.p12", "--password-file", pw)
    else:
        moat.ok("key", "new", name, "--cn", cn, "--exportable", "--csr-out", moat.dir / f"{name}.csr")
        moat.ok("ca", "sign", moat.dir / f"{name}.csr", "--out", moat.dir / f"{name}.crt", "--profile", profile)
        moat.ok("cert", "install", name, moat.dir / f"{name}.crt")
        moat.ok("key", "export", name, "--out", moat.dir / f"{name}.p12", "--password-file", pw)
    pem = moat.dir / f"{name}.pem"
    openssl("pkcs12", "-in", moat.dir / f"{name}.p12", "-nodes", "-passin", "pass:pw", "-out", pem)
    return pem


class CrlServer:
    """A plain http server on 127.0.0.1 serving the files of one folder."""

    def __init__(self, d, port=None):
        self.dir = d
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0

        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits += 1
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0),
                                                     functools.partial(Handler, directory=str(self.dir)))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def client(pki, name, issuer="corp", crl_url=None, chain=(), **kw):
    """A client certificate with its key (and chain) in one PEM for curl."""
    pki.sign(name, issuer, name, eku="clientAuth", crl_url=crl_url, **kw)
    pem = pki.path(f"{name}-client.pem")
    pem.write_text(pki.path(f"{name}.key").read_text() + pki.path(f"{name}.pem").read_text() +
                   "".join(pki.path(f"{c}.pem").read_text() for c in chain))
    return pem


def serve(moat, root, ports, soft=(), prefix=()):
    sites = []
    for p in ports:
        extra = "client_certificate: required\nclient_trust: [corp]"
        if p in soft:
            extra += "\nclient_revocation_unknown: allow"
        sites.append(site(["localhost"], p, root=root, extra=extra))
    moat.serve(config(moat, sites), wait=ports, prefix=prefix)


def verdict(port, cert, ca_pem):
    st, out, err = curl(port, "/", cert=cert, cafile=ca_pem)
    m = re.search(r"(?im)^x-moat-client-cert: (\S+)", out)
    return st, (m.group(1) if m else None), err
