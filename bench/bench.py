#!/usr/bin/python3
"""make bench: moat against nginx on loopback, measured in server CPU time.

Both servers get the same certificates, the same files and one worker each; the server runs pinned to one
core and the load generator to the other; runs are interleaved server by server, round by round, and the
medians are compared. See bench/README.md for the method and the knobs (BENCH_QUICK, BENCH_ROUNDS,
BENCH_SERVERS, BENCH_MEASURES, BENCH_WRITE).
"""
import datetime
import os
import pathlib
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SRC = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("MOAT_BUILD_DIR", SRC / "build" / "release"))
MOAT = os.environ.get("MOAT_BIN", str(BUILD / "moat"))
# BENCH_MEASURES=hs-ecdsa,memory runs only those measures (names as in MEASURES).
ONLY = [m.strip() for m in os.environ.get("BENCH_MEASURES", "").split(",") if m.strip()]
# A/B runs of two moat builds: BENCH_SERVERS=moat,moat-b with MOAT_BIN_B naming the second binary.
MOAT_B = os.environ.get("MOAT_BIN_B", "")
TLSBENCH = os.environ.get("TLSBENCH_BIN", str(BUILD / "bench" / "tlsbench"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SERVER_CPU = os.environ.get("BENCH_SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("BENCH_CLIENT_CPU", "1")
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
HOST = "localhost"  # the name in the certificates; always connected on 127.0.0.1
BIG_FILE_MIB = 64

# Durations and sizes: the full run stays well under ten minutes on two cores.
WRK_SECONDS = 3 if QUICK else 10
HS_SECONDS = 2 if QUICK else 8
HS_INFLIGHT = 32
DOWNLOADS = 4 if QUICK else 24
IDLE_CONNS = 500 if QUICK else 2000
WRK_CONNS = 50

# Other work on the machine (builds, tests) competes for the same two cores and makes every exchange between
# client and server wait for a time slice: throughputs collapse, while operations per server CPU second stay
# comparable. BENCH_RT=1 runs the server and the load generator SCHED_FIFO so that they always run first:
# honest throughputs too, but everything else on those cores nearly stops for the run (a dedicated machine).
RT = os.environ.get("BENCH_RT", "") not in ("", "0")
PIN_SERVER = (["chrt", "-f", "1"] if RT else []) + ["taskset", "-c", SERVER_CPU]
PIN_CLIENT = (["chrt", "-f", "1"] if RT else []) + ["taskset", "-c", CLIENT_CPU]
BUSY_WARN = 0.25  # others' share of the machine above which a run is flagged as disturbed

CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench: {msg}")
    sys.exit(1)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- /proc: CPU time, memory, descriptors

def proc_tree(root):
    """<root> and all its descendants (threads are included in each process's own counters)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(root):
    """utime + stime of the whole process tree, in seconds."""
    total = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLK_TCK


def machine_busy_seconds():
    """Non-idle CPU time of the whole machine (all cores), in seconds."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def children_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def memory_kib(root):
    """(Pss, Rss) of the process tree in KiB, from smaps_rollup."""
    pss = rss = 0
    for p in proc_tree(root):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss


def open_fds(root):
    n = 0
    for p in proc_tree(root):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
    return n


def nofile_limit(root):
    try:
        with open(f"/proc/{root}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------- the shared fixture: certificates, files

class Fixture:
    """Certificates (a throwaway CA, an ECDSA P-256 and an RSA-2048 server certificate) and a document root."""

    def __init__(self, top):
        self.top = top
        self.pki = top / "pki"
        self.www = top / "www"
        self.pki.mkdir()
        self.www.mkdir()
        self.ca = self.pki / "ca.pem"
        self.keys = {}  # alg -> (key.pem, cert.pem)

    def openssl(self, *args):
        r = run(["openssl", *map(str, args)])
        if r.returncode != 0:
            die(f"openssl {' '.join(map(str, args))} failed: {r.stderr.strip()}")

    def make(self):
        p = self.pki
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", p / "ca.key", "-out", self.ca, "-subj", "/CN=moat bench CA", "-days", "2",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        ext = p / "server.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for alg, newkey in (("ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                            ("rsa", ["-newkey", "rsa:2048"])):
            key, csr, crt = p / f"{alg}.key", p / f"{alg}.csr", p / f"{alg}.pem"
            self.openssl("req", *newkey, "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
            self.openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", p / "ca.key", "-set_serial",
                         str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-sha256", "-extfile", ext,
                         "-out", crt)
            os.chmod(key, 0o600)
            self.keys[alg] = (key, crt)
        (self.www / "1k.bin").write_bytes(os.urandom(1024))
        with open(self.www / "64m.bin", "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(BIG_FILE_MIB):
                f.write(chunk)
        (self.www / "index.html").write_text("<!doctype html><title>bench</title>\n")


# ---------------------------------------------------------------- the servers

class Server:
    label = "server"

    def __init__(self, fx, label):
        self.fx = fx
        self.label = label
        self.proc = None
        self.port = 0
        self.dir = None
        self.wrap = []  # a command the server runs under (valgrind for --instructions)
        self.start_timeout = 20.0

    def command(self, alg):
        raise NotImplementedError

    def start(self, alg):
        self.port = free_port()
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{self.label}-", dir=self.fx.top))
        cmd, env = self.command(alg)
        self.out = open(self.dir / "server.out", "wb")
        self.proc = subprocess.Popen([*PIN_SERVER, *self.wrap, *cmd], stdout=self.out,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        if not wait_port(self.port, self.proc, self.start_timeout):
            self.stop()
            die(f"{self.label} did not listen on 127.0.0.1:{self.port}; its output:\n{self.output()}")

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        try:
            return (self.dir / "server.out").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"bench: {self.label} did not stop within 20 s of SIGTERM; killing it")
                for p in proc_tree(self.proc.pid):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait()
        self.out.close()
        self.proc = None


class Nginx(Server):
    def version(self):
        r = run([NGINX, "-v"])
        return (r.stderr or r.stdout).strip().replace("nginx version: ", "")

    def command(self, alg):
        key, crt = self.fx.keys[alg]
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log error;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_header_timeout 120s;
    sendfile on;
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        server_name localhost;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_conf_command Ciphersuites {TLS13_SUITES};
        ssl_session_tickets on;
        ssl_session_cache off;
        root {self.fx.www};
    }}
}}
""")
        return [NGINX, "-c", str(conf), "-p", str(d)], dict(os.environ)


H2O = shutil.which("h2o") or "/usr/bin/h2o"


class H2o(Server):
    """h2o (Debian's 2.2.5): measured against moat on the HTTP/2 measure only."""

    def version(self):
        r = run([H2O, "--version"])
        return ((r.stdout or r.stderr).splitlines() or [""])[0].strip()

    def command(self, alg):
        key, crt = self.fx.keys[alg]
        d = self.dir
        user = "user: root\n" if os.geteuid() == 0 else ""
        conf = d / "h2o.conf"
        # One thread like the others; no access log; the client's cipher order (h2o 2.2 cannot be given
        # TLS 1.3 suites, and its own order starts with AES-256), so the cipher is the one moat and nginx
        # negotiate too; no OCSP stapling (the bench CA has no responder).
        conf.write_text(f"""{user}num-threads: 1
pid-file: {d}/h2o.pid
error-log: {d}/error.log
http2-idle-timeout: 300
listen:
  host: 127.0.0.1
  port: {self.port}
  ssl:
    certificate-file: {crt}
    key-file: {key}
    minimum-version: TLSv1.2
    cipher-preference: client
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        file.dir: {self.fx.www}
""")
        return [H2O, "-c", str(conf)], dict(os.environ)


# The TLS 1.3 suites nginx is told to prefer, in moat's order, so both negotiate the same cipher.
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


class Moat(Server):
    store_dir = None

    def __init__(self, fx, label, binary=MOAT):
        super().__init__(fx, label)
        self.bin = binary

    def version(self):
        r = run([self.bin, "--version"])
        return (r.stdout or r.stderr).strip()

    def available(self):
        """None when this moat can be benchmarked, else the reason why not."""
        for args in (["serve", "--help"], ["key", "import", "--help"]):
            try:
                r = run([self.bin, *args], timeout=20)
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"`moat {' '.join(args[:-1])}` cannot run: {e}"
            if r.returncode != 0:
                return f"this moat has no working `moat {' '.join(args[:-1])}` command yet"
        return None

    def env(self):
        e = dict(os.environ)
        e["MOAT_STORE"] = str(self.store_dir / "moat.db")
        e.pop("MOAT_CONFIG", None)
        e.pop("MOAT_MASTER_KEY_FILE", None)
        return e

    def prepare(self):
        """One store for every moat run, holding the same keys and certificates nginx reads from files."""
        self.store_dir = self.fx.top / f"{self.label}-store"
        self.store_dir.mkdir()
        for alg, (key, crt) in self.fx.keys.items():
            name = f"bench-{alg}"
            bundle = self.fx.pki / f"{alg}-bundle.pem"
            bundle.write_bytes(key.read_bytes() + crt.read_bytes())
            os.chmod(bundle, 0o600)
            r = run([self.bin, "key", "import", name, str(bundle)], env=self.env(), timeout=60)
            if r.returncode != 0:
                die(f"moat key import {name} failed: {r.stderr.strip()}")
            if "pending" in r.stdout:  # the key came without its certificate
                r = run([self.bin, "cert", "install", name, str(crt)], env=self.env(), timeout=60)
                if r.returncode != 0:
                    die(f"moat cert install {name} failed: {r.stderr.strip()}")
            bundle.unlink()

    def serving(self):
        """Top-level keys, and the keys of the site saying what it serves: the document root here."""
        return "", f"    root: {self.fx.www}\n"

    def command(self, alg):
        d = self.dir
        conf = d / "moat.yaml"
        top, site = self.serving()
        conf.write_text(f"""store: {self.store_dir}/moat.db
workers: 1
log: {{ error: {d}/error.log }}
limits: {{ header_timeout_s: 120, idle_timeout_s: 300, max_connections: 16384 }}
{top}sites:
  - hosts: [localhost, 127.0.0.1]
    default: true
    listen: ["127.0.0.1:{self.port}"]
    certificate: bench-{alg}
{site}""")
        return [self.bin, "serve", "-c", str(conf)], self.env()


# ---------------------------------------------------------------- the measures

def client(cmd, timeout):
    return run([*PIN_CLIENT, *map(str, cmd)], timeout=timeout)


def kv(line):
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def tlsbench_args(srv, *extra):
    return [TLSBENCH, "-q", "-s", HOST, *extra, "127.0.0.1", srv.port]


def warmup(srv, fx):
    """A few verified requests: the server answers with the right certificate and the file; startup and
    first-use costs stay outside the measured window."""
    r = client(tlsbench_args(srv, "-A", fx.ca, "-G", "/1k.bin", "-n", "40", "-c", "4", "-d", "20"), 60)
    if r.returncode != 0 or "failed=0" not in r.stdout:
        die(f"warm-up against {srv.label} failed: {r.stderr.strip() or r.stdout.strip()}\n{srv.output()}")
    bytes_read = int(kv(r.stdout.strip().splitlines()[-1]).get("bytes", "0"))
    if bytes_read < 40 * 1024:
        die(f"{srv.label} served {bytes_read} bytes for 40 requests of a 1 KiB file")


class Result:
    def __init__(self, ops, wall, cpu, info="", problem="", extra=None):
        self.ops, self.wall, self.cpu = ops, wall, cpu
        self.info, self.problem = info, problem
        self.extra = extra or {}
        self.client_cpu = 0.0
        self.other_cpu = 0.0  # CPU time used by everything else on the machine during the run

    @property
    def rate(self):
        return self.ops / self.wall if self.wall > 0 else 0.0

    @property
    def per_cpu(self):
        return self.ops / self.cpu if self.cpu > 0 else 0.0

    @property
    def util(self):
        return self.cpu / self.wall if self.wall > 0 else 0.0


_last_timing = {}


def timed(srv, fn):
    """Runs the load <fn>; returns its output, the wall time and the server's CPU time. The client's and
    everyone else's CPU time are kept in _last_timing for the report."""
    m0, k0 = machine_busy_seconds(), children_cpu_seconds()
    c0, t0 = cpu_seconds(srv.pid), time.monotonic()
    out = fn()
    t1, c1 = time.monotonic(), cpu_seconds(srv.pid)
    m1, k1 = machine_busy_seconds(), children_cpu_seconds()
    _last_timing["client"] = k1 - k0
    _last_timing["other"] = max(0.0, (m1 - m0) - (c1 - c0) - (k1 - k0))
    return out, t1 - t0, c1 - c0


def m_keepalive(srv, fx):
    url = f"https://127.0.0.1:{srv.port}/1k.bin"
    r, wall, cpu = timed(srv, lambda: client(["wrk", "-t1", f"-c{WRK_CONNS}", f"-d{WRK_SECONDS}s", url],
                                              WRK_SECONDS + 60))
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", r.stdout)
    if r.returncode != 0 or not m:
        return Result(0, wall, cpu, problem=f"wrk failed: {r.stderr.strip() or r.stdout.strip()}")
    problem = ""
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    errs = re.search(r"Socket errors: (.*)", r.stdout)
    if bad:
        problem += f"{bad.group(1)} non-2xx responses; "
    if errs:
        problem += f"socket errors: {errs.group(1)}; "
    return Result(int(m.group(1)), wall, cpu, problem=problem.rstrip("; "))


def m_h2(srv, fx):
    """HTTP/2: h2load, 16 connections with 10 streams each, GET of the 1 KiB file."""
    url = f"https://127.0.0.1:{srv.port}/1k.bin"
    secs = WRK_SECONDS
    r, wall, cpu = timed(srv, lambda: client(["h2load", "-c16", "-m10", "-D", str(secs), url],
                                              secs + 60))
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", r.stdout)
    if r.returncode != 0 or not m or "Application protocol: h2" not in r.stdout:
        return Result(0, wall, cpu, problem=f"h2load failed: {r.stderr.strip()[-300:] or r.stdout.strip()[-300:]}")
    cipher = re.search(r"Cipher: (\S+)", r.stdout)
    cipher = cipher.group(1) if cipher else "?"
    return Result(int(m.group(1)), wall, cpu, info=cipher, extra={"cipher": cipher},
                  problem=f"{m.group(2)} failed" if m.group(2) != "0" else "")


def m_handshakes(srv, fx, resume=False):
    args = ["-d", HS_SECONDS, "-c", HS_INFLIGHT] + (["-r"] if resume else [])
    r, wall, cpu = timed(srv, lambda: client(tlsbench_args(srv, *args), HS_SECONDS + 60))
    lines = r.stdout.strip().splitlines()
    if not lines:
        return Result(0, wall, cpu, problem=f"tlsbench failed: {r.stderr.strip()}")
    v = kv(lines[-1])
    hs, new, resumed = int(v["handshakes"]), int(v["new"]), int(v["resumed"])
    problem = r.stderr.strip() if r.returncode != 0 else ""
    if resume and resumed != hs - 1:
        problem = f"RESUMPTION FAILED: only {resumed} of {hs - 1} handshakes were resumed. " + problem
    if not resume and resumed:
        problem = f"{resumed} handshakes were resumed in a full-handshake run. " + problem
    info = f"{v['version']} {v['cipher']} {v['group']} {v['peer_key']}; new={new} resumed={resumed}"
    return Result(hs, wall, cpu, info=info, problem=problem.strip(),
                  extra={"peer_key": v["peer_key"], "cipher": v["cipher"], "group": v["group"]})


def m_download(srv, fx):
    url = f"https://{HOST}:{srv.port}/64m.bin"
    cmd = ["curl", "-sS", "--http1.1", "--cacert", str(fx.ca), "--resolve", f"{HOST}:{srv.port}:127.0.0.1",
           "-w", "%{size_download}\\n"]
    for _ in range(DOWNLOADS):
        cmd += ["-o", "/dev/null", url]
    r, wall, cpu = timed(srv, lambda: client(cmd, 300))
    sizes = [int(x) for x in r.stdout.split()]
    total = sum(sizes)
    want = DOWNLOADS * BIG_FILE_MIB * 1024 * 1024
    problem = ""
    if r.returncode != 0 or total != want:
        problem = f"curl got {total} of {want} bytes (exit {r.returncode}): {r.stderr.strip()}"
    return Result(total / 1e6, wall, cpu, problem=problem)


def m_memory(srv, fx):
    before_pss, before_rss = memory_kib(srv.pid)
    fds_before = open_fds(srv.pid)
    limit = nofile_limit(srv.pid)
    problem = ""
    if limit and limit < IDLE_CONNS + 64:
        problem = f"the server's open-file limit is {limit}, below {IDLE_CONNS} connections; "
    p = subprocess.Popen([*PIN_CLIENT, *map(str, tlsbench_args(
        srv, "-H", IDLE_CONNS, "-c", "50", "-d", "120"))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    c0 = cpu_seconds(srv.pid)
    ready = p.stdout.readline()
    wall = time.monotonic() - t0
    cpu = cpu_seconds(srv.pid) - c0
    time.sleep(1.0)  # let the server settle (buffers released once the tickets are written)
    after_pss, after_rss = memory_kib(srv.pid)
    fds_after = open_fds(srv.pid)
    try:
        out, err = p.communicate("done\n", timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    v = kv(out.strip().splitlines()[-1]) if out.strip() else {}
    held = int(kv(ready).get("open", "0"))
    still = int(v.get("still_open", "0"))
    if held != IDLE_CONNS or still != IDLE_CONNS:
        problem += f"{held} of {IDLE_CONNS} connections opened, {still} still open at the end: {err.strip()}; "
    if fds_after - fds_before < 0.95 * IDLE_CONNS:
        problem += f"the server holds only {fds_after - fds_before} more descriptors; "
    per_pss = (after_pss - before_pss) / IDLE_CONNS
    per_rss = (after_rss - before_rss) / IDLE_CONNS
    info = (f"Pss {before_pss} -> {after_pss} KiB, Rss {before_rss} -> {after_rss} KiB, "
            f"fds +{fds_after - fds_before}")
    return Result(per_pss, wall, cpu, info=info, problem=problem.rstrip("; "),
                  extra={"rss_per_conn": per_rss, "handshake_rate": held / wall if wall else 0})


# name, title, unit of the throughput, certificate, function, server-CPU target (>=), memory target
MEASURES = [
    ("keepalive", "1. keep-alive GET 1 KiB (wrk)", "req/s", "ec", m_keepalive, 1.1),
    ("hs-ecdsa", "2a. full handshakes, ECDSA P-256", "hs/s", "ec", m_handshakes, 1.1),
    ("hs-rsa", "2b. full handshakes, RSA-2048", "hs/s", "rsa", m_handshakes, 1.1),
    ("resume", "3. resumed handshakes (tickets)", "hs/s", "ec", lambda s, f: m_handshakes(s, f, True), 1.1),
    ("download", f"4. download {BIG_FILE_MIB} MiB", "MB/s", "ec", m_download, 1.0),
    ("memory", "5. memory per idle TLS connection", "KiB", "ec", m_memory, 1.0),
    ("h2", "6. HTTP/2 GET 1 KiB (h2load -c16 -m10)", "req/s", "ec", m_h2, 2.0),
]


# ---------------------------------------------------------------- report

def fmt(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


# A third server for some measures: h2o on the HTTP/2 one (BENCH_H2O=0 leaves it out). Its rows compare
# the first server with it: measure, title, server-CPU target.
THIRD_MEASURES = {"h2": ("6b. HTTP/2 GET 1 KiB (h2load -c16 -m10)", 0.6)}
USE_H2O = os.environ.get("BENCH_H2O", "1") not in ("", "0")


def summarize(results, a, b, measures=None):
    rows = []
    for name, title, unit, _alg, _fn, target in measures or MEASURES:
        ra, rb = results[(name, a)], results[(name, b)]
        if not ra or not rb:
            continue
        if name == "memory":
            va, vb = statistics.median(r.ops for r in ra), statistics.median(r.ops for r in rb)
            ratio = va / vb if vb > 0 else float("inf")
            rows.append(dict(title=title, unit="KiB/conn (Pss)", a=va, b=vb, thr=None, cpu_a=None, cpu_b=None,
                             cpu_ratio=ratio, rounds="", target=f"<= {target:.1f}", ok=ratio <= target,
                             util_a=None, util_b=None, others=None))
            continue
        ta, tb = statistics.median(r.rate for r in ra), statistics.median(r.rate for r in rb)
        ea, eb = statistics.median(r.per_cpu for r in ra), statistics.median(r.per_cpu for r in rb)
        # The two runs of a round are seconds apart; rounds are minutes apart, and a shared machine's speed
        # drifts over minutes (10-20 % seen here). So the ratio is taken within each round, then the median.
        paired = [x.per_cpu / y.per_cpu for x, y in zip(ra, rb) if y.per_cpu > 0]
        cpu_ratio = statistics.median(paired) if paired else 0.0
        others = statistics.median(r.other_cpu / (r.wall * NCPU) for r in ra + rb if r.wall > 0)
        rows.append(dict(title=title, unit=unit, a=ta, b=tb, thr=ta / tb if tb > 0 else 0.0, cpu_a=ea, cpu_b=eb,
                         cpu_ratio=cpu_ratio, rounds=" ".join(f"{x:.2f}" for x in paired),
                         target=f">= {target:.1f}", ok=cpu_ratio >= target,
                         util_a=statistics.median(r.util for r in ra), util_b=statistics.median(r.util for r in rb),
                         others=others))
    return rows


def table(rows, a, b, markdown=False):
    head = ["measure", "unit", a, b, f"{a}/{b}", f"{a} per CPU-s", f"{b} per CPU-s", "server-CPU ratio",
            "each round", "target", "", "server CPU use", "others' load"]
    lines = []
    for r in rows:
        if r["thr"] is None:
            lines.append([r["title"], r["unit"], f"{r['a']:.1f}", f"{r['b']:.1f}", "", "", "",
                          f"{r['cpu_ratio']:.2f}x (memory)", "", r["target"], "ok" if r["ok"] else "MISSED", "", ""])
        else:
            lines.append([r["title"], r["unit"], fmt(r["a"]), fmt(r["b"]), f"{r['thr']:.2f}x", fmt(r["cpu_a"]),
                          fmt(r["cpu_b"]), f"{r['cpu_ratio']:.2f}x", r["rounds"], r["target"],
                          "ok" if r["ok"] else "MISSED", f"{r['util_a']:.0%} / {r['util_b']:.0%}",
                          f"{r['others']:.0%}" + (" BUSY" if r["others"] > BUSY_WARN else "")])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt_line = lambda line: "  ".join(str(x).ljust(w) if i < 2 else str(x).rjust(w)  # noqa: E731
                                      for i, (x, w) in enumerate(zip(line, widths)))
    return "\n".join([fmt_line(head), fmt_line(["-" * w for w in widths])] + [fmt_line(x) for x in lines])


def machine_facts(servers):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    facts = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "openssl": run(["openssl", "version"]).stdout.strip(),
        "wrk": (run(["wrk", "-v"]).stdout.splitlines() or [""])[0].split(" [")[0],
        "curl": run(["curl", "--version"]).stdout.splitlines()[0].split(" (")[0],
    }
    for s in servers:
        facts[s.label] = s.version()
    return facts


def third_measures(c):
    """The MEASURES rows that the third server <c> takes part in, with their titles and targets against it."""
    return [(name, THIRD_MEASURES[name][0], unit, alg, fn, THIRD_MEASURES[name][1])
            for name, _title, unit, alg, fn, _t in MEASURES if name in THIRD_MEASURES]


def write_results(path, rows, results, facts, a, b, notes, c=None, rows_c=()):
    runs = []
    for name, title, unit, alg, _fn, _t in MEASURES:
        for label in (a, b) + ((c,) if c and name in THIRD_MEASURES else ()):
            for i, r in enumerate(results[(name, label)]):
                if name == "memory":
                    val = f"{r.ops:.1f} KiB/conn Pss ({r.extra['rss_per_conn']:.1f} Rss); {r.info}"
                else:
                    val = (f"{fmt(r.rate)} {unit}, {fmt(r.per_cpu)} per CPU-s, server CPU {r.cpu:.2f} s "
                           f"in {r.wall:.2f} s, client {r.client_cpu:.2f} s, other processes {r.other_cpu:.2f} s"
                           + (f"; {r.info}" if r.info else ""))
                if r.problem:
                    val += f"; **{r.problem}**"
                runs.append(f"| {title} | {label} | {i + 1} | {val} |")
    text = f"""# moat bench results

Produced by `make bench` (bench/bench.py) on {facts['date']}; the next full run rewrites this file.

## Machine
- {facts['cores']} cores, {facts['cpu']}; kernel {facts['kernel']}
- {facts['openssl']}; {' ; '.join(f'{k}: {facts[k]}' for k in (a, b, c) if k in facts)}
- load generators: {facts['wrk']}, {facts['curl']}, bench/tlsbench

## Summary ({ROUNDS} rounds, medians)

{table(rows, a, b, markdown=True)}
{(chr(10) + f"Against {c} (HTTP/2 only):" + chr(10) + chr(10) + table(rows_c, a, c, markdown=True) + chr(10)) if c and rows_c else ""}
"server-CPU ratio" = ({a} operations per second of server CPU time) / ({b} ...), the CPU time being
utime + stime of the server's whole process tree from /proc, taken within each round (the two runs of a
round are seconds apart, the rounds minutes, and a shared machine's speed drifts over minutes), then the
median over the rounds ("each round" lists them); the "per CPU-s" columns are each server's own medians
across rounds. For memory the ratio is {a}'s memory per idle
connection over {b}'s (lower is better). "server CPU use" is server CPU time over wall time: below 100 %
the load generator or other work on the machine, not the server, set the pace, and the throughput ratio
says little. "others' load" is the share of the whole machine (all cores) used by other processes during
the runs (median); above {BUSY_WARN:.0%} (BUSY) other work disturbed the runs.
{notes}
## Method
- Loopback only (127.0.0.1, free ports), one worker each, server pinned to core {SERVER_CPU} and the load
  generator to core {CLIENT_CPU} with taskset. Each run starts a fresh server, warms it up with 40 verified
  requests (certificate checked against the bench CA, 1 KiB file read back), reads its CPU time, runs
  the load, reads its CPU time again, and stops it. Runs alternate between the servers, and the order
  flips every round.
- Same files for both: a throwaway ECDSA P-256 CA; an ECDSA P-256 and an RSA-2048 server certificate for
  localhost/127.0.0.1; nginx reads the PEM files, moat gets the same key and certificate through
  `moat key import` into a temporary store. Document root with a 1 KiB and a {BIG_FILE_MIB} MiB file.
- nginx (nginx-light): `worker_processes 1`, `ssl_protocols TLSv1.2 TLSv1.3`, tickets on, session cache
  off, `access_log off`, `sendfile on` (inactive under TLS without kTLS), `keepalive_requests` 10M,
  X25519 then P-256, TLS 1.3 suites in moat's order ({TLS13_SUITES}).
  moat: `workers: 1`, no access log, the certificate named by key.
- h2o (measure 6 only): `num-threads: 1`, no access log, the client's cipher order (h2o 2.2 takes no TLS 1.3
  suites and prefers AES-256 itself; h2load's order gives the cipher moat and nginx negotiate), no OCSP
  stapling, `file.dir` on the same document root.
- 1: `wrk -t1 -c{WRK_CONNS} -d{WRK_SECONDS}s` on the 1 KiB file.
- 2: `tlsbench -c {HS_INFLIGHT} -d {HS_SECONDS}`: TLS 1.3 full handshakes, {HS_INFLIGHT} connections in
  flight; each connection handshakes, sends close_notify, reads the server's tickets and close_notify,
  closes; the client never offers a session and checks that none was resumed.
- 3: the same with `-r`: one full handshake, then every connection offers that session; all but the first
  must be resumed (the run is flagged otherwise).
- 4: one curl process downloading the {BIG_FILE_MIB} MiB file {DOWNLOADS} times on one keep-alive connection;
  MB/s of wall time and MB per server CPU second.
- 6: `h2load -c16 -m10 -D {WRK_SECONDS}` on the 1 KiB file (TLS 1.3, ALPN h2): requests per second of
  server CPU; 6b is the same measure against h2o in the same rounds.
- 5: `tlsbench -H {IDLE_CONNS} -c 50`: {IDLE_CONNS} connections complete a full handshake and stay idle; the
  server's Pss (smaps_rollup, summed over its processes) before and 1 s after, divided by {IDLE_CONNS}; the
  client checks at the end that all are still open, the bench that the server holds that many more descriptors.

## Every run

| measure | server | round | result |
|---|---|---|---|
""" + "\n".join(runs) + "\n"
    path.write_text(text)


# ---------------------------------------------------------------- profiles

PROFILE_LOADS = [
    ("keepalive", "ec", lambda srv, secs: ["wrk", "-t1", f"-c{WRK_CONNS}", f"-d{secs}s",
                                           f"https://127.0.0.1:{srv.port}/1k.bin"]),
    ("hs-ecdsa", "ec", lambda srv, secs: tlsbench_args(srv, "-d", secs, "-c", HS_INFLIGHT)),
    ("hs-rsa", "rsa", lambda srv, secs: tlsbench_args(srv, "-d", secs, "-c", HS_INFLIGHT)),
    ("resume", "ec", lambda srv, secs: tlsbench_args(srv, "-r", "-d", secs, "-c", HS_INFLIGHT)),
    ("download", "ec", lambda srv, secs: ["curl", "-sS", "-k", "--http1.1", "-w", "%{size_download}\\n"]
     + [x for _ in range(8) for x in ("-o", "/dev/null", f"https://127.0.0.1:{srv.port}/64m.bin")]),
]


# Exported entry points worth comparing (internal libssl/libcrypto symbols are not in Debian's binaries).
KEY_SYMBOLS = [
    ("SSL_do_handshake", "TLS handshake, all of it"),
    ("EVP_PKEY_generate", "key share generation (X25519)"),
    ("EVP_PKEY_derive", "ECDHE shared secret"),
    ("EVP_DigestSignFinal", "CertificateVerify signature"),
    ("EVP_DigestSign", "CertificateVerify signature (one-shot)"),
    ("EVP_KDF_derive", "TLS 1.3 key schedule (HKDF)"),
    ("EVP_CIPHER_fetch", "cipher fetches"),
    ("EVP_MD_fetch", "digest fetches"),
    ("EVP_KDF_fetch", "KDF fetches"),
    ("EVP_MAC_fetch", "MAC fetches"),
    ("EVP_KEYMGMT_fetch", "key manager fetches"),
    ("EVP_PKEY_CTX_new_from_pkey", "new EVP_PKEY_CTX"),
    ("EVP_PKEY_CTX_free", "freeing EVP_PKEY_CTX"),
    ("EVP_CipherInit_ex", "cipher init"),
    ("EVP_EncryptInit_ex2", "cipher init (tickets)"),
    ("EVP_MAC_init", "MAC init (tickets)"),
    ("EVP_EncryptUpdate", "record/ticket encryption"),
    ("EVP_DecryptUpdate", "record/ticket decryption"),
    ("X509_verify_cert", "chain building/verification"),
    ("RAND_bytes_ex", "random bytes"),
    ("RAND_priv_bytes_ex", "private random bytes"),
    ("SSL_new", "SSL_new"),
    ("SSL_free", "SSL_free"),
    ("SSL_read", "SSL_read"),
    ("SSL_read_ex", "SSL_read_ex"),
    ("SSL_write", "SSL_write"),
    ("SSL_write_ex", "SSL_write_ex"),
    ("SSL_shutdown", "SSL_shutdown"),
    ("CRYPTO_malloc", "OpenSSL allocations"),
    ("CRYPTO_free", "OpenSSL frees"),
    ("CRYPTO_zalloc", "OpenSSL zeroed allocations"),
    ("OPENSSL_cleanse", "cleansing"),
    ("pthread_rwlock_rdlock", "rwlock read-locks (self)"),
    ("pthread_rwlock_unlock", "rwlock unlocks (self)"),
    ("entry_SYSCALL_64_after_hwframe", "all system calls"),
    ("__sys_sendto", "send"),
    ("ksys_write", "write"),
    ("do_writev", "writev"),
    ("__sys_recvfrom", "recv"),
    ("ksys_read", "read"),
    ("ksys_pread64", "pread"),
    ("do_sys_openat2", "open"),
    ("vfs_fstatat", "stat"),
    ("__x64_sys_close", "close"),
    ("__x64_sys_accept4", "accept4"),
    ("__x64_sys_epoll_wait", "epoll_wait"),
    ("__x64_sys_epoll_ctl", "epoll_ctl"),
    ("__x64_sys_getsockname", "getsockname"),
    ("__x64_sys_setsockopt", "setsockopt"),
    ("__x64_sys_getpid", "getpid"),
]


def parse_report(text):
    """{symbol: (children %, self %)} from `perf report --children --sort sym -g none`."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if m:
            sym = m.group(3).split("@")[0]
            c, sf = float(m.group(1)), float(m.group(2))
            old = out.get(sym, (0.0, 0.0))
            out[sym] = (max(old[0], c), old[1] + sf)
    return out


def profile(fx, srv, outdir, loads, secs=8):
    """perf record -g (cpu-clock sampling: no hardware counters needed) of the server under each load.
    Writes the DSO split and the top symbols to <outdir>/<server>-<load>-*.txt and returns, per load, the
    server CPU microseconds per operation spent in each KEY_SYMBOLS entry."""
    outdir.mkdir(parents=True, exist_ok=True)
    costs = {}
    for name, alg, cmd in PROFILE_LOADS:
        if name not in loads:
            continue
        srv.start(alg)
        try:
            warmup(srv, fx)
            data = fx.top / f"{srv.label}-{name}.data"
            pids = ",".join(map(str, proc_tree(srv.pid)))  # nginx: the master and its worker
            rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2999", "-g",
                                    "--call-graph", "dwarf,16384", "-p", pids, "-o", str(data),
                                    "--", "sleep", str(secs + 2)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)
            c0 = cpu_seconds(srv.pid)
            r = client(cmd(srv, secs), secs + 60)
            cpu = cpu_seconds(srv.pid) - c0
            _, err = rec.communicate(timeout=120)
            if rec.returncode != 0:
                die(f"perf record failed: {err.strip()}")
        finally:
            srv.stop()
        m = re.search(r"(\d+) requests in", r.stdout) or re.search(r"handshakes=(\d+)", r.stdout)
        ops = int(m.group(1)) if m else 0
        if name == "download":  # operations are MB
            ops = sum(int(x) for x in r.stdout.split() if x.isdigit()) / 1e6
        log(f"profile {srv.label} {name}: {ops:.0f} operations, {cpu:.2f} s of server CPU")
        dso = run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso",
                   "-g", "none"], timeout=600).stdout
        (outdir / f"{srv.label}-{name}-dso.txt").write_text(
            "\n".join(x for x in dso.splitlines() if x.strip() and not x.startswith("#")) + "\n")
        for kind, flags in (("self", ["--no-children"]), ("children", ["--children"])):
            rep = run(["perf", "report", "-i", str(data), "--stdio", *flags, "--sort", "dso,sym",
                       "-g", "none", "--percent-limit", "0.3"], timeout=600)
            lines = [x.rstrip() for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")]
            (outdir / f"{srv.label}-{name}-{kind}.txt").write_text("\n".join(lines[:80]) + "\n")
        full = run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "sym", "-g", "none"],
                   timeout=600).stdout
        syms = parse_report(full)
        per_op = cpu / ops * 1e6 if ops else 0.0
        costs[name] = {"ops": ops, "cpu": cpu, "us_per_op": per_op,
                       "sym": {k: (syms.get(k, (0, 0))[0] if "(self)" not in d else syms.get(k, (0, 0))[1])
                               * per_op / 100 for k, d in KEY_SYMBOLS}}
    return costs


def print_costs(all_costs, outdir):
    """Side by side: server CPU microseconds per operation, in total and in each key entry point."""
    labels = list(all_costs)
    loads = sorted({ld for c in all_costs.values() for ld in c}, key=[p[0] for p in PROFILE_LOADS].index)
    text = []
    for ld in loads:
        text.append(f"\n== {ld}: server CPU microseconds per operation (inclusive)")
        text.append(f"{'':44}" + "".join(f"{lb:>12}" for lb in labels))
        text.append(f"{'total':44}" + "".join(f"{all_costs[lb].get(ld, {}).get('us_per_op', 0):12.1f}"
                                               for lb in labels))
        for sym, desc in KEY_SYMBOLS:
            vals = [all_costs[lb].get(ld, {}).get("sym", {}).get(sym, 0.0) for lb in labels]
            if max(vals) >= 0.05 * max(1e-9, max(all_costs[lb].get(ld, {}).get("us_per_op", 0) for lb in labels)) \
                    or max(vals) >= 1.0:
                text.append(f"{(sym + ' (' + desc + ')')[:44]:44}" + "".join(f"{v:12.1f}" for v in vals))
    out = "\n".join(text) + "\n"
    (outdir / "summary.txt").write_text(out)
    print(out)


def servers_and_loads(args, loads, who, known):
    """[moat|nginx ...] [--loads a,b]: the servers named (else <who>) and the loads (else <loads>), each
    one of <known>."""
    named = []
    it = iter(args)
    for a in it:
        if a == "--loads":
            loads = [x for x in next(it, "").split(",") if x]
        else:
            named.append(a)
    unknown = [x for x in loads if x not in known]
    if unknown or not loads:
        die(f"unknown load {', '.join(unknown) or '(none given)'}: use {', '.join(known)}")
    return named or who, loads


def named_server(fx, w, purpose):
    """The moat (store prepared), nginx or h2o of the fixture <fx>; dies on any other name."""
    if w == "moat":
        srv = Moat(fx, "moat")
        why = srv.available() if os.access(MOAT, os.X_OK) else f"{MOAT} is not built"
        if why:
            die(f"cannot {purpose} moat: {why}")
        srv.prepare()
        return srv
    if w == "nginx":
        return Nginx(fx, "nginx")
    if w == "h2o":
        return H2o(fx, "h2o")
    die(f"cannot {purpose} {w!r}: moat, nginx or h2o")


# ---------------------------------------------------------------- instruction counts

# Loads for --instructions: (name, certificate, client command, operations it performs or None to read them
# from the client's output). Counts are small: under valgrind the server runs some 50 times slower.
INSN_LOADS = [
    ("keepalive", "ec", lambda srv: ["wrk", "-t1", "-c10", "-d5s", f"https://127.0.0.1:{srv.port}/1k.bin"]),
    ("hs-ecdsa", "ec", lambda srv: tlsbench_args(srv, "-n", INSN_HANDSHAKES, "-c", "4", "-d", "600")),
    ("hs-rsa", "rsa", lambda srv: tlsbench_args(srv, "-n", INSN_HANDSHAKES, "-c", "4", "-d", "600")),
    ("resume", "ec", lambda srv: tlsbench_args(srv, "-r", "-n", INSN_HANDSHAKES, "-c", "4", "-d", "600")),
    ("h2", "ec", lambda srv: ["h2load", "-n", INSN_H2_REQUESTS, "-c16", "-m10", f"https://127.0.0.1:{srv.port}/1k.bin"]),
    ("download", "ec", lambda srv: ["curl", "-sS", "-k", "--http1.1", "-w", "%{size_download}\\n"]
     + [x for _ in range(2) for x in ("-o", "/dev/null", f"https://127.0.0.1:{srv.port}/64m.bin")]),
]
INSN_HANDSHAKES = 400
INSN_H2_REQUESTS = 20000
INSN_UNITS = {"keepalive": "request", "download": "MB", "h2": "request"}


def callgrind_self_by_object(path):
    """{object basename: self instructions} from a callgrind dump (cost lines after calls= are inclusive
    costs of the callee and are skipped)."""
    names, by_obj = {}, {}
    cur, skip_next = "?", False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):  # one name table for both
                ref = line.partition("=")[2].strip()
                name = ref
                if ref.startswith("("):
                    num, _, name = ref.partition(")")
                    name = name.strip()
                    if name:
                        names[num] = name
                    name = names.get(num, "?")
                if line.startswith("ob="):
                    cur = name
            elif line.startswith("calls="):
                skip_next = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    key = os.path.basename(cur)
                    by_obj[key] = by_obj.get(key, 0) + int(parts[1])
    return by_obj


def insn_run(fx, srv, load, alg, cmd, outdir):
    """Runs <srv> under callgrind, warms it up, zeroes the counters, applies the load and dumps them.
    Returns (operations, {object: instructions}) for the process that served."""
    dumps = outdir / f"{srv.label}-{load}"
    dumps.mkdir(parents=True, exist_ok=True)
    srv.wrap = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--cache-sim=no",
                f"--callgrind-out-file={dumps}/callgrind.%p"]
    srv.start_timeout = 120.0
    srv.start(alg)
    try:
        warmup(srv, fx)
        pids = proc_tree(srv.pid)
        for pid in pids:
            run(["callgrind_control", "-z", str(pid)], timeout=60)
        r = client(cmd(srv), 900)
        for pid in pids:
            run(["callgrind_control", "-d", str(pid)], timeout=120)
    finally:
        srv.stop()
        srv.wrap = []
    if r.returncode != 0:
        die(f"{srv.label} {load}: the load failed: {r.stderr.strip() or r.stdout.strip()}")
    if load == "keepalive":
        m = re.search(r"(\d+) requests in", r.stdout)
        ops = int(m.group(1)) if m else 0
    elif load == "download":
        ops = sum(int(x) for x in r.stdout.split() if x.isdigit()) / 1e6
    elif load == "h2":
        m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", r.stdout)
        ops = int(m.group(1)) if m else 0
    else:
        v = kv(r.stdout.strip().splitlines()[-1])
        ops = int(v.get("handshakes", 0))
    # The dump taken on request (its name ends in ".<n>") of the process that did the work: the one
    # with the most instructions (nginx's master idles).
    best = {}
    for f in dumps.glob("callgrind.*.*"):
        objs = callgrind_self_by_object(f)
        if sum(objs.values()) > sum(best.values()):
            best = objs
    return ops, best


def main_instructions(args):
    """bench.py --instructions [moat|nginx ...] [--loads hs-ecdsa,resume]: instructions per operation."""
    known = [name for name, *_ in INSN_LOADS]
    who, loads = servers_and_loads(args, known, ["moat", "nginx"], known)
    for tool in ("valgrind", "callgrind_control", "wrk", "curl", NGINX):
        if not shutil.which(tool):
            die(f"{tool} is missing: apt-get install valgrind, and `scripts/deps.sh bench`")
    top = pathlib.Path(tempfile.mkdtemp(prefix="moat-insn-"))
    table_rows = []
    try:
        ensure_tlsbench(top)
        fx = Fixture(top)
        fx.make()
        servers = [named_server(fx, w, "measure") for w in who]
        for name, alg, cmd in INSN_LOADS:
            if name not in loads:
                continue
            per = {}
            for srv in servers:
                ops, objs = insn_run(fx, srv, name, alg, cmd, top / "callgrind")
                total = sum(objs.values())
                tls = sum(v for k, v in objs.items() if k.startswith(("libssl", "libcrypto")))
                libc = sum(v for k, v in objs.items() if k.startswith(("libc.", "libc-", "ld-linux")))
                per[srv.label] = (ops, total, tls, libc)
                own = total - tls - libc
                log(f"{name:10} {srv.label:6} {ops:10.0f} operations, {total / max(ops, 1):12,.0f} instructions "
                    f"each: libssl/libcrypto {tls / max(total, 1):.1%}, libc {libc / max(total, 1):.1%}, "
                    f"the rest (the server's own code) {own / max(total, 1):.1%}")
            table_rows.append((name, per))
        unit = lambda n: INSN_UNITS.get(n, "handshake")
        labels = [s.label for s in servers]
        print(f"\ninstructions per operation in user space (valgrind callgrind; the kernel is not counted)")
        print(f"{'load':10} {'unit':9}" + "".join(f"{lb:>14}" for lb in labels)
              + ("   ratio (" + labels[1] + "/" + labels[0] + ")" if len(labels) == 2 else ""))
        for name, per in table_rows:
            vals = [per[lb][1] / max(per[lb][0], 1) for lb in labels]
            line = f"{name:10} {unit(name):9}" + "".join(f"{v:14,.0f}" for v in vals)
            if len(vals) == 2 and vals[0]:
                line += f"   {vals[1] / vals[0]:.3f}x"
            print(line)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


# ---------------------------------------------------------------- main

def ensure_tlsbench(top):
    global TLSBENCH
    if os.access(TLSBENCH, os.X_OK):
        return
    out = top / "tlsbench"
    cc = shutil.which("cc") or shutil.which("clang") or "gcc"
    r = run([cc, "-std=c17", "-O2", "-D_GNU_SOURCE", str(SRC / "bench" / "tlsbench.c"), "-o", str(out),
             "-lssl", "-lcrypto"])
    if r.returncode != 0:
        die(f"cannot build bench/tlsbench.c: {r.stderr.strip()}")
    TLSBENCH = str(out)


def main_profile(args):
    """bench.py --profile [moat|nginx ...] [--loads keepalive,hs-ecdsa]"""
    who, loads = servers_and_loads(args, ["keepalive", "hs-ecdsa"], ["moat"], [p[0] for p in PROFILE_LOADS])
    if not shutil.which("perf"):
        die("perf is missing: apt-get install linux-perf")
    top = pathlib.Path(tempfile.mkdtemp(prefix="moat-profile-"))
    all_costs = {}
    try:
        ensure_tlsbench(top)
        fx = Fixture(top)
        fx.make()
        for w in who:
            srv = named_server(fx, w, "profile")
            all_costs[srv.label] = profile(fx, srv, BUILD / "bench-profiles", loads)
        print_costs(all_costs, BUILD / "bench-profiles")
        log(f"profiles: {BUILD / 'bench-profiles'}")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


def main():
    if sys.argv[1:2] == ["--profile"]:
        return main_profile(sys.argv[2:])
    if sys.argv[1:2] == ["--instructions"]:
        return main_instructions(sys.argv[2:])
    for tool in ("taskset", "wrk", "curl", "openssl", NGINX):
        if not shutil.which(tool):
            die(f"{tool} is missing: run `scripts/deps.sh bench` (as root) first")
    if (os.cpu_count() or 1) < 2:
        die("the bench needs 2 cores: one for the server, one for the load generator")
    top = pathlib.Path(tempfile.mkdtemp(prefix="moat-bench-"))
    servers = []
    try:
        ensure_tlsbench(top)
        fx = Fixture(top)
        fx.make()
        wanted = [s.strip() for s in os.environ.get("BENCH_SERVERS", "moat,nginx").split(",")]
        notes = ""
        if "moat" in wanted:
            m = Moat(fx, "moat")
            why = m.available() if os.access(MOAT, os.X_OK) else f"{MOAT} is not built"
            if why:
                log(f"bench: {why}: running nginx against nginx to check the ratio machinery "
                    "(every ratio should be close to 1.00)")
                notes = (f"\n**Calibration run**: {why}, so a second nginx stood in for moat; every ratio "
                         "should be close to 1.00.\n")
                wanted = ["nginx", "nginx"]
        labels = []
        for w in wanted:
            label = w if w not in labels else f"{w}-b"
            labels.append(label)
            if w == "moat":
                srv = Moat(fx, label)
                srv.prepare()
            elif w == "moat-b":
                if not MOAT_B or not os.access(MOAT_B, os.X_OK):
                    die("BENCH_SERVERS names moat-b: set MOAT_BIN_B to the second moat binary")
                srv = Moat(fx, label, MOAT_B)
                srv.prepare()
            elif w == "nginx":
                srv = Nginx(fx, label)
            else:
                die(f"BENCH_SERVERS names {w!r}; use moat, moat-b and/or nginx")
            servers.append(srv)
        if len(servers) != 2:
            die("BENCH_SERVERS must name two servers, e.g. moat,nginx or nginx,nginx")
        a, b = labels
        results = {(name, s.label): [] for name, *_ in MEASURES for s in servers}
        chosen = [m for m in MEASURES if not ONLY or m[0] in ONLY]
        third = None
        if USE_H2O and any(m[0] in THIRD_MEASURES for m in chosen):
            if os.access(H2O, os.X_OK):
                third = H2o(fx, "h2o")
                servers.append(third)
                results.update({(name, third.label): [] for name in THIRD_MEASURES})
            else:
                log(f"bench: {H2O} is missing (`scripts/deps.sh bench`): the HTTP/2 measure runs without h2o")
        t_start = time.monotonic()
        for rnd in range(ROUNDS):
            for name, title, unit, alg, fn, _t in chosen:
                order = servers if name in THIRD_MEASURES else [x for x in servers if x is not third]
                order = order if rnd % 2 == 0 else order[::-1]
                for srv in order:
                    srv.start(alg)
                    try:
                        warmup(srv, fx)
                        res = fn(srv, fx)
                    finally:
                        srv.stop()
                    if name != "memory":
                        res.client_cpu = _last_timing.get("client", 0.0)
                        res.other_cpu = _last_timing.get("other", 0.0)
                    results[(name, srv.label)].append(res)
                    shown = f"{res.ops:.1f} KiB/conn" if name == "memory" else \
                        (f"{fmt(res.rate)} {unit}, {fmt(res.per_cpu)}/CPU-s, server CPU {res.util:.0%}, "
                         f"client {res.client_cpu / res.wall:.0%}, others {res.other_cpu / res.wall / NCPU:.0%}")
                    log(f"round {rnd + 1}/{ROUNDS}  {title:38} {srv.label:8} {shown}"
                        + (f"  [{res.info}]" if res.info and name != "memory" else "")
                        + (f"\n    PROBLEM: {res.problem}" if res.problem else ""))
        log(f"bench: {time.monotonic() - t_start:.0f} s of measuring")
        rows = summarize(results, a, b)
        print()
        print(f"moat bench: {a} vs {b}, {ROUNDS} round(s), medians"
              + (" (BENCH_QUICK: short runs, not for the record)" if QUICK else ""))
        print(table(rows, a, b))
        rows_c = summarize(results, a, third.label, third_measures(third)) if third else []
        if rows_c:
            print(f"\nagainst {third.label} (HTTP/2 only):")
            print(table(rows_c, a, third.label))
        busy = [r["title"] for r in rows + rows_c if r.get("others") is not None and r["others"] > BUSY_WARN]
        if busy:
            msg = (f"other processes used more than {BUSY_WARN:.0%} of the machine during: {', '.join(busy)}. "
                   "Throughputs are then set by the competition, not by the servers; the server-CPU ratios "
                   "remain comparable but noisier. Rerun on a quiet machine (or with BENCH_RT=1 on a "
                   "dedicated one) for the record.")
            print("\nWARNING: " + msg)
            notes += f"\n**Disturbed run**: {msg}\n"
        problems = [f"{name} {label} round {i + 1}: {r.problem}" for (name, label), rs in results.items()
                    for i, r in enumerate(rs) if r.problem]
        if problems:
            print("\nPROBLEMS (these runs are not trustworthy):")
            for p in problems:
                print("  " + p)
            notes += "\n**Problems during the run:**\n" + "".join(f"- {p}\n" for p in problems)
        for name, title, *_ in chosen:
            infos = {label: results[(name, label)][0].extra.get("cipher") for label in (a, b)
                     + ((third.label,) if third and name in THIRD_MEASURES else ()) if results[(name, label)]}
            if None not in infos.values() and len(set(infos.values())) > 1:
                note = f"{title}: the servers negotiated different ciphers: {infos}"
                print("NOTE: " + note)
                notes += f"\n- {note}\n"
        write = os.environ.get("BENCH_WRITE", "0" if QUICK or ONLY else "1") not in ("", "0")
        if write:
            facts = machine_facts(servers)
            write_results(SRC / "bench" / "RESULTS.md", rows, results, facts, a, b, notes,
                          third.label if third else None, rows_c)
            print(f"\nwritten: {SRC / 'bench' / 'RESULTS.md'}")
        return 1 if problems else 0
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        die("interrupted")
