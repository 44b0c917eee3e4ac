"""CA publication in `moat serve` (ca_publish: true): the CA certificates, the CRLs and the trust page
under /.well-known/moat/ over https and plain http, checked against what the CLI exports and with
openssl; a chain from moat's intermediate that curl and openssl accept with the root alone."""
import json
import re
import socket
import subprocess
import time

import pytest

from keymgr_helpers import fingerprint, openssl
from serve_helpers import CA, config, free_port, get, read_response, site, wait_for
from store_rows import tamper_store

BASE = "/.well-known/moat/"
CERT_TYPE = "application/x-x509-ca-cert"
CRL_TYPE = "application/pkix-crl"


def plain_get(port, path, host="localhost", method="GET", headers=()):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        h = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        for k, v in headers:
            h += f"{k}: {v}\r\n"
        s.sendall((h + "\r\n").encode())
        st, hd, body, _ = read_response(s, head_only=(method == "HEAD"))
        return st, hd, body


class Hierarchy:
    """moat's CA with a root and an intermediate, a server certificate for localhost from the
    intermediate, and a running server with one publishing site and one that does not publish."""

    def __init__(self, moat, root_cn="Publish Test Root"):
        m = self.m = moat
        m.ok("ca", "init", "--cn", root_cn)
        m.ok("ca", "init", "--intermediate", "--cn", "Publish Test Issuing")
        m.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost,IP:127.0.0.1")
        m.ok("ca", "issue", "other", "--cn", "other.test", "--san", "DNS:other.test")
        self.expected = {
            "ca.pem": m.ok("ca", "cert").stdout.encode(),
            "root.pem": m.ok("ca", "cert", "--root").stdout.encode(),
        }
        for name, args in (("ca.der", ()), ("root.der", ("--root",))):
            m.ok("ca", "cert", "--der", "--out", name, *args)
            self.expected[name] = (m.dir / name).read_bytes()
        for name, pem in (("ca.pem", "inter.pem"), ("root.pem", "root.pem")):
            (m.dir / pem).write_bytes(self.expected[name])
        self.port, self.http_port = free_port(), free_port()
        self.port_off, self.http_off = free_port(), free_port()
        m.serve(config(m, [
            site(["localhost", "127.0.0.1"], self.port, http_port=self.http_port,
                 extra="ca_publish: true\nrequire_secure_channel: true"),
            site(["other.test"], self.port_off, http_port=self.http_off)]),
            wait=(self.port, self.http_port, self.port_off))

    def crl(self, root=False):
        name = "root.crl" if root else "ca.crl"
        self.m.ok("ca", "crl", "--der", "--out", name, *(("--root",) if root else ()))
        return (self.m.dir / name).read_bytes()

    def fetch(self, path, secure=True, **kw):
        if secure:
            return get(self.port, path, sni="localhost", **kw)
        return plain_get(self.http_port, path, **kw)


@pytest.fixture
def ca(moat):
    return Hierarchy(moat)


