"""A real browser: headless Debian Chromium loads the sample page over HTTPS from moat, with the test CA
trusted through an NSS database under a temporary $HOME (the only way Chromium trusts a CA)."""
from browser_helpers import dump_dom, needs_chromium, nss_home
from conftest import SOURCE_DIR
from serve_helpers import CA, config, free_port, site, wait_for


@needs_chromium
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

    env = nss_home(moat.dir / "home", ca.pem)
    dom, err, timed_out = dump_dom(f"https://localhost:{port}/", env, moat.dir / "chromium-profile", timeout=120)
    assert not timed_out, f"chromium did not finish loading the page\n{err[-2000:]}"
    expected = (root / "index.html").read_text()
    title = expected.split("<title>")[1].split("</title>")[0] if "<title>" in expected else "moat"
    assert title in dom, f"chromium did not load the page:\n{dom[:500]}\n{err[-2000:]}"
    assert "ERR_CERT" not in dom and "Your connection is not private" not in dom
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and " 200 " in log.read_text(), timeout=5), \
        "the browser's request is in the access log"


@needs_chromium
def test_chromium_speaks_h2(moat):
    """The page reads the protocol of its own load (performance.getEntries()[0].nextHopProtocol)."""
    ca = CA(moat.dir, name="Browser Test Root")
    ca.issue(moat, "localhost", ["localhost"])
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text(
        "<!DOCTYPE html><title>h2</title><p id=proto>none</p>"
        "<script>document.getElementById('proto').textContent = "
        "'protocol=' + performance.getEntries()[0].nextHopProtocol;</script>\n")
    port = free_port()
    moat.serve(config(moat, [site(["localhost"], port, root=root)]), wait=[port])
    env = nss_home(moat.dir / "home", ca.pem)
    dom, err, timed_out = dump_dom(f"https://localhost:{port}/", env, moat.dir / "chromium-profile", timeout=120)
    assert not timed_out, f"chromium did not finish loading the page\n{err[-2000:]}"
    assert "protocol=h2" in dom, f"{dom[:500]}\n{err[-2000:]}"
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and ' h2 "GET /" 200 ' in log.read_text(), timeout=5), \
        log.read_text() if log.exists() else ""
