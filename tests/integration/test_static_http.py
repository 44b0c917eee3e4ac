"""Static files against the RFC 9110/9112 cases where moat once differed from what the RFC asks: the folder
redirect (built from the normalised path: no open redirect, no fragment), preconditions (If-Match,
If-Unmodified-Since, 412), the small-file cache and repeated If-None-Match fields, a suffix range of an
empty file, HTTP/1.2, an absolute-form target with an empty path, future modification times, symlinks
inside the root, and the header-field limit. Real binary, curl and raw TLS sockets."""
import email.utils
import os
import socket
import subprocess
import time

import pytest

from serve_helpers import CA, config, free_port, get, read_response, request, site, tls_connect


@pytest.fixture
def ca(moat):
    return CA(moat.dir)


@pytest.fixture
def www(moat):
    root = moat.dir / "www"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "index.html").write_text("dir index\n")
    (root / "hello.txt").write_text("hello world\n")
    (root / "range.txt").write_text("0123456789abcdefghijklmnopqrstuvwxyz\n")
    (root / "empty.txt").write_text("")
    (root / "future.txt").write_text("from the future\n")
    t = time.mktime((2031, 5, 5, 5, 5, 5, 0, 0, 0))
    os.utime(root / "future.txt", (t, t))
    (root / "releases" / "42").mkdir(parents=True)
    (root / "releases" / "42" / "app.txt").write_text("release 42\n")
    os.symlink(root / "releases" / "42", root / "current")  # absolute, inside the root
    os.symlink("/etc/hostname", root / "escape")  # absolute, outside
    return root


@pytest.fixture
def server(moat, ca, www):
    port, http_port = free_port(), free_port()
    ca.issue(moat, "www", ["localhost"])
    moat.serve(config(moat, [site(["localhost"], port, root=www, http_port=http_port)],
                      limits="header_fields: 20"), wait=[port, http_port])
    return port, http_port


def curl(*args):
    r = subprocess.run(["curl", "-sk", "--max-time", "10", *map(str, args)], capture_output=True, timeout=30)
    return r


def raw(port, data, secure=True):
    """Sends raw bytes on a fresh connection and reads one response."""
    if secure:
        s = tls_connect(port, sni="localhost")
    else:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        return read_response(s)[:3]
    finally:
        s.close()


HOSTILE = ["//evil.example/../dir", "/\\evil.example/../dir", "/%5Cevil.example/../dir", "/dir#x",
           "/./dir", "/%64ir", "///dir"]


@pytest.mark.parametrize("target", HOSTILE)
def test_folder_redirect_is_built_from_the_normalised_path(server, target):
    port, http_port = server
    for p, secure in ((port, True), (http_port, False)):
        st, hd, _ = raw(p, f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
                        secure=secure)
        assert st == 301, target
        assert hd["location"] == "/dir/", (target, hd["location"])


def test_folder_redirect_keeps_the_query_and_curl_follows_it(server):
    port, _ = server
    st, hd, _ = raw(port, b"GET /dir?a=1&b=%2F HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert st == 301 and hd["location"] == "/dir/?a=1&b=%2F"
    r = curl("--path-as-is", "-L", "--max-redirs", "2", "-w", "%{url_effective}",
             f"https://localhost:{port}//evil.example/../dir")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"dir index\n") and r.stdout.endswith(f"localhost:{port}/dir/".encode())


def test_if_match_and_if_unmodified_since(server):
    port, _ = server
    url = f"https://localhost:{port}/range.txt"
    etag = get(port, "/range.txt")[1]["etag"]
    code = lambda *h: curl("-o", "/dev/null", "-w", "%{http_code}", *h, url).stdout.decode()  # noqa: E731
    assert code("-H", 'If-Match: "nope"') == "412"
    assert code("-H", f"If-Match: {etag}") == "200"
    assert code("-H", "If-Match: *") == "200"
    assert code("-H", f"If-Match: W/{etag}") == "412"  # strong comparison
    # a resumed download of a file that changed since: 412, never bytes of the new file
    assert code("-r", "0-4", "-H", "If-Unmodified-Since: Mon, 01 Jan 2001 00:00:00 GMT") == "412"
    assert code("-r", "0-4", "-H", 'If-Match: "nope"') == "412"
    assert code("-r", "0-4", "-H", f"If-Match: {etag}") == "206"
    future = email.utils.formatdate(time.time() + 86400, usegmt=True)
    assert code("-r", "0-4", "-H", f"If-Unmodified-Since: {future}") == "206"
    # If-Unmodified-Since is ignored when If-Match is there (RFC 9110 §13.2.2)
    assert code("-H", f"If-Match: {etag}", "-H", "If-Unmodified-Since: Mon, 01 Jan 2001 00:00:00 GMT") == "200"
    assert code("-I", "-H", 'If-Match: "nope"') == "412"


