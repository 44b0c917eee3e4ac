"""cert install of a leaf without its intermediate fetches it from the AIA caIssuers URL (a python
http.server on 127.0.0.1), checks that it signed the leaf, and says so; nothing fetched otherwise."""
import http.server
import subprocess
import threading

import pytest

from keymgr_helpers import openssl, outside_ca, outside_chain


class Files:
    """Serves {path: bytes} on 127.0.0.1; counts the requests."""

    def __init__(self):
        self.files, self.hits = {}, []
        files, hits = self.files, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                body = files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-cert")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web():
    w = Files()
    yield w
    w.stop()


def signed_leaf(moat, name, ca, aia_url):
    d = moat.dir
    moat.ok("key", "new", name, "--cn", f"{name}.aia.test", "--csr-out", f"{name}.csr")
    ext = d / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                   + (f"authorityInfoAccess=caIssuers;URI:{aia_url}\n" if aia_url else ""))
    openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
            "-days", "30", "-copy_extensions", "copy", "-extfile", ext, "-out", d / f"{name}.pem")
    return d / f"{name}.pem"


def der(pem):
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"], capture_output=True,
                          check=True, timeout=60).stdout


def test_missing_intermediate_is_fetched_and_checked(moat, web):
    ikey, icrt, root = outside_chain(moat.dir)
    web.files["/int.der"] = der(icrt)
    leaf = signed_leaf(moat, "w", (ikey, icrt), web.url + "/int.der")
    r = moat.ok("cert", "install", "w", leaf)
    assert f"fetched the missing intermediate from {web.url}/int.der" in r.stdout, r.stdout
    assert web.hits == ["/int.der"]
    chain = moat.ok("cert", "export", "w", "--chain").stdout
    assert chain.count("BEGIN CERTIFICATE") == 2
    (moat.dir / "chain.pem").write_text(chain)
    openssl("verify", "-CAfile", root, "-untrusted", moat.dir / "chain.pem", moat.dir / "chain.pem")
    audit = moat.ok("store", "audit", "--json").stdout
    assert "intermediate fetched from" in audit


def test_a_certificate_that_did_not_sign_is_not_used(moat, web):
    ikey, icrt, _ = outside_chain(moat.dir)
    (moat.dir / "o").mkdir()
    okey, ocrt = outside_ca(moat.dir / "o", "Someone Else")
    web.files["/int.der"] = der(ocrt)
    leaf = signed_leaf(moat, "w", (ikey, icrt), web.url + "/int.der")
    r = moat.ok("cert", "install", "w", leaf)
    assert "did not sign" in r.stderr and "fetched" not in r.stdout, (r.stdout, r.stderr)
    assert moat.ok("cert", "export", "w", "--chain").stdout.count("BEGIN CERTIFICATE") == 1


def test_no_fetch_when_told_or_when_the_chain_is_given(moat, web):
    ikey, icrt, _ = outside_chain(moat.dir)
    web.files["/int.der"] = der(icrt)
    leaf = signed_leaf(moat, "w", (ikey, icrt), web.url + "/int.der")
    moat.ok("cert", "install", "w", leaf, "--no-fetch")
    leaf2 = signed_leaf(moat, "v", (ikey, icrt), web.url + "/int.der")
    moat.ok("cert", "install", "v", leaf2, "--chain", icrt)
    assert web.hits == []


def test_unreachable_or_missing_url_is_a_note(moat, web):
    ikey, icrt, _ = outside_chain(moat.dir)
    leaf = signed_leaf(moat, "w", (ikey, icrt), web.url + "/nothing.der")
    r = moat.ok("cert", "install", "w", leaf)
    assert "could not fetch the missing intermediate" in r.stderr and "404" in r.stderr, r.stderr
    # Too big: the size cap holds.
    web.files["/big.der"] = b"0" * (200 * 1024)
    leaf = signed_leaf(moat, "v", (ikey, icrt), web.url + "/big.der")
    r = moat.ok("cert", "install", "v", leaf)
    assert "could not fetch the missing intermediate" in r.stderr, r.stderr
