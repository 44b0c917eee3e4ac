"""The instruction counter of bench/instructions.sh: its reading of callgrind dumps (self cost per object,
call costs not counted twice), on a dump written by hand in callgrind's format."""
import importlib.util

import pytest

from conftest import SOURCE_DIR


def _bench():
    spec = importlib.util.spec_from_file_location("bench", SOURCE_DIR / "bench" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DUMP = """version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  /usr/sbin/srv
part: 1
events: Ir
summary: 920
ob=(1) /usr/sbin/srv
fl=(1) ???
fn=(1) main
0 100
+2 20
cob=(2) /usr/lib/x86_64-linux-gnu/libssl.so.3
cfi=(1)
cfn=(2) SSL_do_handshake
calls=1 0
0 800
ob=(2)
fn=(2)
0 700
cob=(3) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(3) malloc
calls=2 0
0 100
ob=(3)
fn=(3)
0 60
-1 40
totals: 920
"""


def test_self_cost_per_object(tmp_path):
    f = tmp_path / "callgrind.4242.1"
    f.write_text(DUMP)
    objs = _bench().callgrind_self_by_object(f)
    # Names defined on cob= lines are reused by ob= lines; the inclusive cost after calls= is the callee's.
    assert objs == {"srv": 120, "libssl.so.3": 700, "libc.so.6": 100}
    assert sum(objs.values()) == 920


def test_servers_and_loads(capsys):
    bench = _bench()
    known = ["a", "x", "y"]
    assert bench.servers_and_loads([], ["a"], ["moat"], known) == (["moat"], ["a"])
    assert bench.servers_and_loads(["nginx", "--loads", "x,y"], ["a"], ["moat"], known) == (["nginx"], ["x", "y"])
    # a misspelt load is an error naming the ones there are, not an empty table
    for bad in (["--loads", "x,hs-ecdas"], ["--loads", ""]):
        with pytest.raises(SystemExit):
            bench.servers_and_loads(bad, ["a"], ["moat"], known)
        assert "use a, x, y" in capsys.readouterr().err
