"""The serving plan answers "what would be served" the same way for moat serve, serve --check, doctor and
the check before commit: every problem listed, not the first (issue 11, items 5 to 7)."""
import json

from keymgr_helpers import openssl
from serve_helpers import config, free_port, site


def _outside_root(d, name):
    """A CA certificate from outside moat (for moat trust add)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            d / f"{name}.key", "-out", d / f"{name}.pem", "-days", "30", "-subj", f"/CN={name} Root",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return d / f"{name}.pem"


def _sites(m, port, *pairs):
    """A config with one site per (host, certificate) pair."""
    return config(m, [site([h], port, extra=f"certificate: {c}") for h, c in pairs])


# 7. serve --check flags a revoked certificate of moat's own CA and a name mismatch, and lists every
#    problem, the sites it would not serve included.
def test_serve_check_lists_every_problem(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "good", "--cn", "good.example.test")
    m.ok("ca", "issue", "rev", "--cn", "rev.example.test")
    m.ok("ca", "issue", "other", "--cn", "other.example.test")
    m.ok("ca", "revoke", "rev", "--reason", "key-compromise")
    cfg = m.dir / "moat.yaml"
    port = free_port()
    cfg.write_text(_sites(m, port, ("good.example.test", "good")))
    r = m.ok("serve", "-c", cfg, "--check")
    assert "good.example.test" in r.stdout and "ok" in r.stdout, r.stdout
    cfg.write_text(_sites(m, port, ("good.example.test", "good"), ("rev.example.test", "rev"),
                          ("mismatch.example.test", "other"), ("gone.example.test", "nosuchkey"),
                          ("gone2.example.test", "nosuchkey2")))
    r = m.fails("serve", "-c", cfg, "--check")
    err = r.stderr
    assert 'site "rev.example.test" serves the certificate of key "rev"' in err, err
    assert '"revoked" OCSP staple' in err, err
    assert 'site "mismatch.example.test": no certificate it serves covers mismatch.example.test' in err, err
    assert "DNS:other.example.test" in err, err
    assert "moat key renew other --san DNS:mismatch.example.test" in err, err
    assert "site gone.example.test is not served" in err and "nosuchkey" in err, err
    assert "site gone2.example.test is not served" in err and "nosuchkey2" in err, err
    assert "4 problems" in err, err
    # the site without a problem is still listed with what it serves
    assert 'site good.example.test: key "good"' in r.stdout, r.stdout


# 7. The check before commit names every site the server would not load after the change, not the first.
def test_check_before_commit_names_every_refused_site(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "a", "--cn", "a.test")
    m.ok("ca", "issue", "b", "--cn", "b.test")
    m.ok("trust", "add", _outside_root(m.dir, "corp"), "--name", "corp")
    cfg = m.dir / "site.yaml"
    trusting = "client_trust: [corp]\nclient_certificate: required"
    cfg.write_text(config(m, [site(["a.test"], free_port(), extra=trusting),
                              site(["b.test"], free_port(), extra=trusting)]))
    r = m.fails("trust", "remove", "corp", "-c", cfg)
    assert "the server would not load this change" in r.stderr, r.stderr
    assert 'site "a.test": client_trust "corp"' in r.stderr, r.stderr
    assert 'site "b.test": client_trust "corp"' in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr, r.stderr
    assert "corp" in {x["name"] for x in json.loads(m.ok("trust", "list", "--json").stdout)}


def _doctor(m, *args):
    r = m.run("doctor", "--json", "--timeout", "1", *args)
    assert r.returncode in (0, 1), f"doctor exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    m._check_sanitizers(r.stderr)
    return json.loads(r.stdout)["findings"]


def _found(findings, fid, subject):
    return [f for f in findings if f["id"] == fid and f["subject"] == subject]


# 6. doctor finds what the server finds, by the same code: a revoked site certificate (served with a
#    "revoked" staple), a missing document root and a master key others can read (serve refuses it).
def test_doctor_finds_revoked_missing_root_and_readable_master_key(moat):
    m = moat
    m.ok("ca", "init", "--cn", "Root")
    m.ok("ca", "issue", "good", "--cn", "good.example.test")
    m.ok("ca", "issue", "rev", "--cn", "rev.example.test")
    m.ok("ca", "revoke", "rev")
    www = m.dir / "www"
    www.mkdir()
    port = free_port()
    cfg = m.dir / "moat.yaml"
    cfg.write_text(config(m, [site(["good.example.test"], port, root=m.dir / "nosuchdir",
                                   extra="certificate: good"),
                              site(["rev.example.test"], port, root=www, extra="certificate: rev")]))
    findings = _doctor(m, "-c", cfg)
    rev = _found(findings, "cert-revoked", "site rev.example.test")
    assert rev and 'serves the certificate of key "rev"' in rev[0]["what"], findings
    root = _found(findings, "site-root-unusable", "site good.example.test")
    assert root and "nosuchdir" in root[0]["what"], findings
    assert not _found(findings, "site-root-unusable", "site rev.example.test"), findings
    assert not _found(findings, "cert-revoked", "site good.example.test"), findings
    # the same two problems from serve --check
    err = m.fails("serve", "-c", cfg, "--check").stderr
    assert "nosuchdir" in err and 'serves the certificate of key "rev"' in err, err
    # a master key others can read: serve refuses it, and doctor says so with the store's own words
    mk = m.dir / "moat.db.key"
    assert mk.exists()
    cfg.write_text(config(m, [site(["good.example.test"], port, root=www, extra="certificate: good")]))
    assert not [f for f in _doctor(m, "-c", cfg) if f["id"] == "master-key-mode"]
    mk.chmod(0o644)
    refused = m.fails("serve", "-c", cfg, "--check").stderr
    assert "other users can read it" in refused, refused
    mode = [f for f in _doctor(m, "-c", cfg) if f["id"] == "master-key-mode"]
    assert mode and "other users can read it" in mode[0]["what"] and "chmod 600" in mode[0]["fix"], mode
    mk.chmod(0o600)


def _peer(port, sni):
    """The certificate (DER) the server presents for <sni>, or None when the handshake fails."""
    import ssl
    from serve_helpers import tls_connect
    try:
        s = tls_connect(port, sni=sni, verify=False)
    except (OSError, ssl.SSLError):
        return None
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


def _refusal(m):
    return json.loads(m.ok("store", "info", "--json").stdout)["server"]["refusal"]


# 5. A site whose client trust anchor or root: folder fails keeps its last good state on a hot reload while
#    the other sites get their changes.
def test_anchor_or_root_failure_of_one_site_on_reload_keeps_it_and_the_others_change(moat):
    from serve_helpers import CA, cert_der, get, wait_for
    m = moat
    ca = CA(m.dir)
    a_first = ca.issue(m, "a", ["a.example.test"])
    ca.issue(m, "b", ["b.example.test"])
    c_first = ca.issue(m, "c", ["c.example.test"])
    m.ok("trust", "add", _outside_root(m.dir, "corp"), "--name", "corp")
    wwwc = m.dir / "wwwc"
    wwwc.mkdir()
    (wwwc / "index.html").write_text("site c\n")
    port = free_port()
    text = config(m, [site(["a.example.test"], port,
                           extra="certificate: a\nclient_trust: [corp]\nclient_certificate: optional"),
                      site(["b.example.test"], port, extra="certificate: b"),
                      site(["c.example.test"], port, root=wwwc, extra="certificate: c")])
    m.serve(text, wait=[port])
    assert _peer(port, "a.example.test") == cert_der(a_first)
    elsewhere = m.dir / "elsewhere"  # no moat.yaml there: the removal is not checked before its commit
    elsewhere.mkdir()
    r = m.fails("trust", "remove", "corp", cwd=elsewhere)  # committed; the server says what it did
    assert 'refused the change for a site and serves generation' in r.stderr, r.stderr
    assert 'site "a.example.test": client_trust "corp"' in r.stderr, r.stderr
    assert 'client_trust "corp"' in _refusal(m), _refusal(m)
    b_new = ca.renew(m, "b", ["b.example.test"])
    assert wait_for(lambda: _peer(port, "b.example.test") == cert_der(b_new), timeout=10)
    # site a keeps its last good state: its certificate (and anchors)
    assert _peer(port, "a.example.test") == cert_der(a_first)
    assert "a.example.test" in _refusal(m) and "b.example.test" not in _refusal(m)
    # the root: folder of c goes away; the config reload refuses site c alone, which keeps its root
    wwwc.rename(m.dir / "wwwc-moved")
    r = m.run("reload", "-c", m.dir / "moat.yaml")
    assert "wwwc" in r.stdout + r.stderr, r
    assert wait_for(lambda: "wwwc" in _refusal(m), timeout=10), _refusal(m)
    status, _, body = get(port, "/index.html", sni="c.example.test")
    assert status == 200 and body == b"site c\n", (status, body)
    assert _peer(port, "c.example.test") == cert_der(c_first)
    b_newer = ca.renew(m, "b", ["b.example.test"])
    assert wait_for(lambda: _peer(port, "b.example.test") == cert_der(b_newer), timeout=10)
    log = (m.dir / "error.log").read_text()
    assert "site c.example.test: its change is refused, it keeps serving its last good certificate" in log, log


# 5. At first start a site whose root: folder or client trust fails is not served, says why, and the others
#    are served.
def test_root_or_anchor_failure_at_start_refuses_that_site_alone(moat):
    from serve_helpers import CA, cert_der
    m = moat
    ca = CA(m.dir)
    good = ca.issue(m, "good", ["good.example.test"])
    ca.issue(m, "noroot", ["noroot.example.test"])
    ca.issue(m, "notrust", ["notrust.example.test"])
    port = free_port()
    text = config(m, [site(["good.example.test"], port, extra="certificate: good"),
                      site(["noroot.example.test"], port, root=m.dir / "nosuchdir", extra="certificate: noroot"),
                      site(["notrust.example.test"], port,
                           extra="certificate: notrust\nclient_trust: [nosuch]\nclient_certificate: required")])
    m.serve(text, wait=[port])
    assert _peer(port, "good.example.test") == cert_der(good)
    assert _peer(port, "noroot.example.test") is None
    assert _peer(port, "notrust.example.test") is None
    log = (m.dir / "error.log").read_text()
    assert "site noroot.example.test is not served" in log and "nosuchdir" in log, log
    assert "site notrust.example.test is not served" in log and 'client_trust "nosuch"' in log, log
    r = m.fails("serve", "-c", m.dir / "moat.yaml", "--check")
    assert "site noroot.example.test is not served" in r.stderr, r.stderr
    assert "site notrust.example.test is not served" in r.stderr and "2 problems" in r.stderr, r.stderr


# 6. doctor says a site without a trust anchor is not served whenever the server refuses it: a site that
#    asks for client certificates only optionally is refused all the same (fail closed).
def test_doctor_client_trust_verdict_is_the_servers(moat):
    from serve_helpers import CA
    m = moat
    CA(m.dir).issue(m, "a", ["a.example"])  # a certificate from outside: no moat CA, no anchor
    cfg = m.dir / "moat.yaml"
    cfg.write_text(config(m, [site(["a.example"], free_port(), extra="client_certificate: optional")]))
    findings = _doctor(m, "-c", cfg)
    assert _found(findings, "client-trust-missing", "site a.example"), findings
    err = m.fails("serve", "-c", cfg, "--check").stderr
    assert "no usable trust anchor" in err, err
    m.ok("ca", "init", "--cn", "Root")
    assert not _found(_doctor(m, "-c", cfg), "client-trust-missing", "site a.example")


def _weak_bundle(d, host, days):
    """A key and certificate for <host> that the server's TLS context refuses (RSA-1024: ee key too small)."""
    openssl("req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout", d / "weak.key", "-out", d / "weak.crt",
            "-days", str(days), "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
            "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment")
    (d / "weak.pem").write_bytes((d / "weak.key").read_bytes() + (d / "weak.crt").read_bytes())
    return d / "weak.pem"


