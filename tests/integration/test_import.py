"""moat import: a folder of mixed files made with openssl (encrypted keys, an orphan key, a PKCS#12, an
nginx config, a certbot tree) ends with every pair in the store and every orphan reported; --dry-run
changes nothing; a second run imports nothing twice."""
import json
import subprocess

from conftest import SOURCE_DIR

MAKE_TREE = SOURCE_DIR / "tests" / "data" / "import" / "make-tree.sh"


def make_tree(moat):
    out, work = moat.dir / "old-server", moat.dir / "ca-work"
    subprocess.run(["sh", str(MAKE_TREE), str(out), str(work)], check=True, capture_output=True, timeout=120)
    pw = moat.dir / "pw"
    pw.write_text("secret\n")
    return out, pw


def key_names(moat):
    r = moat.ok("key", "list", "--json")
    return {k["name"] for k in json.loads(r.stdout)}


def test_import_folder(moat):
    tree, pw = make_tree(moat)

    # --dry-run: the report, no store created.
    r = moat.fails("import", tree, "--dry-run")
    assert "would import" in r.stdout
    assert "would add as renewal" in r.stdout
    assert "--password-file" in r.stderr
    assert not moat.store.exists()

    # Without the password: every readable pair is imported, the encrypted files are named.
    r = moat.fails("import", tree)
    assert "enc.key: encrypted: pass --password-file FILE" in r.stdout
    assert "site.p12: encrypted" in r.stdout
    assert "run again with --password-file" in r.stderr
    names = key_names(moat)
    assert {"a.test", "ex.test", "www.b.test"} <= names
    assert any(n.startswith("imported-") for n in names)  # the orphan key, kept as a pending key

    # With the password: the rest, and nothing twice.
    r = moat.ok("import", tree, "--password-file", pw, "--json")
    report = json.loads(r.stdout)
    assert report["kind"] == "directory"
    actions = {k["name"]: k["action"] for k in report["keys"]}
    assert actions["enc.test"] == "import"
    assert actions["p12-site"] == "import"
    assert actions["a.test"] == "exists"
    assert report["summary"]["imported"] == 2
    assert report["summary"]["existing"] == 5
    assert report["summary"]["files_not_opened"] == 0
    assert report["summary"]["keys_without_certificate"] == 1
    assert [c["subject"] for c in report["certificates_without_key"]] == ["CN=lonely.test"]
    orphan = [k for k in report["keys"] if k["certificate"] is None]
    assert len(orphan) == 1 and orphan[0]["file"].endswith("/certs/orphan.key")

    r = moat.ok("import", tree, "--password-file", pw, "--json")
    report = json.loads(r.stdout)
    assert report["summary"]["imported"] == 0
    assert report["summary"]["renewals"] == 0
    assert report["summary"]["existing"] == 7
    assert {"a.test", "enc.test", "ex.test", "p12-site", "www.b.test"} <= key_names(moat)
    assert "ex.test-2" not in key_names(moat)

    # certbot: both generations in the history, live/ current; chains came along.
    history = json.loads(moat.ok("cert", "history", "ex.test", "--json").stdout)
    assert len(history) == 2
    assert [h["current"] for h in history] == [True, False]
    chain = moat.ok("cert", "export", "a.test", "--chain").stdout
    assert chain.count("BEGIN CERTIFICATE") == 2
    live = (tree / "letsencrypt" / "live" / "ex.test" / "cert.pem").read_text()
    assert moat.ok("cert", "export", "ex.test").stdout.strip() == live.strip()


def test_import_nginx_and_apache_configs(moat):
    tree, _ = make_tree(moat)
    r = moat.ok("import", tree / "nginx" / "nginx.conf", "--json")
    report = json.loads(r.stdout)
    assert report["kind"] == "nginx"
    assert [k["name"] for k in report["keys"]] == ["www.b.test"]
    assert report["keys"][0]["origin"].endswith("sites-enabled/b:5 ssl_certificate_key")

    apache = moat.dir / "apache"
    (apache / "sites-enabled").mkdir(parents=True)
    (apache / "apache2.conf").write_text(f'ServerRoot "{apache}"\nIncludeOptional sites-enabled/*.conf\n')
    (apache / "sites-enabled" / "a.conf").write_text(
        "<VirtualHost *:443>\n"
        "    ServerName www.a.test\n"
        f"    SSLCertificateFile {tree}/certs/a.pem\n"
        f"    SSLCertificateKeyFile {tree}/certs/a.key\n"
        f"    SSLCertificateChainFile {tree}/certs/chain.pem\n"
        f"    SSLCertificateFile {tree}/certs/missing.pem\n"
        "</VirtualHost>\n")
    r = moat.ok("import", apache / "apache2.conf", "--dry-run")
    assert "www.a.test" in r.stdout and "would import" in r.stdout
    assert "missing.pem: No such file or directory" in r.stdout
    r = moat.ok("import", apache / "apache2.conf")
    assert "www.a.test" in key_names(moat)


def test_import_errors(moat):
    r = moat.fails("import", moat.dir / "nowhere")
    assert "cannot read" in r.stderr and "nowhere" in r.stderr
    moat.fails("import", code=2)
    r = moat.ok("import", "--help")
    assert "--dry-run" in r.stdout
    empty = moat.dir / "empty"
    empty.mkdir()
    r = moat.ok("import", empty)
    assert "0 imported" in r.stdout
    assert not moat.store.exists()


def test_import_config_path_too_long(moat):
    # A relative path that only exceeds PATH_MAX once joined to the config's folder used to be cut
    # silently, which could name another file; it is reported instead.
    deep = moat.dir
    while len(str(deep)) < 3800:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    conf = deep / "nginx.conf"
    rel = "/".join(["c" * 200] * 2) + "/site.pem"
    conf.write_text(f"server {{\n    ssl_certificate {rel};\n    include {rel};\n}}\n")
    r = moat.ok("import", conf, "--dry-run")
    assert "path too long" in r.stdout and "include path too long" in r.stdout
    assert not moat.store.exists()


def test_import_then_renew_then_import_again_keeps_the_renewal(moat):
    """The flow after a migration: an imported key is renewed through moat (key renew, the old CA signs,
    cert install), backed up and restored; importing the old server's files again finds the old
    certificate in the key's history and leaves the renewed one current, under the same name."""
    tree, _ = make_tree(moat)
    work = moat.dir / "ca-work"
    nginx = tree / "nginx" / "nginx.conf"
    moat.ok("import", nginx)
    old = moat.ok("cert", "export", "www.b.test").stdout
    csr = moat.dir / "renew.csr"
    moat.ok("key", "renew", "www.b.test", "--csr-out", csr)
    (moat.dir / "leaf.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:www.b.test\n")
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", work / "int.pem", "-CAkey", work / "int.key",
                    "-CAcreateserial", "-days", "25", "-extfile", moat.dir / "leaf.ext",
                    "-out", moat.dir / "renewed.pem"], check=True, capture_output=True, timeout=60)
    moat.ok("cert", "install", "www.b.test", moat.dir / "renewed.pem")
    renewed = moat.ok("cert", "export", "www.b.test").stdout
    assert renewed != old
    moat.ok("store", "backup", moat.dir / "after-renew.db")
    moat.ok("store", "restore", moat.dir / "after-renew.db")
    report = json.loads(moat.ok("import", nginx, "--json").stdout)
    assert report["summary"]["imported"] == 0 and report["summary"]["existing"] == 1, report
    assert [k["name"] for k in report["keys"]] == ["www.b.test"]
    assert moat.ok("cert", "export", "www.b.test").stdout == renewed
    assert "www.b.test-2" not in key_names(moat)
