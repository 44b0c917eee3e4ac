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
