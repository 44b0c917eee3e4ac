"""certificate: acme against Debian's pebble with real validation on loopback (pebble-challtestsrv as its
DNS server, nonce rejection on): first issuance with http-01, tls-alpn-01 and dns-01, renewal, a failing
challenge, the ACME server down, kill -9 in the middle of an order, and external account binding."""
import calendar
import json
import os
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
  - hosts: [{", ".join(json.dumps(h) for h in hosts)}]
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


DNS_HOOK = """#!/usr/bin/python3
# dns-01 hook for the tests: sets or clears the TXT record in pebble-challtestsrv and logs what it did.
import json, sys, urllib.request
verb, name, value = sys.argv[1:4]
body = {"host": name, "value": value} if verb == "set" else {"host": name}
req = urllib.request.Request("http://127.0.0.1:%(port)d/" + ("set-txt" if verb == "set" else "clear-txt"),
                             data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req, timeout=5).read()
with open("%(log)s", "a") as f:
    f.write("%%s %%s %%s\\n" %% (verb, name, value))
"""


def test_dns01_wildcard_through_hook(moat, pebble):
    pebble.start()
    hook = moat.dir / "dns-hook"
    hook_log = moat.dir / "hook.log"
    hook.write_text(DNS_HOOK % {"port": pebble.chall_mgmt_port, "log": hook_log})
    hook.chmod(0o755)
    cfg = config(pebble, ["dns-01"], extra_acme=f"  dns_hook: {hook}", hosts=(HOST, "*.example.test"))
    start(moat, pebble, cfg)
    pem = wait_issued(moat)
    info = issuer_of(pem, moat)
    assert "DNS:*.example.test" in info and f"DNS:{HOST}" in info
    calls = hook_log.read_text().splitlines()
    # One TXT record per authorization, each set and then cleared (the wildcard and the name share one
    # record name).
    assert [c.split()[:2] for c in calls].count(["set", f"_acme-challenge.{HOST}."]) == 1
    assert [c.split()[:2] for c in calls].count(["clear", f"_acme-challenge.{HOST}."]) == 1
    assert sum(1 for c in calls if c.startswith("set ")) == 2


def test_tls_alpn01_first_issuance(moat, pebble):
    pebble.start()
    start(moat, pebble, config(pebble, ["tls-alpn-01"]))
    pem = wait_issued(moat)
    assert "Pebble Intermediate" in issuer_of(pem, moat)
    # Without a validation running, a ClientHello offering only acme-tls/1 is refused, not answered
    # with the site's certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["acme-tls/1"])
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", pebble.tls_port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname=HOST):
                pass
    # An ordinary handshake gets the issued certificate (once the server has picked it up).
    deadline = time.time() + 10
    while served_cert(pebble.tls_port) is None and time.time() < deadline:
        time.sleep(0.2)
    assert served_cert(pebble.tls_port) is not None


