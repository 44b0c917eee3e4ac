"""certificate: acme against Debian's pebble with real validation on loopback (pebble-challtestsrv as its
DNS server, nonce rejection on): first issuance with http-01, tls-alpn-01 and dns-01, renewal, a failing
challenge, the ACME server down, kill -9 in the middle of an order, and external account binding."""
import json
import signal
import socket
import ssl
import subprocess
import time

import pytest

from acme_helpers import Pebble, pebble  # noqa: F401 (fixture)
from conftest import wait_port

HOST = "www.example.test"
KEY = "acme." + HOST


def config(pb, challenges, extra_acme="", hosts=(HOST,), extra_site=""):
    return f"""
log: {{ error: error.log }}
acme:
  directory: {pb.directory}
  email: admin@example.test
  accept_terms: true
  trust: [pebble-tls]
  challenges: [{", ".join(challenges)}]
{extra_acme}
sites:
  - hosts: [{", ".join(hosts)}]
    listen: ["127.0.0.1:{pb.tls_port}"]
    http_listen: ["127.0.0.1:{pb.http_port}"]
    certificate: acme
{extra_site}
"""


def served_cert(port, name=HOST):
    """The DER certificate served for <name>, or None while the handshake fails (nothing issued yet)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                return t.getpeercert(binary_form=True)
    except ssl.SSLError:
        return None


def wait_issued(moat, timeout=90, previous=None):
    """Waits until the key has a certificate (other than <previous>); returns its PEM."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = moat.run("cert", "export", KEY)
        if r.returncode == 0 and "BEGIN CERTIFICATE" in r.stdout and r.stdout != previous:
            return r.stdout
        time.sleep(0.5)
    log = (moat.dir / "error.log").read_text(errors="replace") if (moat.dir / "error.log").exists() else ""
    raise AssertionError(f"no certificate for {KEY} after {timeout}s\n{log[-3000:]}")


def issuer_of(pem, moat):
    r = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-ext", "subjectAltName"], input=pem,
                       capture_output=True, text=True, check=True)
    return r.stdout


def start(moat, pb, cfg):
    moat.ok("trust", "add", str(pb.ca_pem), "--name", "pebble-tls")
    return moat.serve(cfg, wait=(pb.http_port,))


def test_http01_first_issuance(moat, pebble):
    pebble.start()
    start(moat, pebble, config(pebble, ["http-01"]))
    pem = wait_issued(moat)
    info = issuer_of(pem, moat)
    assert "Pebble Intermediate" in info and f"DNS:{HOST}" in info
    # The running server picked it up like any other store change.
    want = ssl.PEM_cert_to_DER_cert(pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    deadline = time.time() + 10
    while served_cert(pebble.tls_port) != want and time.time() < deadline:
        time.sleep(0.2)
    assert served_cert(pebble.tls_port) == want
    # The account key is in the store and cannot be exported.
    assert "exportable" in moat.ok("key", "show", "acme-account").stdout
    moat.fails("key", "export", "acme-account", "--out", str(moat.dir / "a.p12"), "--password-file",
               str(moat.dir / "error.log"))
    # Ordered once: one certificate in the history.
    hist = moat.ok("cert", "history", KEY).stdout
    assert len([ln for ln in hist.splitlines() if ln.startswith("* ")]) == 1
