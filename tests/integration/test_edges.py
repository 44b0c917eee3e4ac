"""What an administrator meets around the edges: whole messages, one JSON, hints, overwrites (issue 16)."""
import json

import pytest

from keymgr_helpers import dump, openssl, openssl_sign, outside_chain
from store_rows import foreign_database


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
    first = r.stderr.splitlines()[0]
    assert 'did you mean "root"?' in first
    assert "locations" in first and first.endswith(")"), r.stderr


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


@pytest.mark.parametrize("form", ["PEM", "DER"])
def test_pkcs7_in_cert_install_trust_add_and_imports(moat, form):
    d = moat.dir
    ikey, icrt, root = outside_chain(d)
    moat.ok("key", "new", "w", "--cn", "w.example.test", "--csr-out", "w.csr")
    openssl_sign(d, d / "w.csr", d / "w.pem", ca=(ikey, icrt))
    # What a Windows CA returns: the leaf and its chain in one PKCS#7 bundle.
    openssl("crl2pkcs7", "-nocrl", "-certfile", d / "w.pem", "-certfile", icrt, "-outform", form,
            "-out", d / "w.p7b")
    r = moat.ok("cert", "install", "w", d / "w.p7b")
    out = moat.ok("cert", "export", "w", "--chain").stdout
    assert out.count("BEGIN CERTIFICATE") == 2, (r.stdout, out)
    openssl("crl2pkcs7", "-nocrl", "-certfile", root, "-outform", form, "-out", d / "root.p7c")
    moat.ok("trust", "add", d / "root.p7c", "--name", "outside")
    assert "outside" in moat.ok("trust", "list").stdout
    # key import and moat import read the key beside a .p7b chain too.
    (d / "pair").mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            d / "pair" / "p.key", "-out", d / "p.pem", "-days", "5", "-subj", "/CN=p.example.test")
    openssl("crl2pkcs7", "-nocrl", "-certfile", d / "p.pem", "-outform", form, "-out", d / "pair" / "p.p7b")
    moat.ok("import", d / "pair")
    assert "p" in moat.ok("key", "list").stdout


def test_hints_on_common_mistakes(moat):
    d = moat.dir
    (d / "notes.txt").write_text("not a certificate\n")
    moat.ok("key", "new", "w", "--cn", "w.example.test", "--csr-out", "w.csr")
    r = moat.fails("cert", "install", "w", d / "notes.txt")
    assert len(r.stderr.strip().splitlines()) == 2, r.stderr
    r = moat.fails("key", "new", "v", "--cn", "v.test", "--san", "IP:999.1.1.1")
    assert len(r.stderr.strip().splitlines()) == 2 and "IP:" in r.stderr.splitlines()[1], r.stderr
    moat.ok("ca", "init", "--cn", "Hint Root")
    (d / "empty.csr").write_text("")
    r = moat.fails("ca", "sign", d / "empty.csr", "--out", d / "x.pem")
    assert len(r.stderr.strip().splitlines()) == 2, r.stderr
    junk = d / "junk.db"
    junk.write_bytes(b"\0" * 4096)
    junk.chmod(0o600)
    r = moat.fails("store", "restore", junk)
    assert "moat store backup" in r.stderr, r.stderr
    other = d / "other.db"
    foreign_database(other)
    r = moat.fails("store", "restore", other)
    assert "MOAT_STORE" not in r.stderr and "moat store backup" in r.stderr, r.stderr


def test_import_counts_junk_apart_from_encrypted(moat):
    d = moat.dir / "keys"
    d.mkdir()
    (d / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass",
            "pass:secret", "-out", d / "enc.key")
    r = moat.fails("import", d)
    last = r.stderr.strip().splitlines()
    assert "2 files could not be opened: 1 encrypted, 1 damaged or unreadable" in r.stderr, r.stderr
    (d / "enc.key").unlink()
    r = moat.fails("import", d)
    assert "encrypted" not in r.stderr and "the list above" in r.stderr, r.stderr
    r = moat.fails("import", d, "--json")
    assert "see the list above" not in r.stderr
    e = json.loads(r.stderr)["error"]
    assert e["hint"], e


def test_no_silent_overwrite(moat):
    d = moat.dir
    pw = d / "pw.txt"
    pw.write_text("correct horse\n")
    (d / "w.csr").write_text("keep me\n")
    r = moat.fails("key", "new", "w", "--cn", "w.example.test", "--csr-out", d / "w.csr")
    assert "already exists" in r.stderr and "--force" in r.stderr
    assert (d / "w.csr").read_text() == "keep me\n"
    moat.fails("key", "show", "w"), "nothing was made"
    moat.ok("key", "new", "w", "--cn", "w.example.test", "--csr-out", d / "w.csr", "--force")
    assert "CERTIFICATE REQUEST" in (d / "w.csr").read_text()
    moat.fails("key", "renew", "w", "--csr-out", d / "w.csr")
    moat.ok("ca", "init", "--cn", "Overwrite Root")
    moat.ok("ca", "issue", "alice", "--cn", "alice", "--profile", "client")
    (d / "a.p12").write_text("keep me\n")
    r = moat.fails("ca", "export-client", "alice", "--out", d / "a.p12", "--password-file", pw)
    assert "--force" in r.stderr and (d / "a.p12").read_text() == "keep me\n"
    moat.ok("ca", "export-client", "alice", "--out", d / "a.p12", "--password-file", pw, "--force")
    r = moat.fails("key", "export", "alice", "--out", d / "a.p12", "--password-file", pw)
    assert "--force" in r.stderr
    moat.ok("key", "export", "alice", "--out", d / "a.p12", "--password-file", pw, "--force")
    openssl("pkcs12", "-in", d / "a.p12", "-passin", "pass:correct horse", "-noout")


