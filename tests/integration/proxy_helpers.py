"""The reverse-proxy tests' client (curl, any HTTP version) and configuration (one upstream, one site)."""
import subprocess

from serve_helpers import config, site


def curl(port, path, *args, http2=False, cafile=None, timeout=30):
    cmd = ["curl", "-sS", "-D", "-", "-o", "-", "--max-time", str(timeout), "--cacert", str(cafile),
           "--http2" if http2 else "--http1.1", *args, f"https://localhost:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    out = r.stdout
    heads = []
    while out.startswith(b"HTTP/"):
        head, _, out = out.partition(b"\r\n\r\n")
        heads.append(head.decode("latin-1"))
    if not heads:
        return 0, {}, out, r.stderr.decode(errors="replace")
    lines = heads[-1].split("\r\n")
    hd = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hd.setdefault(k.strip().lower(), v.strip())
    return int(lines[0].split()[1]), hd, out, r.stderr.decode(errors="replace")


def serve(moat, servers, port, upstream_extra="", location_extra="", site_extra="", extra="", limits=""):
    ups = "upstreams:\n  app:\n    servers: [" + ", ".join(f"'{s}'" for s in servers) + "]\n"
    ups += "".join("    " + ln + "\n" for ln in upstream_extra.strip().splitlines())
    loc = "locations:\n  - path: /\n    proxy: app\n" + "".join(
        "    " + ln + "\n" for ln in location_extra.strip().splitlines())
    cfg = config(moat, [site(["localhost"], port, extra=loc + site_extra)], extra=ups + extra, limits=limits)
    return moat.serve(cfg, wait=[port])
