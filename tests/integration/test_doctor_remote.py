"""`moat doctor https://host:port`: each broken endpoint is built for real (openssl certificates, s_server
on loopback, Python sockets) and doctor must name it by its finding id."""
import json
import socket
import threading
import time

import pytest

from conftest import free_port
from doctor_pki import Pki, SServer
from serve_helpers import RawServer


@pytest.fixture
def pki(moat):
    return Pki(moat.dir / "pki")


@pytest.fixture
def servers():
    started = []
    yield started
    for s in started:
        s.stop()


def serve(servers, moat, *args, **kw):
    s = SServer(moat.dir, *args, **kw)
    servers.append(s)
    return s


def doctor(moat, target, *extra, code=None):
    """Runs doctor with --json; returns (exit code, parsed report)."""
    r = moat.run("doctor", "--json", "--timeout", "2", *extra, target)
    assert r.returncode in (0, 1), f"doctor exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    moat._check_sanitizers(r.stderr)
    report = json.loads(r.stdout)
    if code is not None:
        assert r.returncode == code, f"exit {r.returncode}, expected {code}\n{r.stdout}"
    if r.returncode == 1:
        assert "error" in r.stderr
    return r.returncode, report


def ids(report, severity=None):
    return {f["id"] for f in report["findings"] if severity is None or f["severity"] == severity}


def facts(report):
    out = {}
    for s in report["subjects"]:
        for f in s["facts"]:
            out.setdefault(f["key"], []).append(f["value"])
    return out


def healthy_chain(pki, sans="DNS:localhost,IP:127.0.0.1,IP:::1", **kw):
    pki.root()
    pki.sign("inter", "root", "Doctor Test Intermediate", ca=True)
    leaf = pki.sign("leaf", "inter", "localhost", sans, **kw)
    return leaf, pki.path("leaf.key"), pki.path("inter.pem")


def test_healthy_endpoint_has_no_errors(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=inter)
    code, rep = doctor(moat, f"https://localhost:{s.port}/some/path", "--ca", pki.path("root.pem"), code=0)
    assert ids(rep, "error") == set() and ids(rep, "warning") == set(), rep["findings"]
    assert "ocsp-not-stapled" in ids(rep, "info")
    f = facts(rep)
    assert "accepted: TLSv1.2 TLSv1.3" in f["protocols"][0]
    assert "refused: TLSv1.0 TLSv1.1" in f["protocols"][0]
    assert f["negotiated"][0].startswith("TLSv1.3, TLS_")
    assert len([k for k in f if k.startswith("chain[")]) == 2
    assert "verified against" in f["trust"][0]
    assert rep["summary"]["errors"] == 0


def test_human_output_groups_and_colour(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=inter)
    r = moat.ok("doctor", "--timeout", "2", f"127.0.0.1:{s.port}", "--ca", pki.path("root.pem"))
    assert r.stdout.startswith(f"doctor: https://127.0.0.1:{s.port}\n")
    assert f"\n127.0.0.1:{s.port}\n" in r.stdout
    assert "[ocsp-not-stapled]" in r.stdout and "why:" in r.stdout and "fix:" in r.stdout
    assert "\033[" not in r.stdout  # not a tty
    r = moat.ok("doctor", "--color", "always", "--timeout", "2", f"127.0.0.1:{s.port}", "--ca", pki.path("root.pem"))
    assert "\033[1m" in r.stdout
    r = moat.ok("doctor", "--color=never", "--timeout", "2", f"127.0.0.1:{s.port}", "--ca", pki.path("root.pem"))
    assert "\033[" not in r.stdout


def test_expired_certificate(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, start=-60, end=-2)
    s = serve(servers, moat, leaf, key, chain=inter)
    _, rep = doctor(moat, f"localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "cert-expired" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "cert-expired")
    assert "moat key renew" in f["fix"] and "moat cert install" in f["fix"]


def test_not_yet_valid_certificate(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, start=3, end=90)
    s = serve(servers, moat, leaf, key, chain=inter)
    _, rep = doctor(moat, f"localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "cert-not-yet-valid" in ids(rep, "error")


def test_expiring_soon_and_days_option(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, end=10)
    s = serve(servers, moat, leaf, key, chain=inter)
    _, rep = doctor(moat, f"localhost:{s.port}", "--ca", pki.path("root.pem"), code=0)
    assert "cert-expiring" in ids(rep, "warning")
    _, rep = doctor(moat, f"localhost:{s.port}", "--ca", pki.path("root.pem"), "--days", "5", code=0)
    assert "cert-expiring" not in ids(rep)


def test_self_signed(moat, pki, servers):
    cert = pki.self_signed("self", "localhost", "DNS:localhost")
    s = serve(servers, moat, cert, pki.path("self.key"))
    _, rep = doctor(moat, f"https://localhost:{s.port}", code=1)
    assert "self-signed" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "self-signed")
    assert "system trust store" in f["what"]


def test_untrusted_root_names_the_trust_store(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=pki.bundle("full.pem", inter, pki.path("root.pem")))
    _, rep = doctor(moat, f"https://localhost:{s.port}", code=1)
    assert "untrusted-root" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "untrusted-root")
    assert "Doctor Test Root" in f["what"] and "system trust store" in f["what"]
    assert "update-ca-certificates" in f["fix"]