def test_key_export_prompts_on_a_tty(moat):
    import fcntl
    import os
    import pty
    import select
    import subprocess
    import termios
    import time

    from conftest import MOAT_BIN
    moat.ok("ca", "init", "--cn", "Prompt Root")
    moat.ok("ca", "issue", "bob", "--cn", "bob", "--profile", "client")
    master, slave = pty.openpty()

    def take_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([MOAT_BIN, "key", "export", "bob", "--out", "b.p12"], env=moat.env, cwd=moat.dir,
                         stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=take_tty)
    os.close(slave)
    seen, answered = b"", 0
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        rl, _, _ = select.select([master], [], [], 0.2)
        if rl:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
            if seen.count(b":") > answered:
                answered += 1
                os.write(master, b"tty secret\n")
    out, err = p.communicate(timeout=30)
    os.close(master)
    assert p.returncode == 0, (seen, err)
    assert b"password" in seen.lower() and b"tty secret" not in seen, seen
    openssl("pkcs12", "-in", moat.dir / "b.p12", "-passin", "pass:tty secret", "-noout")


RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


def test_json_times_are_rfc3339_everywhere(moat):
    import re
    d = moat.dir
    moat.ok("ca", "init", "--cn", "Json Root")
    moat.ok("ca", "issue", "www", "--cn", "www.example.test")
    _, root = (None, None)
    ikey, icrt, root = outside_chain(d)
    moat.ok("trust", "add", root, "--name", "outside")
    for a in json.loads(moat.ok("trust", "list", "--json").stdout)["anchors"] if isinstance(
            json.loads(moat.ok("trust", "list", "--json").stdout), dict) else json.loads(
            moat.ok("trust", "list", "--json").stdout):
        assert re.match(RFC3339, a["not_after"]), a
    for c in json.loads(moat.ok("ca", "list", "--json").stdout):
        assert re.match(RFC3339, c["not_after"]) and c["issuing_ca"] in ("root", "intermediate"), c
        assert "issuer" not in c, "issuer is a DN wherever it appears"
    info = json.loads(moat.ok("store", "info", "--json").stdout)
    assert info["server"]["updated"] is None or re.match(RFC3339, info["server"]["updated"])
    (d / "pems").mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            d / "pems" / "p.key", "-out", d / "pems" / "p.pem", "-days", "5", "-subj", "/CN=p.example.test")
    imp = json.loads(moat.ok("import", d / "pems", "--dry-run", "--json").stdout)
    assert re.match(RFC3339, imp["keys"][0]["certificate"]["not_after"]), imp


def test_key_csr_prints_the_pending_request_again(moat):
    d = moat.dir
    moat.ok("key", "new", "w", "--cn", "w.example.test", "--csr-out", d / "w.csr")
    assert moat.ok("key", "csr", "w").stdout == (d / "w.csr").read_text()
    moat.ok("key", "csr", "w", "--out", d / "again.csr")
    assert (d / "again.csr").read_text() == (d / "w.csr").read_text()
    moat.fails("key", "csr", "w", "--out", d / "again.csr")
    j = json.loads(moat.ok("key", "csr", "w", "--json").stdout)
    assert j["name"] == "w" and j["csr"] == (d / "w.csr").read_text()
    moat.ok("ca", "init", "--cn", "Csr Root")
    moat.ok("ca", "issue", "done", "--cn", "done.example.test")
    r = moat.fails("key", "csr", "done")
    assert "no pending request" in r.stderr and "key renew done" in r.stderr


def test_store_audit(moat):
    import re
    moat.ok("ca", "init", "--cn", "Audit Root")
    moat.ok("ca", "issue", "www", "--cn", "www.example.test")
    moat.ok("ca", "issue", "api", "--cn", "api.example.test")
    moat.ok("ca", "revoke", "api")
    rows = json.loads(moat.ok("store", "audit", "--json").stdout)
    assert len(rows) >= 4 and rows[0]["id"] > rows[-1]["id"], "newest first"
    assert all(re.match(RFC3339, r["time"]) for r in rows)
    actions = {r["action"] for r in rows}
    assert any(a.startswith("ca.") for a in actions), actions
    only = json.loads(moat.ok("store", "audit", "--key", "api", "--json").stdout)
    assert {r["action"] for r in only} >= {"ca.issue", "ca.revoke"}, only
    assert all(r["object"] == "api" or "api" in r["detail"] for r in only), only
    assert json.loads(moat.ok("store", "audit", "--since", "2999-01-01", "--json").stdout) == []
    assert len(json.loads(moat.ok("store", "audit", "--since", "1h", "--json").stdout)) == len(rows)
    text = moat.ok("store", "audit", "--key", "api").stdout
    assert text.splitlines()[0].split()[:4] == ["TIME", "USER", "ACTION", "OBJECT"]
    r = moat.fails("store", "audit", "--since", "yesterday-ish", code=2)
    assert "90m" in r.stderr


