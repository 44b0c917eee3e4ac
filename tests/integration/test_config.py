"""moat.yaml through the real binary: the store: key found by every command given -c (relative to the
config file's folder, below --store and MOAT_STORE), and config errors with file:line:column."""
import json


def env_without_store(moat):
    env = dict(moat.env)
    env.pop("MOAT_STORE", None)
    env["HOME"] = str(moat.dir / "home")  # the default store would land here, never in the real home
    env.pop("XDG_DATA_HOME", None)
    return env


def test_store_from_config(moat):
    conf_dir = moat.dir / "etc"
    conf_dir.mkdir()
    cfg = conf_dir / "moat.yaml"
    cfg.write_text("store: data/moat.db   # relative to this file\n")
    env = env_without_store(moat)
    moat.env = env

    # Run from another folder: the store lands beside the config, not in the current directory.
    moat.ok("key", "new", "www", "--cn", "www.example.com", "--csr-out", moat.dir / "www.csr", "-c", cfg,
            cwd=moat.dir / "..")
    assert (conf_dir / "data" / "moat.db").exists()
    names = [k["name"] for k in json.loads(moat.ok("key", "list", "--json", "-c", cfg).stdout)]
    assert names == ["www"]
    env2 = dict(env, MOAT_CONFIG=str(cfg))
    names = [k["name"] for k in json.loads(moat.ok("key", "list", "--json", env=env2).stdout)]
    assert names == ["www"]

    # MOAT_STORE and --store come first.
    other = moat.dir / "other.db"
    moat.ok("key", "new", "api", "--cn", "api.example.com", "--csr-out", moat.dir / "api.csr", "-c", cfg,
            env={"MOAT_STORE": str(other)})
    assert other.exists()
    names = [k["name"] for k in json.loads(moat.ok("key", "list", "--json", "-c", cfg, "--store", other).stdout)]
    assert names == ["api"]


def test_config_errors_name_the_place(moat):
    moat.env = env_without_store(moat)
    bad = moat.dir / "moat.yaml"
    bad.write_text("store: x.db\nsites:\n  - hosts: [a.test]\n    listen: [\"*:99999\"]\n    lisen: 1\n")
    r = moat.fails("key", "list", "-c", bad)
    assert f'{bad}:4:14: sites[0].listen: "*:99999": port out of range 1-65535' in r.stderr
    assert "1 more error" in r.stderr
    assert not (moat.dir / "x.db").exists()

    bad.write_text("store: [a, b]\n")
    r = moat.fails("key", "list", "-c", bad)
    assert f"{bad}:1:8: store: expected a path, found a list" in r.stderr

    r = moat.fails("key", "list", "-c", moat.dir / "missing.yaml")
    assert "cannot read config" in r.stderr and "missing.yaml" in r.stderr
