"""The man pages moat(1) and moat.yaml(5): generated from the binary's --help texts and the key reference,
installed by `make install` (cmake --install into DESTDIR), and clean for groff (-ww: every warning)."""
import os
import pathlib
import re
import subprocess

import pytest

from conftest import MOAT_BIN, make_install

ROOT = pathlib.Path(__file__).resolve().parents[2]


def groff_clean(page):
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def render(page):
    r = subprocess.run(["groff", "-man", "-Tutf8", "-P-c", str(page)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, MANWIDTH="120"))
    assert r.returncode == 0, r.stderr
    # Undo overstriking so that the text compares plainly.
    return re.sub(r".\x08", "", r.stdout)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    out = tmp_path_factory.mktemp("man")
    subprocess.run(["/usr/bin/python3", str(ROOT / "scripts/gen-man.py"), MOAT_BIN, str(ROOT / "docs/config.md"),
                    str(out)], check=True, timeout=300)
    return out


def test_moat_1_has_every_command_and_the_usual_sections(moat, pages):
    page = pages / "moat.1"
    groff_clean(page)
    text = render(page)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS", "EXAMPLES", "ENVIRONMENT",
                    "FILES", "EXIT STATUS", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    from test_help import all_commands
    for c in all_commands(moat):
        assert f"moat {' '.join(c)}" in text, c
        # The command's own help text is in it, word for word (its usage line).
        first = moat.ok(*c, "--help").stdout.splitlines()[0]
        assert first in text, first
    assert "MOAT_STORE" in text and "moat.yaml(5)" in text and "example: moat inspect www.pem" in text


def test_moat_yaml_5_has_every_key(pages):
    page = pages / "moat.yaml.5"
    groff_clean(page)
    text = render(page)
    keys = re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs/config.md").read_text().split("## Key reference")[1], re.M)
    assert len(keys) > 50
    for k in keys:
        assert re.search(rf"^\s+{re.escape(k)}(\s|$)", text, re.M), k
    assert "EXAMPLE" in text and "require_secure_channel" in text and "moat(1)" in text


def test_make_install_installs_them(tmp_path):
    make_install(tmp_path)
    for page in ("man1/moat.1", "man5/moat.yaml.5"):
        p = tmp_path / "opt/moat/share/man" / page
        assert p.exists(), p
        groff_clean(p)
    r = subprocess.run(["man", "-l", str(tmp_path / "opt/moat/share/man/man1/moat.1")], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, MANPAGER="cat", MANWIDTH="100"))
    assert r.returncode == 0 and "moat - HTTPS server" in r.stdout
