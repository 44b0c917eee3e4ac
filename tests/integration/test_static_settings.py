"""The static-site settings, per site and per location, through the real binary with curl: response
headers (added, removed, cache:, nosniff by default), index names, fallback (SPA), error pages, redirects,
hidden dotfiles with exceptions, MIME overrides and charset, and folder listings (HTML-escaped)."""
import gzip
import subprocess

import pytest

from serve_helpers import CA, config, free_port, site, wait_for

SITE_SETTINGS = """
headers: ["Content-Security-Policy: default-src 'self'", "Access-Control-Allow-Origin: *"]
index: [index.htm, index.html]
error_pages: ["404 /errors/404.html"]
dotfiles_allow: [/.well-known]
charset: iso-8859-1
mime_types: [".vtt text/vtt", ".data application/x-moat-data"]
locations:
  - path: /assets
    cache: {max_age: 31536000, immutable: true}
  - path: /app
    fallback: /app/index.html
  - path: /old
    redirect: {to: "https://new.example/", status: 308, keep_path: true}
  - path: /moved
    redirect: {to: /dir/, status: 302}
  - path: /files
    listing: true
    remove_headers: [Access-Control-Allow-Origin, X-Content-Type-Options, ETag]
  - path: /t
    precompressed: [br, gzip]
  - path: /lan
    allow: [10.0.0.0/8, "fd00::/8"]
  - path: /local
    allow: [127.0.0.0/8, "::1"]
    deny: [127.0.0.2/32]
  - path: /staff
    basic_auth: {realm: Staff area, users: ["alice:@HASH@", "bob:@HASH2@"]}
  - path: /raw
    nosniff: false
    dotfiles: allow
    charset: none
"""


@pytest.fixture
def ca(moat):
    return CA(moat.dir)


@pytest.fixture
def www(moat):
    root = moat.dir / "www"
    for d in ("dir", "assets", "app", "files/sub", "errors", "raw", ".git", ".well-known", "htm", "lan", "local",
              "staff"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "dir" / "index.html").write_text("dir index\n")
    (root / "htm" / "index.htm").write_text("htm index\n")
    (root / "htm" / "index.html").write_text("html index (second choice)\n")
    (root / "assets" / "app.3f2a.js").write_text("console.log(1)\n")
    (root / "app" / "index.html").write_text("<div id=app></div>\n")
    (root / "errors" / "404.html").write_text("<h1>custom not found</h1>\n")
    (root / "files" / "a&b <x>.txt").write_text("odd name\n")
    (root / "files" / "plain.txt").write_text("plain\n")
    (root / "files" / ".secret").write_text("hidden\n")
    (root / "raw" / ".env").write_text("KEY=1\n")
    (root / "raw" / "page.html").write_text("<p>raw</p>\n")
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".env").write_text("SECRET=1\n")
    (root / ".well-known" / "security.txt").write_text("Contact: x\n")
    (root / "subs.vtt").write_text("WEBVTT\n")
    (root / "x.data").write_text("data\n")
    (root / "hello.txt").write_text("hello\n")
    for d in ("lan", "local", "staff"):
        (root / d / "index.html").write_text(f"{d} page\n")
    (root / "t").mkdir()
    js = b"function f(){return 1}\n" * 40
    (root / "t" / "app.js").write_bytes(js)
    (root / "t" / "app.js.gz").write_bytes(gzip.compress(js))
    (root / "t" / "app.js.br").write_bytes(b"not really brotli")
    (root / "t" / "style.css").write_text("body{}\n")
    (root / "t" / "style.css.gz").write_bytes(gzip.compress(b"body{}\n"))
    return root


