"""/.well-known/moat/whoami: the server's view of the client certificate of the connection, in text and
JSON, whatever the location requires; and a revocation by moat's CA on a running server."""
import json
import subprocess
import time

import pytest

from ccert_helpers import client_pem_from_moat, curl
from serve_helpers import config, free_port, site, wait_for


def test_whoami_text_and_json(moat, setup):  # noqa: F811
    root, ca_pem = setup
    alice = client_pem_from_moat(moat, "alice", "alice")
    server_only = client_pem_from_moat(moat, "srv", "srv.example", profile="server")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="client_certificate: required")]),
               wait=[port])
    # without a certificate: the endpoint still answers (the site requires one everywhere else)
    st, out, _ = curl(port, "/.well-known/moat/whoami", cafile=ca_pem)
    assert st == 200 and "verdict: none" in out and "subject: -" in out
    assert "cache-control: no-store" in out.lower()
    assert curl(port, "/", cafile=ca_pem)[0] == 403
    # with one: verdict, subject, serial, issuer, not after
    st, out, err = curl(port, "/.well-known/moat/whoami", cert=alice, cafile=ca_pem)
    assert st == 200, err
    assert "verdict: valid" in out and "subject: CN=alice" in out and "issuer: CN=Moat Test CA" in out
    serial = [l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("serial: ")][0]
    assert len(serial) >= 16 and all(ch in "0123456789ABCDEF" for ch in serial)
    st, out, _ = curl(port, "/.well-known/moat/whoami?format=json", cert=alice, cafile=ca_pem)
    body = json.loads(out.split("\r\n\r\n", 1)[1])
    assert body["verdict"] == "valid" and body["subject"] == "CN=alice" and body["serial"] == serial
    assert body["not_after"].endswith("Z") and body["site"] == "localhost"
    assert "application/json" in out.lower()
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and f"ccert=ok subject=CN=alice serial={serial}" in log.read_text(),
                    timeout=5), "the access log records the subject and serial"
    # the reason of a bad certificate, in JSON through the Accept header
    r = subprocess.run(["curl", "-sS", "--cacert", str(ca_pem), "--cert", str(server_only), "-H",
                        "Accept: application/json", f"https://localhost:{port}/.well-known/moat/whoami"],
                       capture_output=True, timeout=30)
    assert json.loads(r.stdout)["verdict"] == "wrong-purpose", r.stderr


def test_whoami_spells_a_name_as_the_store_does(moat, setup):  # noqa: F811
    """One text form of an X.509 name: whoami, the CA's list and the access log (escaped there, as every
    byte outside printable ASCII is) agree on a subject with UTF-8 in it."""
    root, ca_pem = setup
    jorg = client_pem_from_moat(moat, "jorg", "Jörg Müller")
    listed = [c["subject"] for c in json.loads(moat.ok("--json", "ca", "list").stdout) if "rg" in c["subject"]]
    assert listed == ["CN=Jörg Müller"], listed
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="client_certificate: required")]),
               wait=[port])
    st, out, err = curl(port, "/.well-known/moat/whoami?format=json", cert=jorg, cafile=ca_pem)
    assert st == 200, err
    assert json.loads(out.split("\r\n\r\n", 1)[1])["subject"] == "CN=Jörg Müller"
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and "subject=CN=J%C3%B6rg%20M%C3%BCller" in log.read_text(), timeout=5)


def test_whoami_on_a_site_without_client_certificates(moat, setup):  # noqa: F811
    root, ca_pem = setup
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)]), wait=[port])
    st, out, _ = curl(port, "/.well-known/moat/whoami", cafile=ca_pem)
    assert st == 200 and "verdict: none" in out and "does not ask for client certificates" in out


def test_revocation_applies_to_a_running_server(moat, setup):  # noqa: F811
    root, ca_pem = setup
    if moat.run("ca", "revoke", "--help").returncode != 0:
        pytest.skip("moat ca revoke is not in this build")
    alice = client_pem_from_moat(moat, "alice", "alice")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="client_certificate: required")]),
               wait=[port])
    assert curl(port, "/", cert=alice, cafile=ca_pem)[0] == 200
    moat.ok("ca", "revoke", "alice")
    deadline = time.time() + 10
    while time.time() < deadline:
        st, out, _ = curl(port, "/", cert=alice, cafile=ca_pem)
        if st == 403:
            break
        time.sleep(0.3)
    assert st == 403 and "x-moat-client-cert: revoked" in out.lower()
