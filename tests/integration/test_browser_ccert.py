"""Client certificates for a browser user: a certificate from `moat ca export-client`, imported into the
NSS database of headless Chromium and picked by an auto-select rule (a profile setting, or the
AutoSelectCertificateForUrls policy an administrator deploys), opens a protected location; without one,
the browser shows the 403 page with the reason, and the access log records both."""
import contextlib
import types

import pytest

from browser_helpers import auto_select_policy, dump_dom, needs_chromium, nss_home, profile_with_auto_select
from serve_helpers import config, free_port, openssl, site, wait_for

pytestmark = needs_chromium

CA_CN = "Browser CCert CA"
SECRET = "only for certificate holders"


@pytest.fixture
def protected(moat):
    """moat's CA, a site certificate for localhost/127.0.0.1, alice's PKCS#12, and a running server whose
    /private location requires a client certificate."""
    root = moat.dir / "www"
    (root / "private").mkdir(parents=True)
    (root / "index.html").write_text("<!DOCTYPE html><title>public</title><p>public</p>\n")
    (root / "private" / "index.html").write_text(f"<!DOCTYPE html><title>private</title><p>{SECRET}</p>\n")
    moat.ok("ca", "init", "--cn", CA_CN)
    moat.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost", "--san", "IP:127.0.0.1")
    moat.ok("ca", "issue", "alice", "--cn", "alice@example.com", "--profile", "client")
    password = moat.dir / "alice.pw"
    password.write_text("correct horse\n")
    p12 = moat.dir / "alice.p12"
    moat.ok("ca", "export-client", "alice", "--out", p12, "--password-file", password)
    ca_pem = moat.dir / "moat-ca.pem"
    ca_pem.write_text(moat.ok("ca", "cert", "--root").stdout)
    # the serial as the bundle itself states it, independently of the server
    leaf = openssl("pkcs12", "-in", p12, "-passin", f"file:{password}", "-nokeys", "-clcerts").stdout
    serial = openssl("x509", "-noout", "-serial", input=leaf).stdout.decode().strip().split("=", 1)[1]
    port = free_port()
    moat.serve(config(moat, [site(["localhost", "127.0.0.1"], port, root=root, extra="""
client_certificate: optional
locations:
  - path: /private
    client_certificate: required
""")]), wait=[port])
    return types.SimpleNamespace(origin=f"https://127.0.0.1:{port}", ca_pem=ca_pem, p12=p12, password=password,
                                 serial=serial, log=moat.dir / "access.log")


def load(url, env, profile):
    dom, err, timed_out = dump_dom(url, env, profile)
    assert not timed_out, f"chromium did not finish loading {url}: it waits for a client certificate " \
                          f"choice when no auto-select rule matches\n{err[-1500:]}"
    return dom


@pytest.mark.parametrize("rule", ["profile", "policy"])
def test_chromium_opens_the_protected_page_with_alice(moat, protected, rule):
    env = nss_home(moat.dir / "home", protected.ca_pem, protected.p12, protected.password)
    profile = moat.dir / "profile"
    with contextlib.ExitStack() as rules:
        if rule == "profile":
            profile_with_auto_select(profile, protected.origin, CA_CN)
        else:
            rules.enter_context(auto_select_policy(protected.origin, CA_CN))
        dom = load(f"{protected.origin}/private/", env, profile)
        whoami = load(f"{protected.origin}/.well-known/moat/whoami", env, profile)
    assert SECRET in dom, f"the protected page did not load:\n{dom[:800]}"
    assert "verdict: valid" in whoami and "subject: CN=alice@example.com" in whoami, whoami[:800]
    assert f"serial: {protected.serial}" in whoami and f"issuer: CN={CA_CN}" in whoami, whoami[:800]
    assert wait_for(lambda: protected.log.exists() and
                    f"ccert=ok subject=CN=alice@example.com serial={protected.serial}" in protected.log.read_text(),
                    timeout=5), f"the access log names alice:\n{protected.log.read_text()}"
    assert '"GET /private/" 200 ' in protected.log.read_text()


def test_chromium_without_a_certificate_sees_the_reason(moat, protected):
    # the same trust and auto-select rule, but nothing to choose: Chromium goes on without a certificate
    env = nss_home(moat.dir / "home", protected.ca_pem)
    profile = moat.dir / "profile"
    profile_with_auto_select(profile, protected.origin, CA_CN)
    dom = load(f"{protected.origin}/private/", env, profile)
    assert "403 Forbidden" in dom and "(reason: none)" in dom, f"no 403 page naming the reason:\n{dom[:800]}"
    assert SECRET not in dom
    assert "ERR_" not in dom, "the handshake itself must not fail for a client-certificate reason"
    public = load(f"{protected.origin}/", env, profile)
    assert "<p>public</p>" in public, f"the public part is served without a certificate:\n{public[:800]}"
    assert wait_for(lambda: protected.log.exists() and '"GET /private/" 403.7 ' in protected.log.read_text()
                    and "ccert=none" in protected.log.read_text(), timeout=5), protected.log.read_text()