# 5. A site whose TLS context does not build refuses only that site: at start it is not served, on a reload
#    it keeps its last good certificate, and the other sites are served and get their changes.
def test_tls_context_failure_of_one_site(moat):
    from serve_helpers import CA, cert_der
    m = moat
    ca = CA(m.dir)
    good = ca.issue(m, "good", ["good.example.test"])
    m.ok("key", "import", "weak", _weak_bundle(m.dir, "weak.example.test", 30))
    port = free_port()
    text = config(m, [site(["good.example.test"], port, extra="certificate: good"),
                      site(["weak.example.test"], port, extra="certificate: weak")])
    (m.dir / "moat.yaml").write_text(text)
    r = m.fails("serve", "-c", m.dir / "moat.yaml", "--check")
    assert "site weak.example.test is not served" in r.stderr and "ee key too small" in r.stderr, r.stderr
    m.serve(text, wait=[port])
    assert _peer(port, "good.example.test") == cert_der(good)
    assert _peer(port, "weak.example.test") is None
    log = (m.dir / "error.log").read_text()
    assert "site weak.example.test is not served" in log and "ee key too small" in log, log


def test_tls_context_failure_on_reload_keeps_the_last_good_certificate(moat):
    from serve_helpers import CA, cert_der, wait_for
    m = moat
    ca = CA(m.dir)
    b_first = ca.issue(m, "b", ["b.example.test"])
    auto = ca.issue(m, "auto1", ["auto.example.test"], days=10)
    port = free_port()
    m.serve(config(m, [site(["auto.example.test"], port), site(["b.example.test"], port, extra="certificate: b")]),
            wait=[port])
    assert _peer(port, "auto.example.test") == cert_der(auto)
    # certificate: auto now picks the weak certificate (it runs longer), which the TLS context refuses
    r = m.run("key", "import", "weak", _weak_bundle(m.dir, "auto.example.test", 30))
    assert "ee key too small" in r.stdout + r.stderr, r
    assert wait_for(lambda: "ee key too small" in _refusal(m), timeout=10), _refusal(m)
    b_new = ca.renew(m, "b", ["b.example.test"])
    assert cert_der(b_new) != cert_der(b_first)
    assert wait_for(lambda: _peer(port, "b.example.test") == cert_der(b_new), timeout=10)
    assert _peer(port, "auto.example.test") == cert_der(auto)
