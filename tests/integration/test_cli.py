"""The command line contract: help, version, exit codes."""
import json


def test_help_exits_zero_and_lists_commands(moat):
    r = moat.ok("--help")
    assert "usage: moat" in r.stdout
    assert "exit status" in r.stdout


def test_no_command_is_usage_error(moat):
    r = moat.run()
    assert r.returncode == 2
    assert "usage: moat" in r.stderr


def test_unknown_command_is_usage_error(moat):
    r = moat.fails("frobnicate", code=2)
    assert 'unknown command "frobnicate"' in r.stderr


def test_version_json(moat):
    r = moat.ok("version", "--json")
    v = json.loads(r.stdout)
    assert v["openssl"].startswith("3.")
    assert v["moat"]
