"""Key material stays out of core dumps: moat serve (without user:, which would clear the flag by itself)
and the key commands are not dumpable and have no core limit; read from outside with gdb, as the
robustness probe did."""
import os
import shutil
import subprocess

import pytest

from conftest import MOAT_BIN
from serve_helpers import CA, config, free_port, site, wait_for
from keymgr_helpers import write_pw

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None or os.geteuid() != 0,
                                reason="needs gdb and root to attach to a non-dumpable process")


def dumpable(pid):
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "print (int)prctl(3,0,0,0,0)"],
                       capture_output=True, text=True, timeout=120)
    lines = [x for x in r.stdout.splitlines() if x.startswith("$1 = ")]
    assert lines, r.stdout + r.stderr
    return int(lines[0].split("=")[1])


def core_limit(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


def test_serve_is_not_dumpable(moat):
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    proc = moat.serve(config(moat, [site(["localhost"], port)]), wait=[port])
    assert core_limit(proc.pid) == ["0", "0"]
    assert dumpable(proc.pid) == 0


def test_key_export_is_not_dumpable(moat):
    moat.ok("ca", "init", "--cn", "Dump Root")
    moat.ok("ca", "issue", "c1", "--cn", "c1", "--profile", "client")
    fifo = moat.dir / "pw.fifo"
    os.mkfifo(fifo)
    # the export waits on the FIFO for its password (its store open): look at it then
    p = subprocess.Popen([MOAT_BIN, "ca", "export-client", "c1", "--out", "c1.p12", "--password-file", fifo],
                         env=moat.env, cwd=moat.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # blocked opening the FIFO until a writer comes
        assert wait_for(lambda: open(f"/proc/{p.pid}/wchan").read() == "wait_for_partner", timeout=30)
        assert core_limit(p.pid) == ["0", "0"]
        assert dumpable(p.pid) == 0
        with open(fifo, "w") as f:
            f.write("correct horse battery\n")
        assert p.wait(timeout=60) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