@pytest.fixture
def server(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    h1 = subprocess.run(["openssl", "passwd", "-6", "-salt", "saltsalt", "open sesame"], capture_output=True,
                        text=True, check=True).stdout.strip()
    h2 = subprocess.run(["openssl", "passwd", "-6", "x"], capture_output=True, text=True, check=True).stdout.strip()
    settings = SITE_SETTINGS.replace("@HASH@", h1).replace("@HASH2@", h2)
    moat.serve(config(moat, [site(["localhost"], port, root=www, extra=settings)]), wait=[port])
    return port


def curl(port, path, *args, http2=False):
    """Status, lower-cased headers and body of one curl request."""
    dump = [] if "-I" in args else ["-D", "-"]
    r = subprocess.run(["curl", "-sk", "--max-time", "10", "--path-as-is", *dump,
                        "--http2" if http2 else "--http1.1", *args, f"https://localhost:{port}{path}"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    # moat offers h2: the HTTP/2 variants must run, never skip
    assert not http2 or lines[0].startswith("HTTP/2"), lines[0]
    headers = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(params=[False, True], ids=["http1.1", "http2"])
def h2(request):
    return request.param


def test_headers_added_and_nosniff_by_default(server, h2):
    st, hd, body = curl(server, "/hello.txt", http2=h2)
    assert st == 200 and body == b"hello\n"
    assert hd["x-content-type-options"] == "nosniff"
    assert hd["content-security-policy"] == "default-src 'self'"
    assert hd["access-control-allow-origin"] == "*"
    assert "cache-control" not in hd
    st, hd, _ = curl(server, "/nothing-here", http2=h2)
    assert st == 404 and "content-security-policy" not in hd and hd["x-content-type-options"] == "nosniff"


def test_cache_shortcut_per_location(server, h2):
    st, hd, _ = curl(server, "/assets/app.3f2a.js", http2=h2)
    assert st == 200 and hd["cache-control"] == "max-age=31536000, immutable"
    st, hd, _ = curl(server, "/assets/app.3f2a.js", "-H", f"If-None-Match: {hd['etag']}", http2=h2)
    assert st == 304 and hd["cache-control"] == "max-age=31536000, immutable"


def test_remove_headers_and_nosniff_off(server, h2):
    st, hd, _ = curl(server, "/files/plain.txt", http2=h2)
    assert st == 200
    assert "access-control-allow-origin" not in hd and "x-content-type-options" not in hd and "etag" not in hd
    assert hd["content-security-policy"] == "default-src 'self'"
    st, hd, _ = curl(server, "/raw/page.html", http2=h2)
    assert st == 200 and "x-content-type-options" not in hd


def test_index_names_in_order(server, h2):
    st, _, body = curl(server, "/htm/", http2=h2)
    assert st == 200 and body == b"htm index\n"
    st, _, body = curl(server, "/dir/", http2=h2)
    assert st == 200 and body == b"dir index\n"


def test_fallback_for_a_single_page_application(server, h2):
    for path in ("/app/", "/app/users/42", "/app/deep/link?tab=2"):
        st, hd, body = curl(server, path, http2=h2)
        assert st == 200 and body == b"<div id=app></div>\n", path
    st, _, body = curl(server, "/elsewhere", http2=h2)
    assert st == 404


def test_custom_error_page(server, h2):
    st, hd, body = curl(server, "/missing.html", http2=h2)
    assert st == 404 and body == b"<h1>custom not found</h1>\n"
    assert hd["content-type"].startswith("text/html")
    st, hd, body = curl(server, "/missing.html", "-I", http2=h2)
    assert st == 404 and hd["content-length"] == str(len(b"<h1>custom not found</h1>\n"))


def test_redirects_per_location(server, h2):
    st, hd, _ = curl(server, "/old/a/b%20c.html?q=1", http2=h2)
    assert st == 308 and hd["location"] == "https://new.example/a/b%20c.html?q=1"
    st, hd, _ = curl(server, "/old", http2=h2)
    assert st == 308 and hd["location"] == "https://new.example/"
    st, hd, _ = curl(server, "/moved/anything", "-X", "POST", http2=h2)
    assert st == 302 and hd["location"] == "/dir/"
    st, hd, body = curl(server, "/moved/x", "-L", http2=h2)
    assert st == 302  # curl -D shows the first answer; the body is the followed one
    assert body.endswith(b"dir index\n")


def test_dotfiles_hidden_with_exceptions(server, h2):
    for path in ("/.env", "/.git/config", "/.git/", "/files/.secret"):
        assert curl(server, path, http2=h2)[0] == 404, path
    st, _, body = curl(server, "/.well-known/security.txt", http2=h2)
    assert st == 200 and body == b"Contact: x\n"
    st, _, body = curl(server, "/raw/.env", http2=h2)
    assert st == 200 and body == b"KEY=1\n"
    # moat's own /.well-known/moat/ keeps working
    st, _, body = curl(server, "/.well-known/moat/whoami", http2=h2)
    assert st == 200


def test_mime_overrides_and_charset(server, h2):
    assert curl(server, "/subs.vtt", http2=h2)[1]["content-type"] == "text/vtt"
    assert curl(server, "/x.data", http2=h2)[1]["content-type"] == "application/x-moat-data"
    assert curl(server, "/hello.txt", http2=h2)[1]["content-type"] == "text/plain; charset=iso-8859-1"
    assert curl(server, "/raw/page.html", http2=h2)[1]["content-type"] == "text/html"


def test_folder_listing_escapes_names(server, h2):
    st, hd, body = curl(server, "/files/", http2=h2)
    assert st == 200 and hd["content-type"] == "text/html; charset=utf-8"
    text = body.decode()
    assert "a&amp;b &lt;x&gt;.txt" in text and "<x>" not in text
    assert 'href="./a&amp;b%20%3Cx%3E.txt"' in text
    assert 'href="./sub/"' in text and 'href="./plain.txt"' in text
    assert ".secret" not in text
    st, _, body = curl(server, "/files/a&b%20%3Cx%3E.txt", http2=h2)
    assert st == 200 and body == b"odd name\n"
    # no listing where it is not enabled
    assert curl(server, "/errors/x/", http2=h2)[0] == 404


def test_bad_settings_are_refused_with_their_place(moat, ca, www):
    port = free_port()
    bad = site(["localhost"], port, root=www, extra="""
headers: ["no colon here"]
locations:
  - path: /x
    redirect: {to: "//evil.example/", status: 399}
""")
    cfg = moat.dir / "bad.yaml"
    cfg.write_text(config(moat, [bad]))
    r = moat.run("serve", "-c", cfg, "--check")
    assert r.returncode == 1
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert 'sites[0].headers' in err and "expected \"Name: value\"" in err
    assert "bad.yaml:" in err


def test_precompressed_files(server, h2, www):
    js = (www / "t" / "app.js").read_bytes()
    st, plain, body = curl(server, "/t/app.js", http2=h2)
    assert st == 200 and body == js and plain["vary"] == "Accept-Encoding" and "content-encoding" not in plain
    st, hd, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: gzip", http2=h2)
    assert st == 200 and hd["content-encoding"] == "gzip" and hd["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == js
    assert hd["etag"] != plain["etag"] and hd["content-type"] == plain["content-type"]
    # its own validator revalidates the gzip file
    st, hd2, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: gzip", "-H",
                         f"If-None-Match: {hd['etag']}", http2=h2)
    assert st == 304
    st, hd, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: gzip, deflate, br", http2=h2)
    assert hd["content-encoding"] == "br" and body == b"not really brotli"
    st, hd, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: br;q=0, gzip;q=0.5", http2=h2)
    assert hd["content-encoding"] == "gzip"
    st, hd, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: gzip;q=0, br;q=0.0", http2=h2)
    assert "content-encoding" not in hd and body == js
    st, hd, body = curl(server, "/t/app.js", "-H", "Accept-Encoding: gzip", "-r", "0-7", http2=h2)
    assert st == 206 and "content-encoding" not in hd and body == js[:8]
    # curl --compressed decodes what it gets
    r = subprocess.run(["curl", "-sk", "--compressed", "-H", "Accept-Encoding: gzip", "--http2" if h2 else "--http1.1",
                        f"https://localhost:{server}/t/style.css"], capture_output=True, timeout=30)
    assert r.stdout == b"body{}\n"
    # elsewhere no precompressed file is chosen and nothing varies
    st, hd, body = curl(server, "/hello.txt", "-H", "Accept-Encoding: gzip", http2=h2)
    assert "vary" not in hd and "content-encoding" not in hd


def test_address_rules(server, h2):
    st, hd, body = curl(server, "/lan/", http2=h2)
    assert st == 403 and hd["x-moat-access"] == "address-not-allowed" and b"address-not-allowed" in body
    st, _, body = curl(server, "/local/", http2=h2)
    assert st == 200 and body == b"local page\n"
    assert curl(server, "/hello.txt", http2=h2)[0] == 200


def test_address_deny_wins(moat, ca, www):
    port = free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www,
                                  extra="allow: [127.0.0.0/8]\ndeny: [127.0.0.1]\n")]), wait=[port])
    st, hd, _ = curl(port, "/hello.txt")
    assert st == 403 and hd["x-moat-access"] == "address-denied"
    # the access log says why too
    log = moat.dir / "access.log"
    assert wait_for(lambda: log.exists() and " 403 " in log.read_text(), timeout=5)
    assert [ln for ln in log.read_text().splitlines() if " 403 " in ln][-1].endswith(" access=address-denied")