def test_every_path_over_https_and_http(ca):
    expected = dict(ca.expected, **{"ca.crl": ca.crl(), "root.crl": ca.crl(root=True)})
    types = {"ca.pem": CERT_TYPE, "ca.der": CERT_TYPE, "root.pem": CERT_TYPE, "root.der": CERT_TYPE,
             "ca.crl": CRL_TYPE, "root.crl": CRL_TYPE}
    for secure in (True, False):
        for name, want in expected.items():
            st, hd, body = ca.fetch(BASE + name, secure=secure)
            assert st == 200, (name, secure, st)
            assert hd["content-type"] == types[name]
            assert int(hd["content-length"]) == len(want) and body == want, (name, secure)
            assert hd["etag"].startswith('"') and "last-modified" in hd
            st, hd2, body = ca.fetch(BASE + name, secure=secure, method="HEAD")
            assert st == 200 and body == b"" and hd2["content-length"] == hd["content-length"]
            assert hd2["etag"] == hd["etag"] and hd2["content-type"] == types[name]
            st, hd3, body = ca.fetch(BASE + name, secure=secure, headers=[("If-None-Match", hd["etag"])])
            assert st == 304 and body == b"" and hd3["etag"] == hd["etag"]
            st, _, body = ca.fetch(BASE + name, secure=secure,
                                   headers=[("If-Modified-Since", hd["last-modified"])])
            assert st == 304 and body == b""
            # If-Match (RFC 9110 §13.1.1): a CRL fetched only if it is still the one the client holds
            st, _, body = ca.fetch(BASE + name, secure=secure, headers=[("If-Match", '"stale"')])
            assert st == 412 and body != want, (name, secure, st)
            st, _, body = ca.fetch(BASE + name, secure=secure, headers=[("If-Match", hd["etag"])])
            assert st == 200 and body == want
            st, _, _ = ca.fetch(BASE + name, secure=secure,
                                headers=[("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")])
            assert st == 412
    # The DER files are what openssl reads; the root is self-signed, the intermediate chains to it.
    (ca.m.dir / "got.der").write_bytes(ca.fetch(BASE + "ca.der")[2])
    text = openssl("x509", "-inform", "DER", "-in", ca.m.dir / "got.der", "-noout", "-subject").stdout
    assert "Publish Test Issuing" in text
    openssl("crl", "-inform", "DER", "-in", ca.m.dir / "ca.crl", "-noout", "-CAfile", ca.m.dir / "inter.pem")
    openssl("crl", "-inform", "DER", "-in", ca.m.dir / "root.crl", "-noout", "-CAfile", ca.m.dir / "root.pem")
    # Other methods are refused, with the methods that work.
    st, hd, _ = ca.fetch(BASE + "root.pem", method="POST")
    assert st == 405 and "GET" in hd["allow"]


def test_plain_http_is_not_redirected_but_the_rest_is(ca):
    st, _, _ = plain_get(ca.http_port, BASE + "root.pem")
    assert st == 200
    st, hd, _ = plain_get(ca.http_port, "/index.html")
    assert st == 301 and hd["location"].startswith("https://")


def test_the_folder_without_its_slash_leads_to_the_trust_page(ca):
    st, hd, _ = ca.fetch("/.well-known/moat")
    assert st == 301 and hd["location"] == "/.well-known/moat/"
    st, _, body = ca.fetch(hd["location"])
    assert st == 200 and b"Publish Test Root" in body
    st, _, _ = get(ca.port_off, "/.well-known/moat", sni="other.test")
    assert st == 404, "only publishing sites answer it"


def test_the_folder_without_its_slash_stays_on_plain_http(ca):
    # A client that does not trust the root yet cannot follow a redirect to https: it goes to the folder.
    st, hd, _ = ca.fetch("/.well-known/moat", secure=False)
    assert st == 301 and hd["location"] == "/.well-known/moat/", hd
    st, _, body = ca.fetch(hd["location"], secure=False)
    assert st == 200 and b"Publish Test Root" in body
    st, hd, _ = ca.fetch("/.well-known/moatx", secure=False)
    assert st == 301 and hd["location"].startswith("https://"), "only the folder itself is exempt"


def test_without_ca_publish_every_path_is_404(ca):
    names = ["", "ca.pem", "ca.der", "root.pem", "root.der", "ca.crl", "root.crl"]
    for name in names:
        st, _, body = get(ca.port_off, BASE + name, sni="other.test")
        assert st == 404, name
        assert b"BEGIN CERTIFICATE" not in body
        st, _, _ = plain_get(ca.http_off, BASE + name, host="other.test")
        assert st == 404, name


