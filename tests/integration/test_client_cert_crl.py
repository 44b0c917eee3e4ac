"""Revocation of client certificates from CAs moat does not run: CRLs fetched over http from the
distribution points in the certificates (a python http.server on 127.0.0.1 serving CRLs made with
`openssl ca -gencrl`), verified against the issuing CA, cached in the store and refreshed without a
reload. curl presents the certificates."""
import http.server
import json
import re
import signal
import socket
import threading
import time

from ccert_helpers import CrlServer, client, curl, serve, verdict
from conftest import free_port
from doctor_pki import Pki
from serve_helpers import wait_for
from store_rows import tamper_store


def doctor(moat):
    r = moat.run("doctor", "--json", "--timeout", "1")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def error_log(moat):
    p = moat.dir / "error.log"
    return p.read_text() if p.exists() else ""


def test_fresh_crl_allows_and_revokes(moat, corp):
    pki, srv, root, ca_pem = corp
    url = srv.url("corp.crl")
    carol = client(pki, "carol", crl_url=url)
    mallory = client(pki, "mallory", crl_url=url)
    pki.revoke("mallory", "corp")
    pki.gencrl("corp", srv.dir / "corp.crl")
    port = free_port()
    serve(moat, root, [port])
    # the first request names a distribution point the server has not fetched yet: it waits while the
    # fetcher gets the CRL off the event loop, and is answered from it
    st, why, _ = verdict(port, mallory, ca_pem)
    assert st == 403 and why == "revoked"
    assert verdict(port, carol, ca_pem)[0] == 200
    assert srv.hits == 1
    assert re.search(r"CRL http://127\.0\.0\.1:\d+/corp\.crl of .*Corp Root.*: 1 revoked", error_log(moat))
    # the CRL is cached in the store: a restart with the CRL server gone still knows it
    listed = moat.ok("trust", "list").stdout
    assert url in listed and "1 revoked" in listed, listed
    anchors = {a["name"]: a for a in json.loads(moat.ok("trust", "list", "--json").stdout)}
    assert "crls" not in anchors["moat-ca"]  # its revocations are in the store, nothing is fetched
    [crl] = anchors["corp"]["crls"]
    assert crl["url"] == url and crl["held"] and crl["revoked"] == 1 and crl["in_date"], crl
    assert "Corp Root" in crl["issuer"] and crl["last_error"] == "" and crl["next_update"] > crl["this_update"]
    assert moat.stop_all() == []
    srv.stop()
    hits = srv.hits
    port2 = free_port()
    serve(moat, root, [port2])
    assert verdict(port2, carol, ca_pem)[0] == 200
    assert verdict(port2, mallory, ca_pem)[1] == "revoked"
    assert srv.hits == hits


def test_cached_crl_vouches_by_its_own_next_update_not_the_stored_column(moat, corp):
    pki, srv, root, ca_pem = corp
    carol = client(pki, "carol", crl_url=srv.url("corp.crl"))
    pki.gencrl("corp", srv.dir / "corp.crl", last=-3, next=-1)
    port = free_port()
    serve(moat, root, [port])
    verdict(port, carol, ca_pem)
    assert wait_for(lambda: "is out of date" in error_log(moat), timeout=10), error_log(moat)
    assert moat.stop_all() == []
    srv.stop()
    # A store row whose column says "in date" (written without the master key) must not outlive what the
    # CRL itself says: the row's authentication fails, the server starts without the cache and says why,
    # and the certificate stays revocation-unknown.
    assert tamper_store(moat.store, "update crls set next_update = ?", (int(time.time()) + 86400,)) == 1
    port2 = free_port()
    serve(moat, root, [port2])
    st, why, _ = verdict(port2, carol, ca_pem)
    assert st == 403 and why == "revocation-unknown"
    log = error_log(moat)
    assert "the cached CRLs are not used" in log and "changed without the master key" in log, log