def test_basic_auth(server, h2):
    st, hd, body = curl(server, "/staff/", http2=h2)
    assert st == 401 and hd["www-authenticate"] == 'Basic realm="Staff area", charset="UTF-8"'
    assert hd["x-moat-access"] == "no-credentials"
    st, hd, _ = curl(server, "/staff/", "-u", "alice:wrong", http2=h2)
    assert st == 401 and hd["x-moat-access"] == "bad-credentials"
    st, hd, _ = curl(server, "/staff/", "-u", "mallory:open sesame", http2=h2)
    assert st == 401 and hd["x-moat-access"] == "bad-credentials"
    for _ in range(2):  # the second one is answered from the verified-credentials memory
        st, _, body = curl(server, "/staff/", "-u", "alice:open sesame", http2=h2)
        assert st == 200 and body == b"staff page\n"
    st, _, body = curl(server, "/staff/", "-u", "bob:x", http2=h2)
    assert st == 200
    assert curl(server, "/staff/", "-u", "bob:open sesame", http2=h2)[0] == 401


def test_legacy_password_hashes_are_refused(moat, ca, www):
    cfg = moat.dir / "legacy.yaml"
    cfg.write_text(config(moat, [site(["localhost"], free_port(), root=www,
                                      extra='basic_auth: {users: ["carol:abJnggxhB/yWI"]}\n')]))
    r = moat.run("serve", "-c", cfg, "--check")
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    assert r.returncode == 1 and "not a crypt(3) hash of a current method" in err
    assert "abJnggxhB" not in err