def test_revocation_reaches_the_served_crl(ca):
    m = ca.m
    serial = json.loads(m.ok("key", "show", "other", "--json").stdout)["serial"]
    before = ca.fetch(BASE + "ca.crl")[2]
    (m.dir / "before.crl").write_bytes(before)
    t = openssl("crl", "-inform", "DER", "-in", m.dir / "before.crl", "-noout", "-text").stdout
    assert serial not in t.replace(":", "").upper()
    m.ok("ca", "revoke", "other", "--reason", "superseded", "--force")  # the site other.test serves it
    t0 = time.time()
    after = wait_for(lambda: (b := ca.fetch(BASE + "ca.crl", secure=False)[2]) != before and b, timeout=5)
    elapsed = time.time() - t0
    assert after, "the served CRL did not change after moat ca revoke"
    assert elapsed < 2.5, f"the served CRL took {elapsed:.1f}s to follow the revocation"
    assert after == ca.crl()  # what the store holds, byte for byte
    (m.dir / "after.crl").write_bytes(after)
    t = openssl("crl", "-inform", "DER", "-in", m.dir / "after.crl", "-noout", "-text").stdout
    assert serial in t.replace(":", "").upper() and "Superseded" in t
    openssl("crl", "-inform", "DER", "-in", m.dir / "after.crl", "-noout", "-CAfile", m.dir / "inter.pem")
    # The leaf now fails a CRL check against what the server published.
    openssl("crl", "-inform", "DER", "-in", m.dir / "after.crl", "-out", m.dir / "after.pem")
    m.ok("cert", "export", "other", "--out", "other.pem")
    v = openssl("verify", "-crl_check", "-CAfile", m.dir / "root.pem", "-untrusted", m.dir / "inter.pem",
                "-CRLfile", m.dir / "after.pem", m.dir / "other.pem", check=False)
    assert v.returncode != 0 and "revoked" in v.stdout + v.stderr


def test_resigned_crl_is_published(ca):
    """moat ca crl re-signs a missing or due CRL; the server serves the new one."""
    m = ca.m

    def number(der):
        (m.dir / "n.crl").write_bytes(der)
        t = openssl("crl", "-inform", "DER", "-in", m.dir / "n.crl", "-noout", "-text").stdout
        return int(re.search(r"CRL Number:\s*(\S+)", t).group(1), 0)
    first = ca.fetch(BASE + "ca.crl")[2]
    tamper_store(m.store, "delete from settings where name = 'ca.crl.intermediate'")
    m.ok("ca", "crl", "--out", "new.pem")
    after = wait_for(lambda: (b := ca.fetch(BASE + "ca.crl")[2]) != first and b, timeout=5)
    assert after and number(after) == number(first) + 1


def test_trust_page_names_the_fingerprint(moat):
    h = Hierarchy(moat, root_cn="Corp <Root> & \"Co\"")
    st, hd, body = h.fetch(BASE)
    assert st == 200 and hd["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in hd["content-security-policy"]
    page = body.decode()
    assert fingerprint(moat.dir / "root.pem") in page
    assert "Corp &lt;Root&gt; &amp; &quot;Co&quot;" in page and "<Root>" not in page
    for needle in ("update-ca-certificates", "update-ca-trust", "security add-trusted-cert",
                   "certutil -addstore", "certutil -d sql:", "curl --cacert root.pem", 'href="root.pem"'):
        assert needle in page, needle
    st, _, body2 = h.fetch(BASE, secure=False)
    assert st == 200 and body2 == body
    st, hd2, body3 = h.fetch(BASE, method="HEAD")
    assert st == 200 and body3 == b"" and hd2["content-length"] == str(len(body))


def test_site_without_a_ca_says_so(moat):
    outside = CA(moat.dir)
    outside.issue(moat, "www", ["localhost"])
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, extra="ca_publish: true")]), wait=(port,))
    st, _, body = get(port, BASE + "root.pem", cafile=outside.pem)
    assert st == 404 and b"moat ca init" in body


