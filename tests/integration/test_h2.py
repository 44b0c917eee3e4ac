"""HTTP/2 on TLS listeners: ALPN, real clients (curl --http2, nghttp, h2load), the same answers as
HTTP/1.1 (static files, ranges, conditional requests, 421, whoami, the access log), http2: false, and a
graceful stop with GOAWAY."""
import json
import shutil
import subprocess

import pytest

from serve_helpers import CA, config, free_port, get, site, wait_for

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed")


@pytest.fixture
def served(moat):
    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("hello over h2\n")
    (root / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    ca.issue(moat, "www", ["localhost"])
    ca.issue(moat, "other", ["other.test"])
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root),
                             site(["other.test"], port, root=root)]), wait=[port])
    return moat, ca, port


def curl(ca, port, path="/", *args, host="localhost"):
    r = subprocess.run(["curl", "-sS", "--http2", "--cacert", str(ca.pem),
                        "--resolve", f"{host}:{port}:127.0.0.1", "-o", "-", "-D", "/dev/stderr",
                        "-w", "\n%{http_version} %{http_code}", *args, f"https://{host}:{port}{path}"],
                       capture_output=True, timeout=30)
    body, _, tail = r.stdout.rpartition(b"\n")
    version, code = tail.decode().split()
    return version, int(code), body, r.stderr.decode(errors="replace")


def test_curl_speaks_h2_and_gets_the_same_answers(served):
    moat, ca, port = served
    assert curl(ca, port)[:3] == ("2", 200, b"hello over h2\n")
    version, code, body, head = curl(ca, port, "/big.bin")
    assert (version, code, len(body)) == ("2", 200, 1 << 20) and body == bytes(range(256)) * 4096
    version, code, body, head = curl(ca, port, "/big.bin", "-r", "10-19")
    assert (code, body) == (206, bytes(range(10, 20))) and "content-range: bytes 10-19/1048576" in head
    etag = [ln.split(": ", 1)[1].strip() for ln in curl(ca, port)[3].splitlines() if ln.startswith("etag:")][0]
    assert curl(ca, port, "/", "-H", f"If-None-Match: {etag}")[1] == 304
    assert curl(ca, port, "/missing")[1] == 404
    assert curl(ca, port, "/", "-I")[1] == 200
    assert "connection:" not in curl(ca, port)[3].lower()


def test_authority_of_another_site_gets_421(served):
    moat, ca, port = served
    # the connection is for localhost (SNI); :authority names the other site of the listener
    version, code, body, _ = curl(ca, port, "/", "-H", "Host: other.test")
    assert (version, code) == ("2", 421)
    assert curl(ca, port, "/", host="other.test")[1] == 200


def test_whoami_and_access_log_say_the_protocol(served):
    moat, ca, port = served
    version, code, body, _ = curl(ca, port, "/.well-known/moat/whoami?format=json")
    assert code == 200 and json.loads(body)["protocol"] == "h2"
    assert "protocol: http/1.1" in get(port, "/.well-known/moat/whoami", cafile=ca.pem)[2].decode()
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and ' h2 "GET /.well-known/moat/whoami?format=json" 200 ' in log.read_text(),
                    timeout=5), log.read_text() if log.exists() else ""
    assert ' http/1.1 "GET /.well-known/moat/whoami" 200 ' in log.read_text()


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is needed")
def test_nghttp_many_streams(served):
    moat, ca, port = served
    r = subprocess.run(["nghttp", "-nv", "-m", "20", f"https://localhost:{port}/"], capture_output=True,
                       timeout=30, text=True, env={"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(ca.pem)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(":status: 200") == 20
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in r.stdout


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is needed")
def test_h2load(served):
    moat, ca, port = served
    r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", f"https://localhost:{port}/"],
                       capture_output=True, timeout=60, text=True)
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout + r.stderr
    assert "Application protocol: h2" in r.stdout


def test_http2_false_offers_only_http11(moat):
    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("ok\n")
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)], extra="http2: false\n"), wait=[port])
    assert curl(ca, port)[:2] == ("1.1", 200)
    assert _doctor_alpn(moat, ca, port) == ["http/1.1"]


def _doctor_alpn(moat, ca, port):
    r = moat.run("doctor", "--json", "--timeout", "5", "--ca", str(ca.pem), f"https://localhost:{port}/")
    report = json.loads(r.stdout)
    return [f["value"] for s in report["subjects"] for f in s["facts"] if f["key"] == "alpn"]


def test_doctor_reports_alpn(served):
    moat, ca, port = served
    assert _doctor_alpn(moat, ca, port) == ["h2"]
