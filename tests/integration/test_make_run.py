"""make run (scripts/run.sh) end to end, on free ports and a temporary folder: the first run creates the
store and the local CA and issues the localhost certificate, serves the sample site over https with that
CA trusted, redirects http without HSTS, publishes the CA, and stops cleanly on Ctrl-C; a second run
reuses the CA and certificate, and one with under 30 days left re-issues it."""
import signal
import subprocess
import urllib.request

from conftest import MOAT_BIN, SOURCE_DIR, free_port, wait_port
from serve_helpers import get, openssl

RUN_SH = SOURCE_DIR / "scripts" / "run.sh"


class Run:
    def __init__(self, moat):
        self.dir = moat.dir / "var"
        self.https, self.http = free_port(), free_port()
        self.env = dict(moat.env, MOAT_BIN=MOAT_BIN, MOAT_RUN_DIR=str(self.dir),
                        MOAT_RUN_HTTPS_PORT=str(self.https), MOAT_RUN_HTTP_PORT=str(self.http))
        self.env.pop("MOAT_STORE", None)

    def start(self):
        self.out = open(self.dir.parent / "run.out", "w+")
        self.proc = subprocess.Popen(["sh", str(RUN_SH)], env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT, cwd=self.dir.parent)
        try:
            wait_port(self.https, proc=self.proc, timeout=60)
            wait_port(self.http, proc=self.proc, timeout=10)
        except RuntimeError:
            self.stop()
            raise AssertionError(self.output())

    def stop(self):
        """Ctrl-C: the server stops cleanly with status 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def output(self):
        self.out.flush()
        self.out.seek(0)
        return self.out.read()

    def moat(self, *args):
        env = dict(self.env, MOAT_STORE=str(self.dir / "moat.db"))
        return subprocess.run([MOAT_BIN, *map(str, args)], env=env, capture_output=True, text=True,
                              check=True, timeout=60)

    def serial(self):
        return openssl("x509", "-noout", "-serial", "-in", self.dir / "localhost.crt").stdout.strip()


def test_make_run_first_and_second_run(moat):
    run = Run(moat)
    run.start()
    try:
        ca = run.dir / "ca.pem"
        text = run.output()
        assert "creating the local development CA" in text
        assert str(ca) in text, "the CA certificate's path is printed"
        assert (run.dir.stat().st_mode & 0o777) == 0o700
        assert (run.dir / "moat.db").stat().st_mode & 0o077 == 0

        st, hd, body = get(run.https, "/", sni="localhost", cafile=ca)
        assert st == 200 and b"moat" in body.lower()
        assert "strict-transport-security" not in hd, "no HSTS on localhost"
        st, _, _ = get(run.https, "/", sni="localhost", cafile=ca, addr="::1")
        assert st == 200
        r = subprocess.run(["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code}",
                            f"https://localhost:{run.https}/"], capture_output=True, text=True, timeout=30)
        assert r.stdout == "200", r.stderr

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **kw):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        try:
            opener.open(f"http://127.0.0.1:{run.http}/index.html", timeout=10)
            raise AssertionError("http must redirect")
        except urllib.error.HTTPError as e:
            assert e.code == 301
            assert e.headers["Location"] == f"https://127.0.0.1:{run.https}/index.html"

        # The CA is published (over plain http too) and issued certificates point at it.
        with urllib.request.urlopen(f"http://127.0.0.1:{run.http}/.well-known/moat/ca.pem", timeout=10) as r:
            assert r.read().decode() == ca.read_text()
        text = openssl("x509", "-noout", "-text", "-in", run.dir / "localhost.crt").stdout.decode()
        assert f"http://localhost:{run.http}/" in text, "CRL/OCSP locations name the sample site"
        first_serial = run.serial()
    finally:
        assert run.stop() == 0, run.output()

    run.start()
    try:
        assert "creating the local development CA" not in run.output()
        assert run.serial() == first_serial, "a second run reuses the certificate"
        st, _, _ = get(run.https, "/", sni="localhost", cafile=run.dir / "ca.pem")
        assert st == 200
    finally:
        assert run.stop() == 0, run.output()


def test_make_run_reissues_under_30_days(moat):
    run = Run(moat)
    run.start()
    assert run.stop() == 0, run.output()
    # Replace the certificate with one that has 10 days left.
    csr = run.dir / "short.csr"
    run.moat("key", "renew", "localhost", "--csr-out", csr)
    run.moat("ca", "sign", csr, "--out", run.dir / "short.crt", "--profile", "server", "--days", "10")
    run.moat("cert", "install", "localhost", run.dir / "short.crt")
    short = openssl("x509", "-noout", "-serial", "-in", run.dir / "short.crt").stdout.strip()

    run.start()
    try:
        assert "expires within 30 days" in run.output()
        assert run.serial() != short
        assert subprocess.run(["openssl", "x509", "-checkend", str(60 * 86400), "-noout", "-in",
                               run.dir / "localhost.crt"], capture_output=True).returncode == 0
        st, _, _ = get(run.https, "/", sni="localhost", cafile=run.dir / "ca.pem")
        assert st == 200
    finally:
        assert run.stop() == 0, run.output()