def test_chain_from_the_intermediate_is_trusted_with_the_root_alone(ca):
    m = ca.m
    url = f"https://localhost:{ca.port}{BASE}ca.pem"
    r = subprocess.run(["curl", "-sS", "-f", "--cacert", str(m.dir / "root.pem"), "--resolve",
                        f"localhost:{ca.port}:127.0.0.1", "-o", "-", url], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == ca.expected["ca.pem"]
    # The site sends leaf + intermediate, never the root.
    s = openssl("s_client", "-connect", f"127.0.0.1:{ca.port}", "-servername", "localhost", "-showcerts",
                "-CAfile", m.dir / "root.pem", input="")
    certs = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", s.stdout, re.S)
    assert len(certs) == 2, s.stdout
    assert "Verify return code: 0 (ok)" in s.stdout
    (m.dir / "leaf.pem").write_text(certs[0] + "\n")
    (m.dir / "sent-inter.pem").write_text(certs[1] + "\n")
    assert fingerprint(m.dir / "sent-inter.pem") == fingerprint(m.dir / "inter.pem")
    assert fingerprint(m.dir / "leaf.pem") != fingerprint(m.dir / "root.pem")
    v = openssl("verify", "-CAfile", m.dir / "root.pem", "-untrusted", m.dir / "inter.pem", m.dir / "leaf.pem")
    assert v.stdout.strip().endswith("OK")


def test_a_long_crl_is_served_whole(ca):
    """A CRL far larger than one output buffer (here ~200 kB, made with openssl ca) streams out intact."""
    m = ca.m
    d = m.dir / "long"
    d.mkdir()
    outside = CA(d, name="Long CRL Issuer")
    lines = [f"R\t301231235959Z\t240101000000Z\t{i:040X}\tunknown\t/CN=n{i}" for i in range(1, 8001)]
    (d / "index.txt").write_text("\n".join(lines) + "\n")
    (d / "crlnumber").write_text("01\n")
    (d / "ca.cnf").write_text(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {d}/index.txt\n"
                              f"crlnumber = {d}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n")
    openssl("ca", "-batch", "-gencrl", "-config", d / "ca.cnf", "-keyfile", outside.key, "-cert", outside.pem,
            "-out", d / "long.pem")
    openssl("crl", "-in", d / "long.pem", "-outform", "DER", "-out", d / "long.der")
    want = (d / "long.der").read_bytes()
    assert len(want) > 150000
    tamper_store(m.store, "update settings set value = ? where name = 'ca.crl.intermediate'",
                 ((d / "long.pem").read_text(),))
    m.ok("ca", "issue", "bump", "--cn", "bump.test")  # moves the store generation: the server reloads
    got = wait_for(lambda: (b := ca.fetch(BASE + "ca.crl")[2]) == want and b, timeout=5)
    assert got == want
    st, hd, body = plain_get(ca.http_port, BASE + "ca.crl")
    assert st == 200 and int(hd["content-length"]) == len(want) and body == want


def test_offline_root_and_client_certificate_sites_still_publish(moat):
    """With the root key taken offline the root and its CRL are still published, and a site that
    requires client certificates hands out its CA without asking for one."""
    m = moat
    pw = m.dir / "pw.txt"
    pw.write_text("offline root password\n")
    m.ok("ca", "init", "--cn", "Offline Root", "--exportable")
    m.ok("ca", "init", "--intermediate", "--cn", "Online Issuing")
    m.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost")
    m.ok("ca", "export-root", "--out", "root.p12", "--password-file", pw, "--remove-key")
    root_pem = m.ok("ca", "cert", "--root").stdout.encode()
    m.ok("ca", "crl", "--root", "--der", "--out", "root.crl")
    (m.dir / "root.pem").write_bytes(root_pem)
    port = free_port()
    m.serve(config(m, [site(["localhost"], port, default=True,
                            extra="ca_publish: true\nclient_certificate: required")]), wait=(port,))
    st, _, body = get(port, BASE + "root.pem", cafile=m.dir / "root.pem")
    assert st == 200 and body == root_pem
    st, _, body = get(port, BASE + "root.crl", cafile=m.dir / "root.pem")
    assert st == 200 and body == (m.dir / "root.crl").read_bytes()
    st, hd, _ = get(port, "/", cafile=m.dir / "root.pem")
    assert st == 403 and hd["x-moat-client-cert"] == "none"  # the rest of the site still asks