def test_cosmetics(moat):
    d = moat.dir
    moat.ok("ca", "init", "--cn", "Cosmetic Root")
    moat.ok("ca", "init", "--intermediate", "--cn", "Cosmetic Issuing")
    r = moat.fails("ca", "init", "--intermediate", "--cn", "Again")
    assert "already has an intermediate CA" in r.stderr, r.stderr
    long = "wildcard.example.test.long-name"
    moat.ok("ca", "issue", long, "--cn", "w.example.test")
    moat.ok("ca", "issue", "s", "--cn", "s.example.test")
    lines = moat.ok("key", "list").stdout.splitlines()
    col = lines[0].index("STATE")
    assert all(line[col - 1] == " " and line[col] != " " for line in lines), lines
    # cert history shows whole serials
    moat.ok("key", "renew", "s", "--csr-out", d / "s.csr")
    moat.ok("ca", "sign", d / "s.csr", "--out", d / "s.pem")
    moat.ok("cert", "install", "s", d / "s.pem")
    serials = {c["serial"] for c in json.loads(moat.ok("cert", "history", "s", "--json").stdout)}
    text = moat.ok("cert", "history", "s").stdout
    assert len(serials) == 2 and all(s in text for s in serials), text
    # paths are printed tidy
    (d / "s7").mkdir()
    r = moat.ok("--store", "s7/../moat.db", "store", "info", env={"MOAT_STORE": ""})
    assert "s7/.." not in r.stdout and f"{d}/moat.db" in r.stdout, r.stdout


def test_serve_check_fingerprints_in_the_usual_style(moat):
    import re
    from serve_helpers import CA, config, free_port, site
    ca = CA(moat.dir)
    ca.issue(moat, "www", ["localhost"])
    cfg = moat.dir / "check.yaml"
    cfg.write_text(config(moat, [site(["localhost"], free_port())]))
    out = moat.ok("serve", "-c", cfg, "--check").stdout
    assert re.search(r"SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}", out), out


def test_key_renew_changes_the_names(moat):
    d = moat.dir
    moat.ok("ca", "init", "--cn", "Renew Root")
    moat.ok("ca", "issue", "www", "--cn", "www.renew.test")
    before = dump(moat.store)
    # A bad name fails before any key is made, and changes nothing.
    r = moat.fails("key", "renew", "www", "--san", "IP:999.1.1.1", "--csr-out", d / "bad.csr")
    assert "--san" in r.stderr and not (d / "bad.csr").exists()
    assert dump(moat.store) == before
    moat.ok("key", "renew", "www", "--san", "DNS:www.renew.test,DNS:shop.renew.test", "--csr-out", d / "r.csr")
    txt = openssl("req", "-in", d / "r.csr", "-noout", "-text").stdout
    assert "DNS:www.renew.test, DNS:shop.renew.test" in txt and "CN=www.renew.test" in txt.replace(" = ", "=")
    moat.ok("ca", "sign", d / "r.csr", "--out", d / "r.pem")
    moat.ok("cert", "install", "www", d / "r.pem")
    k = json.loads(moat.ok("key", "show", "www", "--json").stdout)
    assert k["sans"] == ["DNS:www.renew.test", "DNS:shop.renew.test"], k
    # A new CN alone is the only name, as for key new.
    moat.ok("key", "renew", "www", "--cn", "new.renew.test", "--csr-out", d / "n.csr")
    txt = openssl("req", "-in", d / "n.csr", "-noout", "-text").stdout
    assert "CN=new.renew.test" in txt.replace(" = ", "=") and "DNS:new.renew.test" in txt
    assert "shop.renew.test" not in txt
    assert "--cn CN" in moat.ok("key", "renew", "--help").stdout


def test_key_list_on_a_missing_store_creates_nothing(moat):
    # A missing store is an error naming its path (a mistyped --store must not look empty), and reading
    # never creates one.
    for args in (("key", "list"), ("key", "list", "--json")):
        r = moat.fails(*args)
        assert str(moat.store) in r.stderr, r.stderr
        assert not moat.store.exists() and not list(moat.dir.glob("*.key")), list(moat.dir.iterdir())
    r = moat.fails("key", "list", env={"MOAT_STORE": str(moat.dir / "sub" / "moat.db")})
    assert not (moat.dir / "sub").exists()