def test_untrusted_private_root_is_not_a_missing_intermediate(moat, pki, servers):
    # Leaf and intermediate sent, the private root only unknown to the client: untrusted-root.
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=inter)
    _, rep = doctor(moat, f"https://localhost:{s.port}", code=1)
    assert "chain-incomplete" not in ids(rep), rep["findings"]
    f = next(f for f in rep["findings"] if f["id"] == "untrusted-root")
    assert "Doctor Test Root" in f["what"]
    assert "moat trust install-local" in f["fix"]


def test_wrong_name(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, sans="DNS:other.example")
    s = serve(servers, moat, leaf, key, chain=inter)
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "name-mismatch" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "name-mismatch")
    assert "DNS:other.example" in f["what"] and "localhost" in f["what"]
    # An IP literal is checked against IP SANs.
    _, rep = doctor(moat, f"127.0.0.1:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "name-mismatch" in ids(rep, "error")


def test_missing_intermediate(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key)
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "chain-incomplete" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "chain-incomplete")
    assert "Doctor Test Intermediate" in f["what"]
    assert "--chain" in f["fix"]


def test_wrong_order(moat, pki, servers):
    pki.root()
    pki.sign("inter1", "root", "Doctor Intermediate One", ca=True)
    pki.sign("inter2", "inter1", "Doctor Intermediate Two", ca=True)
    leaf = pki.sign("leaf", "inter2", "localhost", "DNS:localhost")
    chain = pki.bundle("badorder.pem", pki.path("inter1.pem"), pki.path("inter2.pem"))
    s = serve(servers, moat, leaf, pki.path("leaf.key"), chain=chain)
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "chain-order" in ids(rep, "error")
    assert "chain-incomplete" not in ids(rep)


def test_rsa_1024_key(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, alg="rsa-1024")
    s = serve(servers, moat, leaf, key, chain=inter, extra=["-cipher", "DEFAULT:@SECLEVEL=0"])
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "weak-key" in ids(rep, "error")
    assert any("rsa-1024" in v for v in facts(rep)["chain[0]"])


def test_sha1_signature(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki, md="sha1")
    s = serve(servers, moat, leaf, key, chain=inter, extra=["-cipher", "DEFAULT:@SECLEVEL=0"])
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "sha1-signature" in ids(rep, "error")


def test_old_protocols_accepted(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=inter,
              extra=["-min_protocol", "TLSv1", "-cipher", "DEFAULT:@SECLEVEL=0"])
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "tls1.0-accepted" in ids(rep, "error")
    assert "tls1.1-accepted" in ids(rep, "warning")
    assert "accepted: TLSv1.0 TLSv1.1 TLSv1.2 TLSv1.3" in facts(rep)["protocols"][0]


