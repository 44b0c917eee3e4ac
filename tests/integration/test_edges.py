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
