"""openssl as the independent reference: the one way tests run it, and the one way they make a CA moat did
not make."""
import pathlib
import subprocess


def openssl(*args, input=None, check=True, cwd=None, text=None):
    """Runs `openssl ARGS`; asserts it succeeded unless check=False. Output is text unless <input> is bytes
    or text=False."""
    if text is None:
        text = not isinstance(input, bytes)
    r = subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True, timeout=60, cwd=cwd,
                       text=text)
    if check:
        err = r.stderr if text else r.stderr.decode(errors="replace")
        assert r.returncode == 0, f"openssl {' '.join(map(str, args))} failed:\n{r.stdout}\n{err}"
    return r


def self_signed(key, crt, cn, days=30, ca=True):
    """A P-256 key and self-signed certificate for CN=<cn>: a root CA (the default) or, with ca=False, a
    certificate that is not one. Returns (key, crt) as paths."""
    key, crt = pathlib.Path(key), pathlib.Path(crt)
    ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"] \
        if ca else ["-addext", "basicConstraints=critical,CA:FALSE"]
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", crt, "-days", days, "-subj", f"/CN={cn}", *ext)
    return key, crt
