"""A real browser: headless Debian Chromium loads the sample page over HTTPS from moat, with the test CA
trusted through an NSS database under a temporary $HOME (the only way Chromium trusts a CA)."""
import os
import shutil
import subprocess

import pytest

from conftest import SOURCE_DIR
from serve_helpers import CA, config, free_port, site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM) or not shutil.which("certutil"),
                    reason="needs chromium and certutil (scripts/deps.sh test installs them)")
def test_chromium_loads_the_sample_page(moat):
    ca = CA(moat.dir, name="Browser Test Root")
    ca.issue(moat, "localhost", ["localhost", "127.0.0.1"])
    sample = SOURCE_DIR / "examples" / "site"
    root = sample if (sample / "index.html").exists() else moat.dir / "www"
    if root != sample:
        root.mkdir()
        (root / "index.html").write_text("<!DOCTYPE html><title>moat</title><h1 id=hello>moat works</h1>\n")
    port = free_port()
    moat.serve(config(moat, [site(["localhost", "127.0.0.1"], port, root=root)]), wait=[port])

    home = moat.dir / "home"
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    subprocess.run(["certutil", "-d", f"sql:{nss}", "-N", "--empty-password"], check=True, env=env,
                   capture_output=True, timeout=60)
    subprocess.run(["certutil", "-d", f"sql:{nss}", "-A", "-t", "C,,", "-n", "moat test root", "-i",
                    str(ca.pem)], check=True, env=env, capture_output=True, timeout=60)
    profile = moat.dir / "chromium-profile"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--no-first-run",
                        "--disable-sync", f"--user-data-dir={profile}", "--dump-dom",
                        f"https://localhost:{port}/"], env=env, capture_output=True, timeout=120)
    dom = r.stdout.decode(errors="replace")
    expected = (root / "index.html").read_text()
    title = expected.split("<title>")[1].split("</title>")[0] if "<title>" in expected else "moat"
    assert title in dom, f"chromium did not load the page:\n{dom[:500]}\n{r.stderr.decode(errors='replace')[-2000:]}"
    assert "ERR_CERT" not in dom and "Your connection is not private" not in dom
    log = (moat.dir / "access.log")
    subprocess.run(["sleep", "1.2"])
    assert log.exists() and " 200 " in log.read_text(), "the browser's request is in the access log"