def test_out_of_date_crl_is_revocation_unknown_unless_soft(moat, corp):
    pki, srv, root, ca_pem = corp
    url = srv.url("corp.crl")
    carol = client(pki, "carol", crl_url=url)
    mallory = client(pki, "mallory", crl_url=url)
    pki.revoke("mallory", "corp")
    pki.gencrl("corp", srv.dir / "corp.crl", last=-3, next=-1)
    strict, soft = free_port(), free_port()
    serve(moat, root, [strict, soft], soft=[soft])
    verdict(strict, carol, ca_pem)
    assert wait_for(lambda: "is out of date" in error_log(moat), timeout=10), error_log(moat)
    st, why, _ = verdict(strict, carol, ca_pem)
    assert st == 403 and why == "revocation-unknown"
    assert "client-crl-out-of-date" in {f["id"] for f in doctor(moat)["findings"]}
    # client_revocation_unknown: allow accepts what cannot be established...
    assert verdict(soft, carol, ca_pem)[0] == 200
    # ...but a serial listed by a CRL that verified is revoked, in date or not
    assert verdict(soft, mallory, ca_pem)[1] == "revoked"


def test_crl_server_down_is_revocation_unknown(moat, corp):
    pki, srv, root, ca_pem = corp
    dead = free_port()
    carol = client(pki, "carol", crl_url=f"http://127.0.0.1:{dead}/corp.crl")
    no_cdp = client(pki, "nocdp")
    strict, soft = free_port(), free_port()
    serve(moat, root, [strict, soft], soft=[soft])
    verdict(strict, carol, ca_pem)
    assert wait_for(lambda: "cannot connect to 127.0.0.1:%d" % dead in error_log(moat), timeout=10)
    assert verdict(strict, carol, ca_pem)[1] == "revocation-unknown"
    assert verdict(soft, carol, ca_pem)[0] == 200
    # moat doctor names the point and why
    rep = doctor(moat)
    f = [f for f in rep["findings"] if f["id"] == "client-crl-missing"]
    assert f and f"127.0.0.1:{dead}" in f[0]["subject"] and "cannot connect" in f[0]["what"], rep
    # a certificate of another CA that names no distribution point: nothing can vouch for it
    assert verdict(strict, no_cdp, ca_pem)[1] == "revocation-unknown"
    assert verdict(soft, no_cdp, ca_pem)[0] == 200
    # the 403 page says it in words, names the certificate that could not be checked, keeps the token
    st, out, _ = curl(strict, "/", cert=no_cdp, cafile=ca_pem)
    assert "could not be checked" in out and "CN=nocdp" in out and "(reason: revocation-unknown)" in out, out


def test_crl_with_a_bad_signature_is_rejected(moat, corp):
    pki, srv, root, ca_pem = corp
    url = srv.url("corp.crl")
    carol = client(pki, "carol", crl_url=url)
    # an impostor CA with the same name signs a CRL for the distribution point
    fake = Pki(moat.dir / "fake")
    fake.root("corp", cn="Corp Root")
    fake.gencrl("corp", srv.dir / "corp.crl")
    port = free_port()
    serve(moat, root, [port])
    verdict(port, carol, ca_pem)
    assert wait_for(lambda: "signature does not verify" in error_log(moat), timeout=10), error_log(moat)
    assert verdict(port, carol, ca_pem)[1] == "revocation-unknown"
    # the real CRL replaces it at the next attempt (a couple of seconds)
    pki.gencrl("corp", srv.dir / "corp.crl")
    assert wait_for(lambda: verdict(port, carol, ca_pem)[0] == 200, timeout=15)


def test_crl_refresh_picks_up_a_revocation_without_reload(moat, corp):
    pki, srv, root, ca_pem = corp
    url = srv.url("corp.crl")
    carol = client(pki, "carol", crl_url=url)
    # a CRL that lives 4 s is refreshed at half its life
    pki.gencrl("corp", srv.dir / "corp.crl", seconds=4)
    port = free_port()
    serve(moat, root, [port])
    assert wait_for(lambda: verdict(port, carol, ca_pem)[0] == 200, timeout=10)
    pki.revoke("carol", "corp")
    pki.gencrl("corp", srv.dir / "corp.crl", seconds=3600)
    assert wait_for(lambda: verdict(port, carol, ca_pem)[1] == "revoked", timeout=10)
    assert "reloaded" not in error_log(moat)


