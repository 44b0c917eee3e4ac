"""moat trust install-local: moat's root into a Debian-style trust store (real update-ca-certificates,
working under --root DIR so the machine's own store is never touched) and an NSS database (real certutil
on a database made for the test), then out again with --remove."""
import json
import shutil
import subprocess

import pytest

from keymgr_helpers import openssl, outside_ca


@pytest.fixture
def fsroot(moat):
    r = moat.dir / "fsroot"
    for d in ("usr/local/share/ca-certificates", "usr/share/ca-certificates", "etc/ssl/certs",
              "etc/ca-certificates/update.d"):
        (r / d).mkdir(parents=True)
    (r / "etc/ca-certificates.conf").write_text("# no distribution certificates in this test root\n")
    # Another local CA, as a real store has others: the bundle is rebuilt, not emptied, on --remove.
    (moat.dir / "other").mkdir()
    _, other = outside_ca(moat.dir / "other", "Someone Else Root")
    shutil.copy(other, r / "usr/local/share/ca-certificates/other.crt")
    return r


@pytest.fixture
def nssdb(moat):
    db = moat.dir / "home" / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    return db


def nss_list(db):
    return subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_install_and_remove(moat, fsroot, nssdb):
    moat.ok("ca", "init", "--cn", "Local Trust Root")
    root_pem = moat.ok("ca", "cert", "--root").stdout
    (moat.dir / "root.pem").write_text(root_pem)
    moat.ok("ca", "issue", "www", "--cn", "www.local.test")
    (moat.dir / "www.pem").write_text(moat.ok("cert", "export", "www", "--chain").stdout)
    args = ("trust", "install-local", "--root", fsroot, "--nssdb", nssdb)

    r = moat.ok(*args)
    assert "added moat's root (Local Trust Root) to the system trust store" in r.stdout, r.stdout
    assert "added, 0 removed" in r.stderr  # update-ca-certificates ran, its output on stderr
    crt = list((fsroot / "usr/local/share/ca-certificates").glob("moat-*.crt"))
    assert len(crt) == 1 and crt[0].read_text() == root_pem
    bundle = fsroot / "etc/ssl/certs/ca-certificates.crt"
    # What curl and openssl read now trusts moat's certificates.
    openssl("verify", "-CAfile", bundle, "-untrusted", moat.dir / "www.pem", moat.dir / "www.pem")
    nick = crt[0].stem
    assert nick in nss_list(nssdb) and "C,," in nss_list(nssdb)

    doc = json.loads(moat.ok("--json", *args).stdout)
    assert doc["system_changed"] is False and doc["nss_changed"] is False and doc["name"] == nick
    assert doc["file"] == str(crt[0]) and doc["bundle"] == str(bundle)

    r = moat.ok(*args, "--remove")
    assert "removed moat's root" in r.stdout and "removed from the NSS database" in r.stdout
    assert not crt[0].exists() and nick not in nss_list(nssdb)
    assert root_pem.split("\n")[1] not in bundle.read_text() and "BEGIN" in bundle.read_text()
    v = openssl("verify", "-CAfile", bundle, moat.dir / "www.pem", check=False)
    assert v.returncode != 0
    r = moat.ok(*args, "--remove")
    assert "was not in the system trust store" in r.stdout and "not in the NSS database" in r.stdout


def test_errors_say_what_to_do(moat, tmp_path):
    moat.fails("trust", "install-local", "--root", tmp_path / "empty")  # no CA yet
    moat.ok("ca", "init", "--cn", "Local Trust Root")
    (tmp_path / "empty").mkdir()
    r = moat.fails("trust", "install-local", "--root", tmp_path / "empty", "--nssdb", "")
    assert "does not exist" in r.stderr and "ca-certificates" in r.stderr
    assert "example:" in moat.ok("trust", "install-local", "--help").stdout
