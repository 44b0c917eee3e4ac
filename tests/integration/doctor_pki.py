"""Builds broken (and healthy) certificate situations with the openssl command line, and runs
`openssl s_server` on loopback with them, for the doctor tests."""
import datetime
import pathlib
import socket
import subprocess
import time

from conftest import free_port
from pki_helpers import openssl

CA_CONF = """
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
organizationName = optional
"""


def stamp(days):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%Y%m%d%H%M%SZ")


class Pki:
    """Keys and certificates under one directory; each CA keeps an `openssl ca` database (for OCSP)."""

    def __init__(self, d):
        self.d = pathlib.Path(d)
        self.d.mkdir(parents=True, exist_ok=True)

    def path(self, name):
        return self.d / name

    def key(self, name, alg="ec"):
        out = self.path(f"{name}.key")
        if alg == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", out)
        elif alg.startswith("rsa"):
            bits = alg.split("-")[1] if "-" in alg else "2048"
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", out)
        else:
            raise ValueError(alg)
        return out

    def root(self, name="root", cn="Doctor Test Root", alg="ec"):
        key = self.key(name, alg)
        cert = self.path(f"{name}.pem")
        openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}", "-days", "3650", "-out", cert,
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash")
        self._cadb(name)
        return cert

    def self_signed(self, name, cn, sans, alg="ec", days=90):
        key = self.key(name, alg)
        cert = self.path(f"{name}.pem")
        openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}", "-days", str(days), "-out", cert,
                "-addext", f"subjectAltName={sans}", "-addext", "extendedKeyUsage=serverAuth")
        return cert

    def _cadb(self, name):
        db = self.path(f"{name}.db")
        (db / "new").mkdir(parents=True, exist_ok=True)
        (db / "index.txt").write_text("")
        (db / "serial").write_text("1000\n")
        (db / "ca.cnf").write_text(CA_CONF.format(dir=db))

    def sign(self, name, issuer, cn, sans=None, alg="ec", start=-1, end=90, md="sha256", ca=False, csr=None,
             eku="serverAuth", crl_url=None):
        """Issues <name> from <issuer> (a CA made by root() or sign(ca=True)); start/end in days from now.
        With <csr> (a request made elsewhere, e.g. by `moat key new`), no key is made here. <crl_url>: a CRL
        distribution point (or several, comma-separated)."""
        if csr is None:
            key = self.key(name, alg)
            csr = self.path(f"{name}.csr")
            openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        ext = self.path(f"{name}.ext")
        if ca:
            lines = ["[ext]", "basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                     "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
        else:
            lines = ["[ext]", "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                     f"extendedKeyUsage={eku}", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
            if sans:
                lines.append(f"subjectAltName={sans}")
        if crl_url:
            lines.append("crlDistributionPoints=" + ",".join(f"URI:{u}" for u in crl_url.split(",")))
        ext.write_text("\n".join(lines) + "\n")
        db = self.path(f"{issuer}.db")
        cert = self.path(f"{name}.pem")
        openssl("ca", "-batch", "-config", db / "ca.cnf", "-cert", self.path(f"{issuer}.pem"), "-keyfile",
                self.path(f"{issuer}.key"), "-in", csr, "-out", cert, "-notext", "-md", md,
                "-startdate", stamp(start), "-enddate", stamp(end), "-extfile", ext, "-extensions", "ext")
        if ca:
            self._cadb(name)
        return cert

    def bundle(self, name, *certs):
        out = self.path(name)
        out.write_text("".join(pathlib.Path(c).read_text() for c in certs))
        return out

    def revoke(self, name, issuer):
        db = self.path(f"{issuer}.db")
        openssl("ca", "-batch", "-config", db / "ca.cnf", "-cert", self.path(f"{issuer}.pem"), "-keyfile",
                self.path(f"{issuer}.key"), "-revoke", self.path(f"{name}.pem"))

    def gencrl(self, issuer, out, seconds=86400, last=None, next=None):
        """A DER CRL of <issuer>'s database at <out> (written whole, then renamed into place, so a server
        reading it never sees half a file). <last>/<next>: lastUpdate/nextUpdate as days from now
        (an out-of-date CRL), else nextUpdate is <seconds> from now."""
        db = self.path(f"{issuer}.db")
        pem = self.path(f"{issuer}.crl.pem")
        args = ["ca", "-batch", "-config", db / "ca.cnf", "-cert", self.path(f"{issuer}.pem"), "-keyfile",
                self.path(f"{issuer}.key"), "-gencrl", "-out", pem, "-md", "sha256"]
        if last is not None:
            args += ["-crl_lastupdate", stamp(last), "-crl_nextupdate", stamp(next)]
        else:
            args += ["-crlsec", seconds]
        openssl(*args)
        out = pathlib.Path(out)
        tmp = out.with_name(out.name + ".tmp")
        openssl("crl", "-in", pem, "-outform", "DER", "-out", tmp)
        tmp.replace(out)
        return out

    def ocsp_response(self, name, issuer, out_name=None):
        """A DER OCSP response for <name>, signed by <issuer>, from the issuer's database."""
        db = self.path(f"{issuer}.db")
        req = self.path(f"{name}.ocspreq")
        resp = self.path(out_name or f"{name}.ocsp")
        openssl("ocsp", "-issuer", self.path(f"{issuer}.pem"), "-cert", self.path(f"{name}.pem"), "-reqout", req,
                "-no_nonce")
        openssl("ocsp", "-index", db / "index.txt", "-rsigner", self.path(f"{issuer}.pem"), "-rkey",
                self.path(f"{issuer}.key"), "-CA", self.path(f"{issuer}.pem"), "-reqin", req, "-respout", resp,
                "-ndays", "7")
        return resp


class SServer:
    """`openssl s_server` on loopback; stopped by stop()."""

    def __init__(self, d, cert, key, chain=None, host="127.0.0.1", extra=()):
        self.port = free_port()
        accept = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        args = ["openssl", "s_server", "-accept", accept, "-cert", str(cert), "-key", str(key), "-www",
                "-naccept", "200"]
        if chain:
            args += ["-cert_chain", str(chain)]
        args += list(map(str, extra))
        self.log = open(pathlib.Path(d) / f"s_server_{self.port}.out", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait(host)

    def _wait(self, host):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                raise RuntimeError(f"s_server exited with {self.proc.returncode}: "
                                   f"{pathlib.Path(self.log.name).read_text(errors='replace')}")
            try:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect((host, self.port))
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"s_server not listening on {host}:{self.port}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