def test_revoked_intermediate_revokes_its_clients(moat, corp):
    pki, srv, root, ca_pem = corp
    pki.sign("dept", "corp", "Corp Dept CA", ca=True, crl_url=srv.url("corp.crl"))
    dave = client(pki, "dave", issuer="dept", crl_url=srv.url("dept.crl"), chain=["dept"])
    pki.gencrl("dept", srv.dir / "dept.crl")
    pki.gencrl("corp", srv.dir / "corp.crl", seconds=4)
    port = free_port()
    serve(moat, root, [port])
    # both CRLs are needed (the intermediate's and the root's) before the chain is vouched for
    assert wait_for(lambda: verdict(port, dave, ca_pem)[0] == 200, timeout=15)
    pki.revoke("dept", "corp")
    pki.gencrl("corp", srv.dir / "corp.crl")
    assert wait_for(lambda: verdict(port, dave, ca_pem)[1] == "revoked", timeout=15)
    # both CRLs belong to the corporate anchor: its own, and its department CA's; none to another anchor
    pki.root("other", cn="Other Root")
    moat.ok("trust", "add", pki.path("other.pem"), "--name", "other")
    anchors = {a["name"]: a for a in json.loads(moat.ok("trust", "list", "--json").stdout)}
    issuers = sorted(c["issuer"] for c in anchors["corp"]["crls"])
    assert len(issuers) == 2 and "Corp Dept CA" in issuers[0] and "Corp Root" in issuers[1], anchors["corp"]
    assert anchors["other"]["crls"] == []


def test_unreachable_point_is_retried_with_backoff_while_the_crl_held_serves(moat, corp):
    pki, srv, root, ca_pem = corp
    carol = client(pki, "carol", crl_url=srv.url("corp.crl"))
    pki.gencrl("corp", srv.dir / "corp.crl", seconds=6)
    port = free_port()
    serve(moat, root, [port])
    assert wait_for(lambda: verdict(port, carol, ca_pem)[0] == 200, timeout=10)
    srv.stop()
    # the refresh at half-life fails; the CRL held still vouches until its nextUpdate, and the point is
    # retried after 2 s, 4 s, ... rather than in a loop
    assert wait_for(lambda: "cannot connect" in error_log(moat), timeout=6), error_log(moat)
    assert verdict(port, carol, ca_pem)[0] == 200
    assert wait_for(lambda: verdict(port, carol, ca_pem)[1] == "revocation-unknown", timeout=8)
    attempts = error_log(moat).count("cannot connect")
    assert 1 <= attempts <= 4, error_log(moat)


