"""Shared fixtures: the real moat binary on a throwaway store, free ports, and a server runner.

Every test gets its own temporary directory, store and master key; servers listen on 127.0.0.1/::1
only, on free ports, and are stopped (and their logs checked for sanitizer reports) by the fixture.
"""
import os
import pathlib
import re
import signal
import socket
import subprocess
import time

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("MOAT_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))


def _find_bin():
    env = os.environ.get("MOAT_BIN")
    if env:
        return env
    for preset in ("asan", "dev", "release"):
        p = SOURCE_DIR / "build" / preset / "moat"
        if p.exists():
            return str(p)
    raise RuntimeError("moat binary not found: build it or set MOAT_BIN")


MOAT_BIN = _find_bin()
BAD_LOG = re.compile(r"\b(alert|crit|emerg)\b|AddressSanitizer|LeakSanitizer|runtime error:")


def free_port(family=socket.AF_INET):
    """A port nobody listens on right now (both families checked for IPv4/IPv6 sites)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                s6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def terminate(proc, timeout=20):
    """Stops <proc> with SIGTERM, killing it after <timeout> s; False if it had to be killed."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def wait_port(port, host="127.0.0.1", timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moat exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


class Moat:
    """Runs the real binary against this test's own store."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.store = tmp_path / "moat.db"
        self.env = dict(os.environ)
        self.env["MOAT_STORE"] = str(self.store)
        self.env.pop("MOAT_CONFIG", None)
        self.env.pop("MOAT_MASTER_KEY_FILE", None)
        self.env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=1"
        self.servers = []

    def run(self, *args, input=None, env=None, timeout=120, cwd=None):
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run([MOAT_BIN, *map(str, args)], input=input, capture_output=True,
                              env=e, timeout=timeout, cwd=cwd or self.dir,
                              text=not isinstance(input, bytes))

    def ok(self, *args, **kw):
        """Runs and asserts exit 0; returns the CompletedProcess."""
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"moat {' '.join(map(str, args))} exited {r.returncode}\n" \
                                  f"stdout: {r.stdout}\nstderr: {r.stderr}"
        self._check_sanitizers(r.stderr)
        return r

    def fails(self, *args, code=1, **kw):
        """Runs and asserts the exit code (1 by default) and a message on stderr."""
        r = self.run(*args, **kw)
        assert r.returncode == code, f"moat {' '.join(map(str, args))} exited {r.returncode}, " \
                                     f"expected {code}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        assert r.stderr.strip(), "a failure must say why on stderr"
        self._check_sanitizers(r.stderr)
        return r

    @staticmethod
    def _check_sanitizers(text):
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        assert "AddressSanitizer" not in text and "runtime error:" not in text, text

    def serve(self, config_text, name="moat.yaml", wait=(), extra_args=(), prefix=()):
        """Writes a config and starts `moat serve` in the foreground; waits for the given ports. <prefix>:
        a command that execs the rest (unshare, ...)."""
        cfg = self.dir / name
        cfg.write_text(config_text)
        log = open(self.dir / "serve.out", "ab")
        proc = subprocess.Popen([*map(str, prefix), MOAT_BIN, "serve", "-c", str(cfg), *extra_args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.servers.append((proc, log))
        for port in wait:
            wait_port(port, proc=proc)
        return proc

    def stop_all(self):
        problems = []
        for proc, log in self.servers:
            if not terminate(proc, 20):
                problems.append("moat did not stop within 20s of SIGTERM")
            log.close()
        self.servers = []
        for f in list(self.dir.glob("*.log")) + [self.dir / "serve.out"]:
            if f.exists():
                for line in f.read_text(errors="replace").splitlines():
                    if BAD_LOG.search(line):
                        problems.append(f"{f.name}: {line}")
        return problems



def make_install(destdir, prefix="/opt/moat"):
    """`make install` of the build tree MOAT_BIN lives in, into <destdir> (cmake --install with DESTDIR);
    skips the test when MOAT_BIN is not in a CMake build tree."""
    build = pathlib.Path(MOAT_BIN).resolve().parent
    if not (build / "cmake_install.cmake").exists():
        pytest.skip("MOAT_BIN is not in a CMake build tree")
    env = dict(os.environ, DESTDIR=str(destdir))
    subprocess.run(["cmake", "--install", str(build), "--prefix", prefix], env=env, check=True,
                   capture_output=True, timeout=120)
    return pathlib.Path(destdir) / prefix.lstrip("/")

@pytest.fixture
def moat(tmp_path):
    m = Moat(tmp_path)
    yield m
    problems = m.stop_all()
    assert not problems, "\n".join(problems)


@pytest.fixture
def silent_resolver(tmp_path):
    """A command prefix that runs a program with its own /etc/resolv.conf (a mount namespace) naming a
    resolver that never answers: a silent UDP socket on 127.0.0.1:53. Needs root and unshare."""
    import shutil
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a private /etc/resolv.conf)")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # tests running side by side share it
    try:
        silent.bind(("127.0.0.1", 53))
    except OSError as e:
        silent.close()
        pytest.skip(f"127.0.0.1:53 is taken: {e}")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:15 attempts:1\n")
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]
    probe = subprocess.run([*prefix, "grep", "-q", "^nameserver 127.0.0.1$", "/etc/resolv.conf"],
                           capture_output=True)
    if probe.returncode != 0:
        silent.close()
        pytest.skip(f"a private /etc/resolv.conf cannot be mounted here: "
                    f"{probe.stderr.decode(errors='replace').strip()}")
    yield prefix
    silent.close()


# ---- moat's CA and the servers the tests build on it -------------------------------------------------


@pytest.fixture
def ca(moat):
    """moat's CA (CN=Moat Test CA) and a certificate "www" for localhost: the CA certificate's PEM path."""
    moat.ok("ca", "init", "--cn", "Moat Test CA")
    moat.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost")
    pem = moat.dir / "moat-ca.pem"
    pem.write_text(moat.ok("ca", "cert", "--root").stdout)
    return pem


@pytest.fixture
def setup(moat, ca):
    """The ca fixture and a document root with a private folder: (root, the CA certificate's PEM path)."""
    root = moat.dir / "www"
    (root / "private").mkdir(parents=True)
    (root / "index.html").write_text("public\n")
    (root / "private" / "index.html").write_text("secret\n")
    return root, ca


@pytest.fixture
def corp(moat, setup):
    """A corporate root (trusted through `moat trust add`), its CRL server and a config maker."""
    from ccert_helpers import CrlServer
    from doctor_pki import Pki
    root, ca_pem = setup
    pki = Pki(moat.dir / "corp")
    pki.root("corp", cn="Corp Root")
    moat.ok("trust", "add", pki.path("corp.pem"), "--name", "corp")
    srv = CrlServer(moat.dir / "crls")
    yield pki, srv, root, ca_pem
    srv.stop()


@pytest.fixture
def acme_ca(moat):
    """moat's CA, a certificate for the ACME site itself, and the ports: https (ACME), http (OCSP, CRL),
    and the two the clients answer their challenges on."""
    m = moat
    m.ok("ca", "init", "--cn", "ACME Test Root")
    m.ok("ca", "issue", "www", "--cn", "localhost", "--san", "DNS:localhost,IP:127.0.0.1")
    (m.dir / "root.pem").write_text(m.ok("ca", "cert", "--root").stdout)
    m.https, m.http, m.http01, m.tls01 = free_port(), free_port(), free_port(), free_port()
    m.directory = f"https://localhost:{m.https}/acme/directory"
    return m