def test_second_if_none_match_field_is_read_by_the_cache_too(server):
    port, _ = server
    etag = get(port, "/hello.txt")[1]["etag"]
    s = tls_connect(port, sni="localhost")
    try:
        assert request(s, "/hello.txt")[0] == 200  # fills the small-file cache
        for _ in range(3):
            st, hd, body = request(s, "/hello.txt", headers=[("If-None-Match", ""), ("If-None-Match", etag)])
            assert st == 304 and body == b""
            st, hd, body = request(s, "/hello.txt", headers=[("If-Modified-Since", ""), ("If-Match", '"x"')])
            assert st == 412
    finally:
        s.close()


def test_suffix_range_of_an_empty_file(server):
    port, _ = server
    r = curl("-r", "-1", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
             f"https://localhost:{port}/empty.txt")
    assert r.stdout == b"200 0"
    r = curl("-r", "0-0", "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{port}/empty.txt")
    assert r.stdout == b"416"


def test_http_1_2_is_served_as_1_1(server):
    port, _ = server
    st, hd, body = raw(port, b"GET /hello.txt HTTP/1.2\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert st == 200 and body == b"hello world\n"
    st, _, _ = raw(port, b"GET /hello.txt HTTP/2.0\r\nHost: localhost\r\n\r\n")
    assert st == 505


def test_absolute_form_with_an_empty_path_and_a_query(server):
    port, _ = server
    st, hd, body = raw(port, f"GET https://localhost:{port}?x=1 HTTP/1.1\r\nHost: localhost\r\n"
                             "Connection: close\r\n\r\n".encode())
    assert st == 404  # "/" of this root has no index.html: served as the path "/", not refused as 400
    st, hd, body = raw(port, f"GET https://localhost:{port}/hello.txt?x=1 HTTP/1.1\r\nHost: localhost\r\n"
                             "Connection: close\r\n\r\n".encode())
    assert st == 200


def test_future_modification_time_is_not_sent(server):
    port, _ = server
    st, hd, _ = get(port, "/future.txt")
    assert st == 200
    lm = email.utils.parsedate_to_datetime(hd["last-modified"])
    date = email.utils.parsedate_to_datetime(hd["date"])
    assert lm <= date, (hd["last-modified"], hd["date"])


def test_symlinks_inside_the_root_are_followed(server):
    port, _ = server
    st, _, body = get(port, "/current/app.txt")
    assert st == 200 and body == b"release 42\n"
    assert get(port, "/escape")[0] == 404


def test_header_field_limit_is_configured(server):
    port, _ = server
    fields = [(f"X-{i}", "v") for i in range(18)]  # with Host and Connection: 20
    s = tls_connect(port, sni="localhost")
    try:
        assert request(s, "/hello.txt", headers=fields, close=True)[0] == 200
    finally:
        s.close()
    s = tls_connect(port, sni="localhost")
    try:
        assert request(s, "/hello.txt", headers=fields + [("X-one-more", "v")], close=True)[0] == 431
    finally:
        s.close()


def test_expect_100_continue_gets_the_final_answer_at_once(server, moat):
    port, http_port = server
    big = moat.dir / "up.bin"
    big.write_bytes(b"\0" * 200000)
    t0 = time.monotonic()
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-T", big, f"https://localhost:{port}/x")
    took = time.monotonic() - t0
    assert r.stdout == b"405" and took < 0.8, (r.stdout, took)  # curl waits 1 s for a 100 that never comes
    # a client that waits for the 100 gets the final status without sending its body
    for p, secure, target, want in ((port, True, "/x", 405), (http_port, False, "/x", 405),
                                    (port, True, "/missing", 405), (port, True, "/hello.txt", 200)):
        method = "GET" if want == 200 else "PUT"
        if secure:
            s = tls_connect(p, sni="localhost")
        else:
            s = socket.create_connection(("127.0.0.1", p), timeout=5)
        try:
            s.settimeout(3)
            s.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            st, hd, body, _ = read_response(s)
            assert st == want and hd.get("connection") == "close", (target, st, hd)
            if want == 200:
                assert body == b"hello world\n"
        finally:
            s.close()
    # HTTP/1.0 ignores the expectation: the body is read as before
    st, _, _ = raw(port, b"PUT /x HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc")
    assert st == 405
