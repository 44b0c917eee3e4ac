"""Prometheus metrics on metrics: {listen: ...}: the exposition is checked by Debian's promtool (strict
format and naming lint), the values against what was done (requests, a failed handshake, a client
certificate verdict, a reload, the certificate's notAfter from openssl), and Debian's prometheus scrapes it.
Everything listens on 127.0.0.1 on free ports."""
import json
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from ccert_helpers import curl
from conftest import free_port
from serve_helpers import config, site, wait_for


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text, name, **labels):
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        assert m, f"not a sample line: {line!r}"
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def test_metrics_endpoint(moat, setup):  # noqa: F811
    root, ca_pem = setup
    port, mport = free_port(), free_port()
    cfg = config(moat, [site(["localhost"], port, root=root, extra="""
locations:
  - path: /private
    client_certificate: required
""")], extra=f"metrics: {{ listen: \"127.0.0.1:{mport}\" }}\n")
    moat.serve(cfg, wait=[port, mport])
    assert curl(port, "/", cafile=ca_pem)[0] == 200
    assert curl(port, "/missing", cafile=ca_pem)[0] == 404
    assert curl(port, "/private/", cafile=ca_pem)[0] == 403
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # not TLS: a failed handshake
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.recv(100)
    text = scrape(mport)
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", lint.stdout + lint.stderr
    assert value(text, "moat_build_info") == 1
    assert value(text, "moat_http_requests_total", site="localhost", code="2xx") == 1
    assert value(text, "moat_http_requests_total", site="localhost", code="4xx") == 2
    assert value(text, "moat_tls_handshakes_total", site="localhost", result="ok") == 3
    assert value(text, "moat_tls_handshakes_total", result="failed") >= 1
    assert value(text, "moat_client_certificate_verdicts_total", reason="none") == 1
    assert value(text, "moat_open_connections") >= 0
    na = json.loads(moat.ok("key", "show", "www", "--json").stdout)["not_after"]
    want = time.mktime(time.strptime(na, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert value(text, "moat_certificate_not_after_timestamp_seconds", key="www", site="localhost") == want
    nb = value(text, "moat_certificate_not_before_timestamp_seconds", key="www", site="localhost")
    assert 0 < nb < want
    # A store change is a reload; the counter says so.
    moat.ok("ca", "issue", "other", "--cn", "other.test")
    assert wait_for(lambda: value(scrape(mport), "moat_reloads_total") == 1), scrape(mport)
    assert value(scrape(mport), "moat_reloads_refused_total") == 0
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=10)
    assert e.value.code == 404

    # Debian's prometheus scrapes it.
    pport = free_port()
    pdir = moat.dir / "prom"
    pdir.mkdir()
    (pdir / "prometheus.yml").write_text(
        "global: { scrape_interval: 1s }\n"
        f"scrape_configs:\n  - job_name: moat\n    static_configs: [ {{ targets: ['127.0.0.1:{mport}'] }} ]\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={pdir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={pdir / 'data'}", f"--web.listen-address=127.0.0.1:{pport}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/query?query=moat_build_info",
                                            timeout=5) as r:
                    res = json.loads(r.read())["data"]["result"]
                    return res if res else None
            except OSError:
                return None
        res = wait_for(up, timeout=60, step=0.5)
        assert res and res[0]["value"][1] == "1" and res[0]["metric"]["job"] == "moat", res
        with urllib.request.urlopen(f"http://127.0.0.1:{pport}/api/v1/targets", timeout=5) as r:
            t = json.loads(r.read())["data"]["activeTargets"]
        assert t and t[0]["health"] == "up" and t[0]["lastError"] == "", t
    finally:
        prom.terminate()
        prom.wait(timeout=30)


def test_metrics_listen_is_checked(moat):
    cfg = moat.dir / "m.yaml"
    cfg.write_text("metrics: { listen: \"*:9464\" }\nsites: []\n")
    r = moat.fails("serve", "-c", cfg, "--check")
    assert "metrics.listen" in r.stderr and "one address" in r.stderr


def test_a_changed_listen_address_waits_for_a_restart(moat, setup):  # noqa: F811
    root, ca_pem = setup
    port, mport, other = free_port(), free_port(), free_port()
    text = config(moat, [site(["localhost"], port, root=root)], extra=f"metrics: {{ listen: \"127.0.0.1:{mport}\" }}\n")
    moat.serve(text, wait=[port, mport])
    (moat.dir / "moat.yaml").write_text(text.replace(str(mport), str(other)))
    assert wait_for(lambda: moat.store.with_name(moat.store.name + ".pid").exists())  # written once it serves
    moat.ok("reload", "-c", moat.dir / "moat.yaml")
    assert wait_for(lambda: "metrics.listen changed: restart moat" in (moat.dir / "error.log").read_text())
    assert value(scrape(mport), "moat_reloads_total") == 1
