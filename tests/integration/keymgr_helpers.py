"""Helpers for the key manager tests: openssl as the independent reference, store dumps."""
import json
import pathlib

from pki_helpers import openssl, self_signed
from store_rows import dump  # noqa: F401 (the tests take it from here)


def pubkey(path, kind):
    """The public key (PEM) of a cert, csr or private key file, as openssl sees it."""
    if kind == "cert":
        return openssl("x509", "-in", path, "-noout", "-pubkey").stdout
    if kind == "csr":
        return openssl("req", "-in", path, "-noout", "-pubkey").stdout
    return openssl("pkey", "-in", path, "-pubout").stdout


def fingerprint(path):
    """SHA-256 fingerprint of a PEM certificate as openssl prints it (AB:CD:...)."""
    out = openssl("x509", "-in", path, "-noout", "-fingerprint", "-sha256").stdout
    return out.strip().split("=", 1)[1]


def outside_ca(d, name="Outside Root"):
    """A CA made with openssl alone, for certificates moat did not issue."""
    d = pathlib.Path(d)
    return self_signed(d / "outside-ca.key", d / "outside-ca.pem", name)


def outside_chain(d):
    """An outside root and an intermediate it signed: (intermediate key, intermediate cert, root cert)."""
    d = pathlib.Path(d)
    root_key, root = outside_ca(d)
    key, csr, crt = d / "outside-int.key", d / "outside-int.csr", d / "outside-int.pem"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", "/CN=Outside Intermediate", "-out", csr)
    (d / "int.ext").write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                               "keyUsage=critical,keyCertSign,cRLSign\n")
    openssl("x509", "-req", "-in", csr, "-CA", root, "-CAkey", root_key, "-CAcreateserial", "-days", "30",
            "-extfile", d / "int.ext", "-out", crt)
    return key, crt, root


def openssl_sign(d, csr, out, ca=None, days=30, extra=()):
    """Signs a CSR with `openssl x509 -req`, copying its SANs, as an outside CA would."""
    d = pathlib.Path(d)
    if ca is None:
        ca = outside_ca(d)
    key, crt = ca
    ext = d / "leaf.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", crt, "-CAkey", key, "-CAcreateserial",
            "-days", days, "-copy_extensions", "copy", "-extfile", ext, "-out", out, *extra)
    return crt


def keys(moat):
    return {k["name"]: k for k in json.loads(moat.ok("key", "list", "--json").stdout)}


def write_pw(d, pw="correct horse battery", name="pw.txt"):
    p = pathlib.Path(d) / name
    p.write_text(pw + "\n")
    p.chmod(0o600)
    return p
