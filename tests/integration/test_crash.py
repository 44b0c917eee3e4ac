"""kill -9 during a loop of writes: the store stays intact and no committed key is lost."""
import json
import random
import signal
import subprocess
import time

from conftest import MOAT_BIN
from store_rows import integrity


def test_sigkill_during_key_new_loses_nothing_committed(moat):
    moat.ok("key", "new", "k0", "--cn", "k0.example.com", "--csr-out", "k0.csr")
    rng = random.Random(1234)
    # How long one command takes here (ASan builds are slower): kills land before, during and after.
    t0 = time.time()
    moat.ok("key", "new", "probe", "--cn", "probe.example.com", "--csr-out", "probe.csr")
    span = max(time.time() - t0, 0.05)
    committed, killed = {"k0", "probe"}, 0
    for i in range(1, 31):
        p = subprocess.Popen([MOAT_BIN, "key", "new", f"k{i}", "--cn", f"k{i}.example.com", "--alg",
                              "rsa-2048" if i % 3 == 0 else "ec-p256", "--csr-out", f"k{i}.csr"],
                             env=moat.env, cwd=moat.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0, span * 1.2))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=60)
        if p.returncode == 0:
            committed.add(f"k{i}")
        else:
            assert p.returncode == -signal.SIGKILL, p.stderr.read()
        p.stderr.close()
    assert killed > 0, "no process was killed: the timing assumption is wrong"
    assert integrity(moat.store) == "ok"
    listed = {k["name"] for k in json.loads(moat.ok("key", "list", "--json").stdout)}
    assert committed <= listed, committed - listed
    # A killed command left either its whole key or nothing: every listed key is usable.
    for name in listed:
        k = json.loads(moat.ok("key", "show", name, "--json").stdout)
        assert k["state"] == "pending" and k["subject"] == f"CN={name}.example.com"
    # The store still takes writes.
    moat.ok("key", "new", "after", "--cn", "after.example.com", "--csr-out", "after.csr")
