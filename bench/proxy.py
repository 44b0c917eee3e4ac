#!/usr/bin/python3
"""The reverse-proxy measure: keep-alive GET of a 1 KiB response over TLS through a proxy to a plain-HTTP
upstream on loopback, per second of the proxy's CPU, one worker each: moat against nginx as a proxy
and HAProxy (Debian's 2.6), in the same rounds. The upstream is the same Debian nginx serving the file for
every proxy, pinned with the load generator to the other core; only the proxy's CPU time counts. Then the
memory per idle client connection of each proxy (the measure of bench.py).

    bench/proxy.py            (BENCH_QUICK=1 for short runs, BENCH_ROUNDS=N; the knobs of bench.py)

Targets (issue 13): >= 1.2x nginx and >= 1.0x HAProxy per proxy CPU-second; memory per idle client
connection <= nginx's.
"""
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402  (the fixture, the servers and the measures)
from bench import NGINX, PIN_CLIENT, ROUNDS, Fixture, Moat, Nginx, Server, die, log  # noqa: E402

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class Upstream(Nginx):
    """Plain-HTTP nginx serving the document root: the application every proxy forwards to."""

    def start(self, alg="ec"):
        saved = bench.PIN_SERVER
        bench.PIN_SERVER = PIN_CLIENT  # beside the load generator: the measured core is the proxy's
        try:
            super().start(alg)
        finally:
            bench.PIN_SERVER = saved

    def command(self, alg):
        cmd, env = super().command(alg)
        conf = self.dir / "nginx.conf"
        lines = [ln for ln in conf.read_text().splitlines() if "ssl_" not in ln and "server_name" not in ln]
        conf.write_text("\n".join(ln.replace(" ssl http2;", ";") for ln in lines) + "\n")
        return cmd, env


class MoatProxy(Moat):
    upstream = None

    def serving(self):
        return (f"upstreams:\n  app:\n    servers: [\"127.0.0.1:{self.upstream.port}\"]\n    keepalive: 64\n",
                "    locations:\n      - path: /\n        proxy: app\n")


class NginxProxy(Nginx):
    upstream = None

    def command(self, alg):
        cmd, env = super().command(alg)
        conf = self.dir / "nginx.conf"
        text = conf.read_text()
        text = text.replace("    server {", f"""    upstream app {{ server 127.0.0.1:{self.upstream.port}; keepalive 64; }}
    server {{""", 1)
        text = text.replace(f"        root {self.fx.www};", """        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }""")
        conf.write_text(text)
        return cmd, env


class HAProxy(Server):
    upstream = None

    def version(self):
        r = bench.run([HAPROXY, "-v"])
        return (r.stdout.splitlines() or [""])[0].strip()

    def command(self, alg):
        key, crt = self.fx.keys[alg]
        d = self.dir
        pem = d / "bundle.pem"
        pem.write_bytes(crt.read_bytes() + key.read_bytes())
        os.chmod(pem, 0o600)
        conf = d / "haproxy.cfg"
        conf.write_text(f"""global
    nbthread 1
    maxconn 8192
    ssl-default-bind-ciphersuites {bench.TLS13_SUITES}
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:{self.port} ssl crt {pem} alpn http/1.1
    option forwardfor
    default_backend app
backend app
    server s1 127.0.0.1:{self.upstream.port}
""")
        return [HAPROXY, "-db", "-f", str(conf)], dict(os.environ)


def main():
    for tool in ("taskset", "wrk", NGINX, HAPROXY):
        if not shutil.which(tool) and not os.access(tool, os.X_OK):
            die(f"{tool} is missing: run `scripts/deps.sh bench` (as root) first")
    top = pathlib.Path(tempfile.mkdtemp(prefix="moat-bench-proxy-"))
    up = None
    proxies = []
    try:
        bench.ensure_tlsbench(top)
        fx = Fixture(top)
        fx.make()
        up = Upstream(fx, "upstream")
        up.start()
        m = MoatProxy(fx, "moat")
        m.prepare()
        proxies = [m, NginxProxy(fx, "nginx"), HAProxy(fx, "haproxy")]
        for p in proxies:
            p.upstream = up
        res = {p.label: {"keepalive": [], "memory": []} for p in proxies}
        for rnd in range(ROUNDS):
            order = proxies if rnd % 2 == 0 else proxies[::-1]
            for name, fn in (("keepalive", bench.m_keepalive), ("memory", bench.m_memory)):
                for p in order:
                    p.start("ec")
                    try:
                        bench.warmup(p, fx)
                        r = fn(p, fx)
                    finally:
                        p.stop()
                    res[p.label][name].append(r)
                    shown = f"{r.ops:.1f} KiB/conn" if name == "memory" else \
                        f"{bench.fmt(r.rate)} req/s, {bench.fmt(r.per_cpu)}/CPU-s, proxy CPU {r.util:.0%}"
                    log(f"round {rnd + 1}/{ROUNDS}  proxy {name:9} {p.label:8} {shown}"
                        + (f"\n    PROBLEM: {r.problem}" if r.problem else ""))
        med = {lab: {"rps": statistics.median(x.per_cpu for x in v["keepalive"]),
                     "mem": statistics.median(x.ops for x in v["memory"])} for lab, v in res.items()}
        print(f"\nmoat bench, reverse proxy: {ROUNDS} round(s), medians"
              + (" (BENCH_QUICK: short runs, not for the record)" if bench.QUICK else ""))
        print(f"{'':10} {'req per proxy CPU-s':>20} {'KiB per idle conn':>18}")
        for lab in med:
            print(f"{lab:10} {bench.fmt(med[lab]['rps']):>20} {med[lab]['mem']:>18.1f}")
        for other, target in (("nginx", 1.2), ("haproxy", 1.0)):
            ratio = med["moat"]["rps"] / med[other]["rps"] if med[other]["rps"] else 0
            print(f"moat / {other}: {ratio:.2f}x per proxy CPU-second (target >= {target}x)"
                  + ("" if ratio >= target else "  BELOW TARGET"))
        mr = med["moat"]["mem"] / med["nginx"]["mem"] if med["nginx"]["mem"] else 0
        print(f"moat / nginx memory per idle client connection: {mr:.2f}x (target <= 1.0x)")
        problems = [r.problem for v in res.values() for rs in v.values() for r in rs if r.problem]
        return 1 if problems else 0
    finally:
        for p in proxies:
            p.stop()
        if up is not None:
            up.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
