"""What an administrator meets around the edges: whole messages, one JSON, hints, overwrites (issue 16)."""
import json

import pytest


def test_long_hint_is_not_cut(moat):
    name = "web-frontend-production-eu-west"
    moat.ok("ca", "init", "--cn", "Edge Root")
    moat.ok("ca", "issue", name, "--cn", "www.example.test")
    r = moat.fails("key", "export", name, "--out", "x.p12", "--password-file", "/dev/null")
    assert f"(moat key renew {name} --exportable)" in r.stderr, r.stderr


def test_config_typo_lists_every_key(moat):
    cfg = moat.dir / "bad.yaml"
    cfg.write_text("store: moat.db\nsites:\n  - hosts: [a.test]\n    rot: /srv\n")
    r = moat.fails("serve", "-c", cfg, "--check")
    # The site table's last fields come last in the list: the message must reach them whole.
    assert 'did you mean "root"?' in r.stderr
    assert "locations)" in r.stderr, r.stderr


def test_json_errors_are_one_object_on_stderr(moat):
    r = moat.fails("--json", "key", "show", "nope")
    e = json.loads(r.stderr)["error"]
    assert e["code"] == "not-found" and e["message"] and e["hint"], e
    r = moat.fails("key", "list", "--json", "--bogus", code=2)
    e = json.loads(r.stderr)["error"]
    assert e["code"] == "usage" and "--bogus" in e["message"] and e["hint"].startswith("usage: moat key list")


def test_usage_and_version_help(moat):
    r = moat.run("serve", env={"MOAT_CONFIG": ""})
    assert r.returncode == 2 and "usage: usage:" not in r.stderr and "usage: moat serve" in r.stderr, r.stderr
    r = moat.ok("version", "--help")
    assert r.stdout.startswith("usage: moat version") and "example:" in r.stdout
    moat.fails("version", "--bogus", code=2)


def test_every_command_finds_moat_yaml_here(moat, tmp_path):
    env = {"MOAT_STORE": ""}
    (tmp_path / "moat.yaml").write_text("store: here.db\nsites: []\n")
    moat.ok("ca", "init", "--cn", "Here Root", env=env)
    assert (tmp_path / "here.db").exists(), "ca init used the store of ./moat.yaml"
    r = moat.ok("ca", "list", env=env)
    assert f"using ./moat.yaml and its store {tmp_path / 'here.db'}" in r.stderr, r.stderr
    r = moat.ok("ca", "list", "--json", env=env)
    assert "using" not in r.stderr
    # Named configs need no note.
    r = moat.ok("ca", "list", env={"MOAT_STORE": "", "MOAT_CONFIG": str(tmp_path / "moat.yaml")})
    assert "using" not in r.stderr