def test_only_tls11(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    s = serve(servers, moat, leaf, key, chain=inter, extra=["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=1)
    assert "tls1.1-accepted" in ids(rep, "warning")
    assert "no-modern-tls" in ids(rep, "error")
    assert facts(rep)["negotiated"][0].startswith("TLSv1.1")


def test_ipv6_endpoint(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    try:
        s = serve(servers, moat, leaf, key, chain=inter, host="::1")
    except RuntimeError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    _, rep = doctor(moat, f"https://[::1]:{s.port}", "--ca", pki.path("root.pem"), code=0)
    assert rep["target"] == f"https://[::1]:{s.port}"
    assert any(v.startswith(f"[::1]:{s.port}: connected") for v in facts(rep)["address"])


def test_connection_refused(moat):
    port = free_port()
    t0 = time.time()
    _, rep = doctor(moat, f"127.0.0.1:{port}", code=1)
    assert ids(rep) == {"connection-refused"}
    assert time.time() - t0 < 5


def test_accepts_but_never_answers(moat):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept_and_hold():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept_and_hold, daemon=True)
    t.start()
    try:
        t0 = time.time()
        r = moat.run("doctor", "--json", "--timeout", "1", f"127.0.0.1:{port}")
        elapsed = time.time() - t0
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    assert r.returncode == 1, r.stdout
    rep = json.loads(r.stdout)
    assert "handshake-timeout" in ids(rep, "error")
    assert "connection-refused" not in ids(rep)
    assert elapsed < 6


def test_plain_http_port_is_not_tls(moat):
    def answer_http(c):
        if c.recv(4096):
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with RawServer(answer_http) as srv:
        _, rep = doctor(moat, f"127.0.0.1:{srv.port}", code=1)
    assert "not-tls" in ids(rep, "error")


def test_dns_failure_is_told_apart(moat):
    # A 64-character label can never be a DNS name: the resolver fails without sending a query.
    _, rep = doctor(moat, "https://" + "a" * 64 + ".example:443", code=1)
    assert ids(rep) == {"dns-failure"}


def test_stapled_ocsp_good_revoked_and_wrong(moat, pki, servers):
    leaf, key, inter = healthy_chain(pki)
    resp = pki.ocsp_response("leaf", "inter")
    s = serve(servers, moat, leaf, key, chain=inter, extra=["-status_file", resp])
    _, rep = doctor(moat, f"https://localhost:{s.port}", "--ca", pki.path("root.pem"), code=0)
    assert "ocsp-not-stapled" not in ids(rep)
    assert facts(rep)["ocsp"][0].startswith("stapled: good")

    # A response about another certificate.
    pki.sign("other", "inter", "other.example", "DNS:other.example")
    wrong = pki.ocsp_response("other", "inter")
    s2 = serve(servers, moat, leaf, key, chain=inter, extra=["-status_file", wrong])
    _, rep = doctor(moat, f"https://localhost:{s2.port}", "--ca", pki.path("root.pem"), code=1)
    assert "ocsp-stapling-failed" in ids(rep, "error")

    pki.revoke("leaf", "inter")
    revoked = pki.ocsp_response("leaf", "inter", "leaf-revoked.ocsp")
    s3 = serve(servers, moat, leaf, key, chain=inter, extra=["-status_file", revoked])
    _, rep = doctor(moat, f"https://localhost:{s3.port}", "--ca", pki.path("root.pem"), code=1)
    assert "cert-revoked" in ids(rep, "error")


@pytest.mark.parametrize("target,msg", [
    ("http://localhost:80", "only https://"),
    ("localhost:99999", "not in 1-65535"),
    ("localhost:abc", "not in 1-65535"),
    ("[::1:443", "missing ']'"),
])
def test_bad_targets_are_usage_errors(moat, target, msg):
    r = moat.fails("doctor", target, code=2)
    assert msg in r.stderr


def test_help_and_usage(moat):
    r = moat.ok("doctor", "--help")
    assert "usage: moat doctor" in r.stdout
    moat.fails("doctor", "--days", "x", code=2)
    moat.fails("doctor", "--bogus", code=2)
    moat.fails("doctor", "a:1", "b:2", code=2)


def test_colour_only_on_a_terminal_and_never_with_no_color(moat):
    import os
    import pty
    import subprocess
    from conftest import MOAT_BIN

    port = free_port()  # nothing listens: a quick error report is enough to see the colours

    def on_tty(extra_env):
        master, slave = pty.openpty()
        env = dict(moat.env)
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm"
        env.update(extra_env)
        p = subprocess.Popen([MOAT_BIN, "doctor", "--timeout", "1", f"127.0.0.1:{port}"], stdout=slave,
                             stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        p.wait(timeout=30)
        os.close(master)
        return b"".join(chunks).decode(errors="replace"), p.returncode

    out, code = on_tty({})
    assert code == 1 and "\033[1;31m" in out and "connection-refused" in out
    out, code = on_tty({"NO_COLOR": "1"})
    assert code == 1 and "\033[" not in out and "connection-refused" in out


def test_a_resolver_that_does_not_answer_is_bounded_by_the_timeout(moat, silent_resolver):
    """The name's lookup gives up at --timeout like the connection does, with a finding that says so."""
    import subprocess
    import time
    from conftest import MOAT_BIN
    t0 = time.time()
    r = subprocess.run([*silent_resolver, MOAT_BIN, "doctor", "--json", "--timeout", "1",
                        "https://www.does-not-answer.test:8443/"], capture_output=True, text=True, env=moat.env,
                       timeout=60)
    assert time.time() - t0 < 5, f"doctor took {time.time() - t0:.1f} s"
    moat._check_sanitizers(r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    [f] = [f for f in json.loads(r.stdout)["findings"] if f["id"] == "dns-failure"]
    assert "cannot resolve www.does-not-answer.test: no answer in time" in f["what"], f