def test_redirect_not_followed_and_a_silent_point_does_not_delay_a_stop(moat, corp):
    pki, srv, root, ca_pem = corp
    pki.gencrl("corp", srv.dir / "corp.crl")

    class Redirect(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", srv.url("corp.crl"))
            self.send_header("Content-Length", "0")
            self.end_headers()

    red = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=red.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        carol = client(pki, "carol", crl_url=f"http://127.0.0.1:{red.server_address[1]}/corp.crl")
        dave = client(pki, "dave", crl_url=f"http://127.0.0.1:{silent.getsockname()[1]}/corp.crl")
        port = free_port()
        serve(moat, root, [port])
        verdict(port, carol, ca_pem)
        assert wait_for(lambda: "redirects are not followed" in error_log(moat), timeout=10), error_log(moat)
        assert f"a redirect to {srv.url('corp.crl')}" in error_log(moat)
        assert verdict(port, carol, ca_pem)[1] == "revocation-unknown"
        # a point that accepts and never answers holds the fetcher (up to 10 s); the first request that
        # needs it waits 5 s at most, and never a stop
        t0 = time.time()
        assert verdict(port, dave, ca_pem)[1] == "revocation-unknown"
        assert 4.5 <= time.time() - t0 < 8, time.time() - t0
        erin = client(pki, "erin", crl_url=f"http://127.0.0.1:{silent.getsockname()[1]}/erin.crl")
        waiting = []
        t = threading.Thread(target=lambda: waiting.append(verdict(port, erin, ca_pem)))
        t.start()
        time.sleep(1.0)  # erin's request waits for a fetch queued behind dave's
        assert not waiting
        proc = moat.servers[-1][0]
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        t.join(timeout=10)
        assert time.time() - t0 < 3, "the stop waited for the CRL fetch"
        assert proc.returncode == 0
        # the waiting request was answered, not dropped
        assert waiting and waiting[0][:2] == (403, "revocation-unknown"), waiting
    finally:
        red.shutdown()
        red.server_close()
        silent.close()


def test_other_ca_with_moat_cas_name_is_checked_by_its_own_crl(moat, setup):  # noqa: F811
    """A trusted CA whose name is the same as moat's own CA (a migration that kept the old CA's name): its
    certificates are not moat's, so their revocation comes from their CRL, not from moat's list."""
    root, ca_pem = setup
    pki = Pki(moat.dir / "twin")
    pki.root("twin", cn="Moat Test CA")  # the name `setup` gave moat's CA
    moat.ok("trust", "add", pki.path("twin.pem"), "--name", "corp")
    srv = CrlServer(moat.dir / "crls")
    try:
        url = srv.url("twin.crl")
        carol = client(pki, "carol", issuer="twin", crl_url=url)
        mallory = client(pki, "mallory", issuer="twin", crl_url=url)
        pki.revoke("mallory", "twin")
        pki.gencrl("twin", srv.dir / "twin.crl")
        port = free_port()
        serve(moat, root, [port])
        assert wait_for(lambda: verdict(port, carol, ca_pem)[0] == 200, timeout=10), verdict(port, carol, ca_pem)
        # the CRL lists mallory: refused however long we wait for moat's own (empty) revocation list
        assert wait_for(lambda: verdict(port, mallory, ca_pem)[1] == "revoked", timeout=10), \
            verdict(port, mallory, ca_pem)
        assert srv.hits >= 1
    finally:
        srv.stop()


def test_points_past_the_limit_are_answered_at_once(moat, corp):
    """The fetcher follows 256 distribution points; a certificate naming one more is revocation-unknown
    at once, not after waiting for a fetch that will never come."""
    import datetime
    import shutil
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki, srv, root, ca_pem = corp
    pki.gencrl("corp", srv.dir / "corp.crl")
    ca_key = serialization.load_pem_private_key(pki.path("corp.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.path("corp.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert_for(i):
        shutil.copy(srv.dir / "corp.crl", srv.dir / f"p{i}.crl")
        dp = x509.DistributionPoint([x509.UniformResourceIdentifier(srv.url(f"p{i}.crl"))], None, None, None)
        c = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"user{i}")]))
             .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
             .add_extension(x509.CRLDistributionPoints([dp]), critical=False)
             .sign(ca_key, hashes.SHA256()))
        pem = moat.dir / f"user{i}.pem"
        pem.write_bytes(key_pem + c.public_bytes(serialization.Encoding.PEM))
        return pem

    def ask(port, pem):
        ctx = ssl.create_default_context(cafile=str(ca_pem))
        ctx.load_cert_chain(str(pem))
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        why = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n") if ln.lower().startswith("x-moat-client-cert:")]
        return int(head.split()[1]), (why[0] if why else None)

    port = free_port()
    serve(moat, root, [port])
    for i in range(256):
        assert ask(port, cert_for(i)) == (200, None), i
    for i in (256, 257):  # the first over the limit, and one after the fetcher said so
        t0 = time.time()
        assert ask(port, cert_for(i)) == (403, "revocation-unknown")
        assert time.time() - t0 < 2.5, f"point {i} waited {time.time() - t0:.1f} s"
    assert "already following 256 distribution points" in error_log(moat)


def test_a_resolver_that_does_not_answer_delays_neither_a_request_nor_a_stop(moat, corp, silent_resolver):
    """The CRL server's name is looked up by a resolver that never answers (the server's own
    /etc/resolv.conf, through a mount namespace, names a silent socket)."""
    pki, srv, root, ca_pem = corp
    pki.gencrl("corp", srv.dir / "corp.crl")
    carol = client(pki, "carol", crl_url=f"http://localhost:{srv.port}/corp.crl")  # /etc/hosts
    erin = client(pki, "erin", crl_url="http://crl.does-not-answer.test/corp.crl")
    port = free_port()
    serve(moat, root, [port], prefix=silent_resolver)
    assert verdict(port, carol, ca_pem)[0] == 200  # a name the lookup answers
    t0 = time.time()
    assert verdict(port, erin, ca_pem)[1] == "revocation-unknown"
    assert time.time() - t0 < 8
    time.sleep(0.5)  # the fetcher is inside the lookup now
    proc = moat.servers[-1][0]
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.time() - t0 < 3, f"the stop waited {time.time() - t0:.1f} s for the resolver"
    assert proc.returncode == 0