def test_failing_challenge_keeps_certificate_then_renewal(moat, pebble):
    from acme_helpers import challtestsrv
    pebble.start()
    cfg_path = moat.dir / "moat.yaml"
    start(moat, pebble, config(pebble, ["http-01"]))
    first = wait_issued(moat)
    want = ssl.PEM_cert_to_DER_cert(first.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    deadline = time.time() + 10
    while served_cert(pebble.tls_port) != want and time.time() < deadline:
        time.sleep(0.2)
    st = json.loads(moat.ok("acme", "status", "--json", "-c", cfg_path).stdout)
    assert st[0]["name"] == KEY and st[0]["state"] == "valid" and st[0]["failures"] == 0
    assert st[0]["why"] == "1/3 of the lifetime left"

    # The ACME server now reaches another address for the name: http-01 fails there.
    challtestsrv(pebble, "add-a", {"host": HOST + ".", "addresses": ["127.0.0.2"]})
    r = moat.fails("acme", "renew", KEY, "-c", cfg_path)
    assert "current certificate is kept" in r.stderr and "http-01 challenge for www.example.test failed" in r.stderr
    assert served_cert(pebble.tls_port) == want
    st = json.loads(moat.ok("acme", "status", "--json", "-c", cfg_path).stdout)[0]
    assert st["state"] == "failing" and st["failures"] == 1 and "http-01" in st["last_error"]
    assert ts(st["next"]) > time.time() + 30  # backed off
    text = moat.ok("acme", "status", "-c", cfg_path).stdout
    assert f"{KEY} (site {HOST})" in text and "state: failing" in text and "expires: " in text
    assert "last error (1 in a row): " in text and "(retry after a failure)" in text
    doc = moat.run("doctor", "-c", cfg_path)
    assert "acme-renewal-failing" in doc.stdout and "http-01 challenge for www.example.test failed" in doc.stdout
    assert "the current certificate is kept" in doc.stdout
    log = (moat.dir / "error.log").read_text()
    assert "ordering a certificate failed, the current one is kept" in log

    # Fixed: a renewal asked for now succeeds and the server serves the new certificate.
    challtestsrv(pebble, "clear-a", {"host": HOST + "."})
    r = moat.ok("acme", "renew", KEY, "-c", cfg_path)
    assert "renewed " + KEY in r.stdout
    second = wait_issued(moat, previous=first)
    want2 = ssl.PEM_cert_to_DER_cert(second.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n")
    deadline = time.time() + 10
    while served_cert(pebble.tls_port) != want2 and time.time() < deadline:
        time.sleep(0.2)
    assert served_cert(pebble.tls_port) == want2
    hist = moat.ok("cert", "history", KEY).stdout
    assert len([ln for ln in hist.splitlines() if ln[:1] in "* " and ":" in ln and "20" in ln]) == 2
    st = json.loads(moat.ok("acme", "status", "--json", "-c", cfg_path).stdout)[0]
    assert st["state"] == "valid" and st["failures"] == 0 and st["last_error"] is None
    # The previous certificate is one rollback away.
    moat.ok("cert", "rollback", KEY)


def ts(rfc3339):
    """An RFC 3339 UTC time of --json as Unix seconds."""
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def acme_status(moat):
    return json.loads(moat.ok("acme", "status", "--json", "-c", moat.dir / "moat.yaml").stdout)[0]


def test_acme_server_down_then_up(moat, pebble):
    # The directory names a port where nothing listens yet: the site loads without a certificate.
    start(moat, pebble, config(pebble, ["http-01"]))
    deadline = time.time() + 30
    while time.time() < deadline and acme_status(moat)["failures"] == 0:
        time.sleep(0.3)
    st = acme_status(moat)
    assert st["state"] == "failing" and "cannot connect to 127.0.0.1:%d" % pebble.port in st["last_error"]
    assert served_cert(pebble.tls_port) is None
    doc = moat.run("doctor", "-c", moat.dir / "moat.yaml").stdout
    assert "acme-renewal-failing" in doc and "the site has no certificate" in doc
    pebble.start()
    moat.ok("acme", "renew", KEY, "-c", moat.dir / "moat.yaml")
    wait_issued(moat)
    assert acme_status(moat)["state"] == "valid"


def test_kill_9_mid_order_resumes_same_order(moat, pebble):
    # A dns-01 hook that holds the order in the middle (order made, pending key stored, authorization
    # read, challenge not started yet) while a file exists: moat is killed there.
    pebble.nonce_reject = 0  # every POST /order-plz in pebble's log is then an order it accepted
    pebble.start()
    hook, hook_log, block = moat.dir / "dns-hook", moat.dir / "hook.log", moat.dir / "block"
    hook.write_text(DNS_HOOK % {"port": pebble.chall_mgmt_port, "log": hook_log})
    hook.write_text(hook.read_text().replace("verb, name, value = sys.argv[1:4]\n", f'''verb, name, value = sys.argv[1:4]
import os, time
if verb == "set" and os.path.exists("{block}"):
    with open("{hook_log}", "a") as f:
        f.write("blocked %d\\n" % os.getpid())
    time.sleep(120)
'''))
    hook.chmod(0o755)
    block.write_text("")
    cfg = config(pebble, ["dns-01"], extra_acme=f"  dns_hook: {hook}")
    proc = start(moat, pebble, cfg)
    deadline = time.time() + 30
    while time.time() < deadline and not (hook_log.exists() and "blocked" in hook_log.read_text()):
        time.sleep(0.05)
    line = [ln for ln in hook_log.read_text().splitlines() if ln.startswith("blocked")][0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.kill(int(line.split()[1]), signal.SIGKILL)  # the hook moat was waiting for
    st = acme_status(moat)
    assert st["order_pending"] and st["state"] == "ordering"
    keys = moat.ok("key", "list").stdout
    assert KEY in keys and "pending" in keys
    # Restarted, it resumes the recorded order: one newOrder in pebble's log, one certificate.
    block.unlink()
    moat.serve(cfg, wait=(pebble.http_port,))
    wait_issued(moat)
    assert pebble.log_count("POST /order-plz") == 1
    assert pebble.log_count("POST /sign-me-up") == 1  # the account was registered once
    st = acme_status(moat)
    assert st["state"] == "valid" and not st["order_pending"]
    assert "pending" not in moat.ok("key", "show", KEY).stdout.split("state:")[1].splitlines()[0]


def test_eab_required(moat, tmp_path):
    hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    pb = Pebble(tmp_path, eab=("kid-moat", hmac))
    try:
        pb.start()
        start(moat, pb, config(pb, ["http-01"]))
        deadline = time.time() + 30
        while time.time() < deadline and acme_status(moat)["failures"] == 0:
            time.sleep(0.3)
        st = acme_status(moat)
        assert "requires an external account binding" in st["last_error"] and "acme.eab" in st["last_error"]
        (moat.dir / "eab.key").write_text(hmac + "\n")
        (moat.dir / "eab.key").chmod(0o600)
        cfg = config(pb, ["http-01"], extra_acme="  eab: { kid: kid-moat, hmac_file: eab.key }")
        (moat.dir / "moat.yaml").write_text(cfg)
        moat.ok("reload", "-c", moat.dir / "moat.yaml")
        moat.ok("acme", "renew", KEY, "-c", moat.dir / "moat.yaml")
        wait_issued(moat)
        # A wrong key is refused by the CA, with its reason.
    finally:
        pb.stop()


def ari_certid(pem):
    """RFC 9773 §4.1, computed independently of moat: base64url(AKI keyIdentifier) "." base64url(serial)."""
    import base64
    from cryptography import x509
    c = x509.load_pem_x509_certificate(pem.encode())
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    n = c.serial_number
    ser = n.to_bytes((n.bit_length() + 8) // 8, "big")  # DER INTEGER content: a 0 byte first if the top bit is set
    b = lambda v: base64.urlsafe_b64encode(v).rstrip(b"=").decode()
    return b(aki) + "." + b(ser)


def test_ari_window_renews_with_replaces(moat, pebble):
    from acme_helpers import AriServer
    pebble.start()
    ari = AriServer(pebble)
    try:
        now = time.time()
        ari.window = (now + 30 * 86400, now + 31 * 86400)
        cfg = config(pebble, ["http-01"]).replace(pebble.directory, ari.directory)
        start(moat, pebble, cfg)
        first = wait_issued(moat)
        certid = ari_certid(first)
        deadline = time.time() + 20
        while time.time() < deadline and acme_status(moat)["why"] != "the CA's renewal window (ARI)":
            time.sleep(0.3)
        st = acme_status(moat)
        assert st["why"] == "the CA's renewal window (ARI)"
        assert now + 30 * 86400 - 5 <= ts(st["next"]) <= now + 31 * 86400 + 5  # inside the window, not the 1/3 rule
        assert certid in ari.asked
        # The CA moves the window to now: moat renews by itself, naming the certificate it replaces.
        ari.window = (time.time() - 60, time.time() + 1)
        second = wait_issued(moat, timeout=60, previous=first)
        assert second != first
        assert f"(the CA's renewal window (ARI)), replaces {certid}" in (moat.dir / "error.log").read_text()
    finally:
        ari.stop()


def test_ip_identifier_with_http01(moat, pebble):
    pebble.start()
    start(moat, pebble, config(pebble, ["tls-alpn-01", "http-01"], hosts=(HOST, "127.0.0.1")))
    info = issuer_of(wait_issued(moat), moat)
    # RFC 8738: the address is an IP identifier, validated with http-01 (tls-alpn-01 is skipped for it).
    assert "IP Address:127.0.0.1" in info and f"DNS:{HOST}" in info


def test_rollover_refused_with_two_acme_servers(moat, pebble):
    """Accounts at two directories share the account key: changing it at one would lock the other out."""
    pebble.start()
    other = pebble.directory.replace("127.0.0.1", "localhost")
    cfg = config(pebble, ["http-01"], extra_site=f"""  - hosts: ["b.example.test"]
    listen: ["127.0.0.1:{pebble.tls_port}"]
    http_listen: ["127.0.0.1:{pebble.http_port}"]
    certificate: acme
    acme: {{ directory: "{other}" }}
""")
    start(moat, pebble, cfg)
    wait_issued(moat)
    deadline = time.time() + 90
    while time.time() < deadline and moat.run("cert", "export", "acme.b.example.test").returncode != 0:
        time.sleep(0.5)
    before = moat.ok("key", "show", "acme-account").stdout
    r = moat.fails("acme", "rollover", "-c", moat.dir / "moat.yaml")
    assert "key rollover refused" in r.stderr and other in r.stderr, r.stderr
    assert "leave one ACME server in the config" in r.stderr
    assert moat.ok("key", "show", "acme-account").stdout == before
    assert pebble.log_count("POST /rollover-account-key") == 0


def test_account_key_rollover(moat, pebble):
    pebble.nonce_reject = 0  # each POST /sign-me-up in pebble's log is then one registration
    pebble.start()
    cfg_path = moat.dir / "moat.yaml"
    start(moat, pebble, config(pebble, ["http-01"]))
    first = wait_issued(moat)
    before = moat.ok("key", "show", "acme-account").stdout
    r = moat.ok("acme", "rollover", "-c", cfg_path)
    assert "now signs with a new key" in r.stdout
    after = moat.ok("key", "show", "acme-account").stdout
    assert before != after and "exportable" in after
    assert pebble.log_count("POST /rollover-account-key") >= 1
    # The same account, now with the new key: a renewal is accepted and no second account is made.
    moat.ok("acme", "renew", KEY, "-c", cfg_path)
    wait_issued(moat, previous=first)
    assert pebble.log_count("POST /sign-me-up") == 1


def test_preferred_chain_takes_the_alternate(moat, pebble):
    """pebble offers a second chain (Link rel="alternate") to another root; preferred_chain names that
    root's common name and the chain installed ends at it, not at the default one."""
    import ssl
    import urllib.request
    pebble.extra_env["PEBBLE_ALTERNATE_ROOTS"] = "1"
    pebble.start()
    ctx = ssl.create_default_context(cafile=str(pebble.ca_pem))
    with urllib.request.urlopen(f"https://127.0.0.1:{pebble.mgmt_port}/roots/1", context=ctx, timeout=10) as r:
        alt_root = r.read().decode()
    subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"], input=alt_root,
                          capture_output=True, text=True, check=True).stdout
    cn = subj.split("commonName", 1)[1].split("=", 1)[1].strip()
    default_cn = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"],
                                input=pebble.root_pem(), capture_output=True, text=True,
                                check=True).stdout.split("commonName", 1)[1].split("=", 1)[1].strip()
    assert cn != default_cn
    start(moat, pebble, config(pebble, ["http-01"], extra_acme=f'  preferred_chain: "{cn}"'))
    wait_issued(moat)
    chain = moat.ok("cert", "export", KEY, "--chain").stdout
    last = "-----BEGIN CERTIFICATE-----" + chain.split("-----BEGIN CERTIFICATE-----")[-1]
    issuer = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-nameopt", "multiline"], input=last,
                            capture_output=True, text=True, check=True).stdout
    assert cn in issuer and default_cn not in issuer, (cn, default_cn, issuer)
