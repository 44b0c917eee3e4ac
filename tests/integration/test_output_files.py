"""Files that commands hand out: --out into a device, FIFO, /dev/stdout or through a symbolic link writes
there (never replaces it); '-' is standard output; and under a kill at every write (strace fault
injection, as the robustness probe did), a file never exists without its store record and audit entry,
and no temporary copy is left behind."""
import os
import pathlib
import subprocess
import threading

import pytest

from conftest import MOAT_BIN
from keymgr_helpers import openssl, write_pw
from store_rows import peek_store, tamper_store


@pytest.fixture
def ca(moat):
    moat.ok("ca", "init", "--cn", "Out Root")
    return moat


def crl_pem(m):
    return m.ok("ca", "crl").stdout


def test_out_dash_is_stdout(ca):
    r = ca.ok("ca", "crl", "--out", "-")
    assert r.stdout.startswith("-----BEGIN X509 CRL-----")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_out_to_a_device_writes_in_place(ca):
    dev = ca.dir / "fakenull"
    subprocess.run(["mknod", "-m", "666", str(dev), "c", "1", "3"], check=True)
    ca.ok("ca", "crl", "--out", dev)
    ca.ok("ca", "cert", "--root", "--out", dev)
    assert dev.is_char_device(), "the device node was replaced by a regular file"
    assert not list(ca.dir.glob("fakenull.tmp-*"))


def test_out_to_a_fifo_and_dev_stdout(ca):
    fifo = ca.dir / "out.fifo"
    os.mkfifo(fifo)
    got = []
    t = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    t.start()
    ca.ok("ca", "crl", "--out", fifo, timeout=30)
    t.join(30)
    assert fifo.is_fifo() and got and got[0].startswith(b"-----BEGIN X509 CRL-----")
    # /dev/stdout is a link to a pipe here: the pipe gets the bytes
    r = subprocess.run([MOAT_BIN, "ca", "cert", "--root", "--out", "/dev/stdout"], env=ca.env, cwd=ca.dir,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith(b"-----BEGIN CERTIFICATE-----"), r.stderr
    assert pathlib.Path("/dev/stdout").is_symlink()


def test_out_through_a_symlink_keeps_the_link(ca):
    target = ca.dir / "real.pem"
    target.write_text("old\n")
    link = ca.dir / "link.pem"
    link.symlink_to(target)
    ca.ok("ca", "crl", "--out", link)
    assert link.is_symlink() and target.read_text().startswith("-----BEGIN X509 CRL-----")


def test_out_to_a_folder_says_so(ca):
    (ca.dir / "d").mkdir()
    r = ca.fails("ca", "crl", "--out", ca.dir / "d")
    assert "is a folder" in r.stderr


def kill_at(m, syscall, n, args):
    """Runs moat ARGS under strace, killed just before its n-th <syscall>. Returns the exit status."""
    r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
                        "-e", f"inject={syscall}:signal=KILL:when={n}", MOAT_BIN, *map(str, args)],
                       env=m.env, cwd=m.dir, capture_output=True, timeout=120)
    return r.returncode


def audit(m, action):
    """The objects of the audit entries of <action>, read below moat: a moat command would sweep what a
    kill left, which the tests look at next."""
    return [o for (o,) in peek_store(m.store, "select object from audit where action = ?", (action,))]


def leftovers(d):
    """Temporary files in <d>, one entry per file with its -journal, -wal and -shm."""
    names = {p.name.removesuffix("-journal").removesuffix("-wal").removesuffix("-shm")
             for p in pathlib.Path(d).iterdir()}
    return sorted(n for n in names if ".tmp-" in n or ".restore-" in n)


def each_kill(m, args, check, syscalls=("pwrite64", "fdatasync", "fsync", "rename", "linkat", "link"),
              swept=False):
    """Kills <args> at every point of each syscall in turn (until a run completes), calling check(). No
    temporary file may be left; with <swept>, one a kill left (a copy of a whole store) is removed by the
    next run, so there is never more than one."""
    kills = 0
    for sc in syscalls:
        for n in range(1, 200):
            rc = kill_at(m, sc, n, args)
            check()
            left = leftovers(m.dir)
            assert len(left) <= (1 if swept else 0), f"{sc} #{n}: left {left}"
            if rc != -9 and rc != 137:
                break
            kills += 1
    assert not leftovers(m.dir), f"left after a run that completed: {leftovers(m.dir)}"
    return kills


