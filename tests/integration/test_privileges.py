"""moat serve started as root with user: hands the store and logs to the service user by descriptor only:
a service user racing symlinks into the store folder gets no root file (the robustness probe got one in
round 4 of 20); a log that is a symbolic link, or a store folder of the wrong owner, is refused with what
to do."""
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import MOAT_BIN, wait_port
from serve_helpers import CA, free_port, site

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

RACER = r"""
import os, sys, time
store, victim, until = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
while time.time() < until:
    for side in ("-wal", "-shm"):
        p = store + side
        try:
            if os.path.exists(p) and not os.path.islink(p):
                tmp = p + ".x"
                os.symlink(victim, tmp)
                os.replace(tmp, p)
                time.sleep(0.02)
                os.unlink(p)
        except OSError:
            pass
"""


@pytest.fixture
def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")


@pytest.fixture
def work(moat, nobody):
    """A folder the service user can reach (the test folder is root's 0700), the store in store/."""
    w = pathlib.Path(tempfile.mkdtemp(prefix="moat-priv-", dir="/tmp"))
    os.chmod(w, 0o755)
    (w / "store").mkdir(mode=0o700)
    moat.store = w / "store" / "moat.db"
    moat.env["MOAT_STORE"] = str(moat.store)
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    yield w
    shutil.rmtree(w, ignore_errors=True)


def conf(moat, w, port, logdir=None):
    logdir = logdir or w
    text = (f"store: {moat.store}\nworkers: 1\nuser: nobody\n"
            f"log: {{ error: {logdir}/error.log, access: {logdir}/access.log }}\n"
            "sites:\n" + site(["localhost"], port))
    (w / "moat.yaml").write_text(text)
    return w / "moat.yaml"


def serve(moat, cfg, seconds):
    p = subprocess.Popen([MOAT_BIN, "serve", "-c", str(cfg)], env=moat.env, cwd=moat.dir,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(seconds)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=30)[0].decode(errors="replace")
    return p.returncode, out


def test_a_racing_service_user_gets_no_root_file(moat, work, nobody):
    port = free_port()
    cfg = conf(moat, work, port)
    rc, out = serve(moat, cfg, 1.5)  # the first start hands the folder over
    assert rc == 0, out
    assert os.stat(work / "store").st_uid == nobody.pw_uid
    victim = work / "victim"
    victim.write_text("victim-secret\n")
    os.chmod(victim, 0o600)
    racer = subprocess.Popen(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                              sys.executable, "-c", RACER, str(moat.store), str(victim), "60"])
    try:
        for rnd in range(15):
            serve(moat, cfg, 0.6)
            st = os.stat(victim)
            assert st.st_uid == 0 and st.st_gid == 0, f"round {rnd}: the victim now belongs to uid {st.st_uid}"
    finally:
        racer.kill()
        racer.wait()
    assert victim.read_text() == "victim-secret\n"


def test_a_log_that_is_a_symlink_is_refused(moat, work):
    logs = work / "logs"
    logs.mkdir()
    victim = work / "victim"
    victim.write_text("x\n")
    os.chmod(victim, 0o600)
    (logs / "error.log").symlink_to(victim)
    rc, out = serve(moat, conf(moat, work, free_port(), logdir=logs), 3)
    assert rc != 0 and "symbolic link" in out, out
    assert os.stat(victim).st_uid == 0 and victim.read_text() == "x\n"


def test_a_store_folder_of_another_user_is_refused(moat, work, nobody):
    os.chown(work / "store", 1, 1)  # daemon, or whoever uid 1 is: not root, not nobody
    rc, out = serve(moat, conf(moat, work, free_port()), 3)
    assert rc != 0 and "belongs to uid 1" in out and "chown nobody" in out, out
    os.chown(work / "store", 0, 0)
    os.chmod(work / "store", 0o777)
    rc, out = serve(moat, conf(moat, work, free_port()), 3)
    assert rc != 0 and "may be written by other users" in out, out


def test_a_pid_file_turned_into_a_symlink_is_not_written_through(moat, work, nobody):
    """The pid file is written as root before the listeners open, in the folder the service user owns:
    a symlink the service user put there is not followed, and a server that did write its file can
    still be reloaded once it runs as the service user."""
    port = free_port()
    cfg = conf(moat, work, port)
    rc, out = serve(moat, cfg, 1.5)  # the first start hands the folder over
    assert rc == 0, out
    victim = work / "victim"
    victim.write_text("victim-secret\n")
    os.chmod(victim, 0o600)
    pidfile = pathlib.Path(f"{moat.store}.pid")
    pidfile.symlink_to(victim)
    rc, out = serve(moat, cfg, 2)
    assert victim.read_text() == "victim-secret\n" and os.stat(victim).st_uid == 0
    log = (work / "error.log").read_text()
    assert "cannot write the pid file" in out + log, out + log
    pidfile.unlink()
    p = subprocess.Popen([MOAT_BIN, "serve", "-c", str(cfg)], env=moat.env, cwd=moat.dir,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc=p)
        assert pidfile.read_text().strip() == str(p.pid)
        r = subprocess.run([MOAT_BIN, "reload", "-c", str(cfg)], env=moat.env, cwd=moat.dir,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "reloaded" in r.stdout, r.stdout + r.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        out = p.communicate(timeout=30)[0].decode(errors="replace")
    assert "touching" not in out, out
