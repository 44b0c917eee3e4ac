"""moat trust crl add: a CRL for a trusted CA whose client certificates name no distribution point.
Without it they are revocation-unknown (denied by default); with it, a running server answers from it at
once, a restart keeps it, and the wrong CRL, an out-of-date one or an unknown anchor are refused."""
import json
import time

from ccert_helpers import client, serve, verdict
from conftest import free_port


def wait_verdict(port, cert, ca_pem, want, timeout=10):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = verdict(port, cert, ca_pem)[:2]
        if got == want:
            return got
        time.sleep(0.2)
    raise AssertionError(f"verdict {got}, expected {want}")


def test_added_crl_decides_for_certificates_without_a_distribution_point(moat, corp):  # noqa: F811
    pki, srv, root, ca_pem = corp
    carol = client(pki, "carol")
    mallory = client(pki, "mallory")
    port = free_port()
    serve(moat, root, [port])
    assert verdict(port, carol, ca_pem)[:2] == (403, "revocation-unknown")

    pki.revoke("mallory", "corp")
    crl = pki.gencrl("corp", moat.dir / "corp.crl")
    r = moat.ok("trust", "crl", "add", "corp", crl)
    assert 'added the CRL of anchor "corp"' in r.stdout and "1 revoked" in r.stdout, r.stdout
    # The running server applies it with the store's next generation: no reload, no restart.
    wait_verdict(port, carol, ca_pem, (200, None))
    assert verdict(port, mallory, ca_pem)[:2] == (403, "revoked")
    assert srv.hits == 0  # never fetched

    assert 'added by hand for anchor "corp"' in moat.ok("trust", "list").stdout
    audit = moat.ok("store", "audit", "--json").stdout
    assert "trust.crl.add" in audit
    # A restart reads it from the store.
    assert moat.stop_all() == []
    port2 = free_port()
    serve(moat, root, [port2])
    assert verdict(port2, carol, ca_pem)[:2] == (200, None)
    assert verdict(port2, mallory, ca_pem)[:2] == (403, "revoked")


def test_the_wrong_crl_is_refused(moat, corp):  # noqa: F811
    pki, srv, root, ca_pem = corp
    pki.root("other", cn="Other Root")
    other = pki.gencrl("other", moat.dir / "other.crl")
    def crls():
        return [a.get("crls") for a in json.loads(moat.ok("trust", "list", "--json").stdout)]
    before = crls()
    r = moat.fails("trust", "crl", "add", "corp", other)
    assert 'not one of anchor "corp"' in r.stderr and "moat inspect" in r.stderr, r.stderr
    r = moat.fails("trust", "crl", "add", "nobody", other)
    assert 'no trust anchor named "nobody"' in r.stderr
    stale = pki.gencrl("corp", moat.dir / "stale.crl", last=-10, next=-3)
    r = moat.fails("trust", "crl", "add", "corp", stale)
    assert "out of date" in r.stderr and "fresh one" in r.stderr
    (moat.dir / "junk.crl").write_text("not a crl\n")
    moat.fails("trust", "crl", "add", "corp", moat.dir / "junk.crl")
    assert crls() == before
    # JSON result.
    fresh = pki.gencrl("corp", moat.dir / "fresh.crl")
    doc = json.loads(moat.ok("--json", "trust", "crl", "add", "corp", fresh).stdout)
    assert doc["anchor"] == "corp" and doc["revoked_count"] == 0 and doc["next_update"].endswith("Z")