def test_ca_sign_records_before_it_writes(ca):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca.dir / "w.key", "-subj", "/CN=w.example.com", "-out", ca.dir / "w.csr")
    out = ca.dir / "signed.pem"
    state = {"checked": 0}

    def check():
        if out.exists():
            serial = openssl("x509", "-in", out, "-noout", "-serial").stdout.split("=")[1].strip()
            assert serial.upper() in [s.upper().replace(":", "") for s in audit(ca, "ca.sign")], \
                f"certificate {serial} on disk without its ca.sign audit entry"
            ca.ok("ca", "revoke", serial)  # the CA knows it: it can be revoked
            out.unlink()
            state["checked"] += 1

    kills = each_kill(ca, ["ca", "sign", "w.csr", "--out", out], check)
    assert kills > 10 and state["checked"] > 0


def test_key_export_and_backup_record_before_they_write(ca):
    ca.ok("ca", "issue", "c1", "--cn", "c1", "--profile", "client")
    pw = write_pw(ca.dir)
    p12 = ca.dir / "c1.p12"

    def check_export():
        if p12.exists():
            assert len(audit(ca, "ca.export-client")) + len(audit(ca, "key.export")) >= 1, \
                "an export on disk without its audit entry"
            p12.unlink()
            tamper_store(ca.store, "delete from audit where action like '%export%'")

    assert each_kill(ca, ["ca", "export-client", "c1", "--out", p12, "--password-file", pw], check_export) > 5
    bak = ca.dir / "backup.db"

    def check_backup():
        if bak.exists():
            assert audit(ca, "store.backup"), "a backup on disk without its audit entry"
            bak.unlink()
            tamper_store(ca.store, "delete from audit where action = 'store.backup'")

    assert each_kill(ca, ["store", "backup", bak], check_backup, syscalls=("fsync", "rename", "pwrite64"),
                     swept=True) > 3
    # a restore copy left by a killed restore (its process gone) is removed by the next restore
    ca.ok("store", "backup", bak, "--force")
    stale = ca.dir / "moat.db.restore-99999999-abcdef"
    stale.write_bytes(bak.read_bytes())
    ca.ok("store", "restore", bak, "--dry-run")
    assert not stale.exists()


def test_a_killed_ca_init_leaves_no_master_key_copy(moat):
    def check():
        for f in (moat.dir / "moat.db", moat.dir / "moat.db.key", moat.dir / "moat.db-wal",
                  moat.dir / "moat.db-shm"):
            if f.exists():
                f.unlink()

    assert each_kill(moat, ["ca", "init", "--cn", "K"], check, syscalls=("write", "fsync", "linkat")) > 3


def test_a_kill_while_replacing_leaves_a_copy_the_next_write_sweeps(ca):
    """Replacing a file takes a name of its own for one step (link, then rename): a kill between the two
    leaves that complete copy (here a PKCS#12 with the private key); the next write to the same file
    removes it. A copy whose process still runs is left alone."""
    ca.ok("ca", "issue", "c1", "--cn", "c1", "--profile", "client")
    pw = write_pw(ca.dir)
    p12 = ca.dir / "c1.p12"
    args = ["ca", "export-client", "c1", "--out", p12, "--password-file", pw, "--force"]
    ca.ok(*args)
    assert kill_at(ca, "rename", 1, args) in (-9, 137)
    left = leftovers(ca.dir)
    assert len(left) == 1 and left[0].startswith("c1.p12.tmp-"), left
    assert (ca.dir / left[0]).stat().st_mode & 0o777 == 0o600
    live = ca.dir / f"c1.p12.tmp-{os.getpid()}-000000"
    live.write_bytes(b"in use")
    ca.ok(*args)
    assert leftovers(ca.dir) == [live.name]
    assert live.read_bytes() == b"in use"
    live.unlink()
    openssl("pkcs12", "-in", p12, "-passin", f"file:{pw}", "-noout")
