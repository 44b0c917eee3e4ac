"""`moat doctor [-c moat.yaml]`: local findings through the real binary (store, config, listeners)."""
import json
import os


def run_doctor(moat, *args, code=None):
    r = moat.run("doctor", "--json", "--timeout", "1", *args)
    assert r.returncode in (0, 1), f"doctor exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    moat._check_sanitizers(r.stderr)
    rep = json.loads(r.stdout)
    if code is not None:
        assert r.returncode == code, f"exit {r.returncode}, expected {code}\n{r.stdout}"
    return rep


def ids(rep, severity=None):
    return {f["id"] for f in rep["findings"] if severity is None or f["severity"] == severity}


def test_missing_store_and_absolute_path(moat):
    rep = run_doctor(moat, code=1)
    assert ids(rep) == {"store-missing"}
    assert rep["store"] == str(moat.store)
    # A relative --store is printed as the absolute path doctor inspects.
    r = moat.run("doctor", "--store", "sub/x.db", cwd=moat.dir)
    assert r.returncode == 1
    assert f"store:  {moat.dir}/sub/x.db\n" in r.stdout
    assert os.path.isabs(r.stdout.split("store:  ")[1].split("\n")[0])


def test_invalid_config_is_a_finding(moat):
    cfg = moat.dir / "moat.yaml"
    cfg.write_text("sites:\n  - hosts: [a.example]\n    listen: [\"*:99999\"]\n")
    rep = run_doctor(moat, "-c", cfg, code=1)
    assert "config-invalid" in ids(rep, "error")
    f = next(f for f in rep["findings"] if f["id"] == "config-invalid")
    assert "moat.yaml:3:" in f["what"] and "99999" in f["what"]
    assert "moat serve --check" in f["fix"]
