"""More client-certificate verdicts from real clients (curl, openssl s_client): not yet valid, malformed;
trust changes on a running server; a site left without a usable anchor refuses to load (at start and on
reload); a session verified on one site never resumes on another."""
import base64
import datetime
import json
import subprocess

import pytest

from ccert_helpers import client, client_pem_from_moat, verdict
from conftest import free_port
from doctor_pki import Pki
from serve_helpers import CA, config, site, wait_for

cryptography = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402


def _tlv(tag, body):
    n = len(body)
    head = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + head + body


def malformed_client(pki, name):
    """A client certificate of the corp CA, properly signed, whose notBefore is not a time (month 13):
    it decodes, curl sends it, and no verifier can tell when it starts being valid."""
    ca_key = serialization.load_pem_private_key(pki.path("corp.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.path("corp.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    nb = now - datetime.timedelta(days=1)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(nb).not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    tbs = cert.tbs_certificate_bytes
    stamp = nb.strftime("%y%m%d%H%M%SZ").encode()
    assert tbs.count(stamp) == 1
    tbs = tbs.replace(stamp, b"261399999999Z")
    sig = ca_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    ecdsa_sha256 = bytes.fromhex("300a06082a8648ce3d040302")
    der = _tlv(0x30, tbs + ecdsa_sha256 + _tlv(0x03, b"\x00" + sig))
    pem = pki.path(f"{name}-client.pem")
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) +
                    b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n")
    return pem


def test_not_yet_valid_and_malformed(moat, setup):  # noqa: F811
    root, ca_pem = setup
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    moat.ok("trust", "add", pki.path("corp.pem"), "--name", "corp")
    early = client(pki, "early", start=1, end=30)
    bad = malformed_client(pki, "bad")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="""
client_certificate: required
client_trust: [corp]
client_revocation_unknown: allow""")]), wait=[port])
    st, why, err = verdict(port, early, ca_pem)
    assert (st, why) == (403, "not-yet-valid"), err
    st, why, err = verdict(port, bad, ca_pem)
    assert (st, why) == (403, "malformed"), err
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and "ccert=malformed" in log.read_text(), timeout=5)
    assert "ccert=not-yet-valid" in log.read_text()


def test_trust_change_applies_to_a_running_server(moat, setup):  # noqa: F811
    root, ca_pem = setup
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    carol = client(pki, "carol")
    port = free_port()
    # default anchors: moat's CA plus the whole trust store
    moat.serve(config(moat, [site(["localhost"], port, root=root, extra="""
client_certificate: required
client_revocation_unknown: allow""")]), wait=[port])
    assert verdict(port, carol, ca_pem)[1] == "untrusted"
    moat.ok("trust", "add", pki.path("corp.pem"), "--name", "corp")
    assert wait_for(lambda: verdict(port, carol, ca_pem)[0] == 200, timeout=5)
    moat.ok("trust", "remove", "corp")
    assert wait_for(lambda: verdict(port, carol, ca_pem)[1] == "untrusted", timeout=5)
    assert "reloaded (store changed)" in (moat.dir / "error.log").read_text()


def test_site_left_without_a_usable_anchor_does_not_load(moat):
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("hi\n")
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    carol = client(pki, "carol")
    port = free_port()
    cfg = config(moat, [site(["localhost"], port, root=root, extra="""
client_certificate: required
client_revocation_unknown: allow""")])
    # at start: no moat CA, an empty trust store: the site is not served, and the log says why
    moat.serve(cfg, wait=[port])
    log = moat.dir / "error.log"
    assert wait_for(lambda: "site localhost is not served" in log.read_text(), timeout=5), log.read_text()
    assert "site \"localhost\" asks for client certificates but has no usable trust anchor" in log.read_text()
    assert "moat trust add" in log.read_text()
    assert verdict(port, carol, ca.pem)[0] != 200
    # an anchor added: the running server loads the site
    moat.ok("trust", "add", pki.path("corp.pem"), "--name", "corp")
    assert wait_for(lambda: verdict(port, carol, ca.pem)[0] == 200, timeout=10)
    # the check before commit refuses what the config's site could not load
    r = moat.fails("trust", "remove", "corp")
    assert "the server would not load this change" in r.stderr and "no usable trust anchor" in r.stderr
    # a removal made without the config (from another folder) is refused by the server itself
    elsewhere = moat.dir / "elsewhere"
    elsewhere.mkdir()
    r = moat.fails("trust", "remove", "corp", cwd=elsewhere)
    assert "refused the change" in r.stderr and "no usable trust anchor" in r.stderr, r.stderr
    assert wait_for(lambda: "site localhost: its change is refused, it keeps serving its last good" in
                    log.read_text(), timeout=5), log.read_text()
    info = json.loads(moat.ok("store", "info", "--json").stdout)
    assert "no usable trust anchor" in json.dumps(info["server"]), info["server"]
    assert verdict(port, carol, ca.pem)[0] == 200


def s_client(port, sni, cert, cafile, extra=(), sess_in=None, sess_out=None):
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", sni, "-cert", str(cert),
            "-CAfile", str(cafile), "-ign_eof", *extra]
    if sess_in:
        args += ["-sess_in", str(sess_in)]
    if sess_out:
        args += ["-sess_out", str(sess_out)]
    req = f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    r = subprocess.run(args, input=req.encode(), capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace")
    status = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("HTTP/1.1 ")), 0)
    return ("Reused," in out), status, out


@pytest.mark.parametrize("proto", ["-tls1_2", "-tls1_3"])
def test_session_of_one_site_never_resumes_on_another(moat, proto):
    moat.ok("ca", "init", "--cn", "Sessions CA")
    moat.ok("ca", "issue", "www", "--cn", "a.test", "--san", "DNS:a.test,DNS:b.test")
    ca_pem = moat.dir / "moat-ca.pem"
    ca_pem.write_text(moat.ok("ca", "cert", "--root").stdout)
    alice = client_pem_from_moat(moat, "alice", "alice")
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    moat.ok("trust", "add", pki.path("corp.pem"), "--name", "corp")
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("hi\n")
    port = free_port()
    moat.serve(config(moat, [
        site(["a.test"], port, root=root, extra="client_certificate: required\nclient_trust: [moat-ca]"),
        site(["b.test"], port, root=root, extra="client_certificate: required\nclient_trust: [corp]")]),
        wait=[port])
    sess = moat.dir / f"a{proto}.sess"
    reused, status, out = s_client(port, "a.test", alice, ca_pem, [proto], sess_out=sess)
    assert status == 200 and not reused, out
    # the session resumes on its own site (the control)...
    reused, status, out = s_client(port, "a.test", alice, ca_pem, [proto], sess_in=sess)
    assert reused and status == 200, out
    # ...never on the other one, whose anchors would not have accepted the certificate
    reused, status, out = s_client(port, "b.test", alice, ca_pem, [proto], sess_in=sess)
    assert not reused, out
    assert status == 403 and "x-moat-client-cert: untrusted" in out.lower(), out
