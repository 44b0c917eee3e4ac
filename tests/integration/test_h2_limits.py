"""HTTP/2 limits and abuse, driven with raw frames: each limit holds, and a normal client on another
connection is still served meanwhile. Malformed requests (RFC 9113 section 8) are stream errors, never a
request handed on."""
import signal
import time

import pytest

from h2_helpers import (CANCEL, ENHANCE_YOUR_CALM, H2, INTERNAL_ERROR, NO_ERROR, PROTOCOL_ERROR, REFUSED_STREAM,
                        ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame,
                        WindowUpdateFrame, goaway_of, rst_of)
from serve_helpers import CA, config, free_port, site, wait_for


@pytest.fixture
def served(moat):
    ca = CA(moat.dir)
    root = moat.dir / "www"
    root.mkdir()
    (root / "index.html").write_text("ok\n")
    (root / "big.bin").write_bytes(b"x" * (1 << 20))
    ca.issue(moat, "www", ["localhost"])
    port = free_port()
    proc = moat.serve(config(moat, [site(["localhost"], port, root=root)],
                             limits="header_bytes: 8192, body_bytes: 1000, idle_timeout_s: 3"), wait=[port])
    return moat, ca, port, proc


def normal_client_served(ca, port):
    c = H2(port, ca.pem)
    try:
        status, _, body, _ = c.response(c.get("/"))
        return status == 200 and body == b"ok\n"
    finally:
        c.close()


def test_a_plain_request(served):
    moat, ca, port, _ = served
    assert normal_client_served(ca, port)


def test_settings_advertise_the_limits(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    c.response(c.get("/"))
    assert c.server_settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS) == 100
    assert c.server_settings.get(SettingsFrame.MAX_HEADER_LIST_SIZE) == 8192
    c.close()


def test_concurrent_streams_beyond_100_are_refused(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    c.frames(timeout=0.5)  # settings exchanged
    # 110 requests whose bodies never come: they stay open
    sids = []
    for _ in range(110):
        sid, f = c.headers("/", method="POST", extra=[("content-length", "10")], end_stream=False)
        sids.append(sid)
        c.send(f)
    frames = c.frames(timeout=2)
    # nghttp2 answers a stream past the acknowledged limit with a connection error (RFC 9113 5.1.2
    # allows it): GOAWAY PROTOCOL_ERROR naming at most the 100th stream as the last one processed
    g = goaway_of(frames)
    assert g is not None and g.error_code == PROTOCOL_ERROR and g.last_stream_id <= sids[99], \
        [(type(f).__name__, f.stream_id, getattr(f, "error_code", None)) for f in frames if f is not None][-20:]
    assert normal_client_served(ca, port)
    c.close()


def test_header_list_larger_than_header_bytes_gets_431(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid = c.get("/", extra=[(f"x-filler-{i}", "v" * 400) for i in range(30)])
    status, _, _, _ = c.response(sid)
    assert status == 431
    assert c.response(c.get("/"))[0] == 200, "the connection goes on"
    c.close()


def test_continuation_flood_ends_the_connection(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid = c.stream()
    block = c.enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")])
    c.send(HeadersFrame(sid, block))  # no END_HEADERS
    try:
        for i in range(200):
            c.send(ContinuationFrame(sid, c.enc.encode([("x-a", "b")])))
    except OSError:
        pass
    frames = c.frames(timeout=3)
    assert goaway_of(frames) is not None or frames[-1:] == [None]
    assert normal_client_served(ca, port)
    c.close()


def test_rapid_reset_gets_goaway(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    try:
        for _ in range(40):
            batch = []
            for _ in range(25):
                sid, f = c.headers("/big.bin")
                batch += [f, RstStreamFrame(sid, error_code=CANCEL)]
            c.send(*batch)
    except OSError:
        pass
    g = goaway_of(c.frames(timeout=3, until=lambda f: f is not None and f.type == 0x7))
    # nghttp2's rate limit (set by moat: a burst of 200, then 33 a second) ends the session with
    # INTERNAL_ERROR
    assert g is not None and g.error_code in (INTERNAL_ERROR, ENHANCE_YOUR_CALM), g
    assert normal_client_served(ca, port)
    c.close()


def test_made_you_reset_gets_goaway(served):
    """Requests moat must reset (here: an uppercase field name) cost the client; past 100, GOAWAY."""
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    try:
        for _ in range(150):
            c.send(c.headers("/", extra=[("X-Upper", "1")])[1])
    except OSError:
        pass
    frames = c.frames(timeout=3, until=lambda f: f is not None and f.type == 0x7)
    resets = [f for f in frames if isinstance(f, RstStreamFrame) and f.error_code == PROTOCOL_ERROR]
    g = goaway_of(frames)
    assert len(resets) >= 100 and g is not None and g.error_code == ENHANCE_YOUR_CALM, (len(resets), g)
    assert normal_client_served(ca, port)


@pytest.mark.parametrize("kind", ["ping", "settings", "empty-data", "window-update"])
def test_floods_of_frames_that_do_no_work_get_goaway(served, kind):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid, f = c.headers("/", method="POST", extra=[("content-length", "5")], end_stream=False)
    c.send(f)
    make = {"ping": lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")),
            "settings": lambda i: SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}),
            "empty-data": lambda i: DataFrame(sid, b""),
            "window-update": lambda i: WindowUpdateFrame(0, window_increment=1)}[kind]
    try:
        for i in range(0, 3000, 100):
            c.send(*[make(i + k) for k in range(100)])
    except OSError:
        pass
    g = goaway_of(c.frames(timeout=3, until=lambda f: f is not None and f.type == 0x7))
    assert g is not None and g.error_code == ENHANCE_YOUR_CALM
    assert normal_client_served(ca, port)


@pytest.mark.parametrize("fields", [
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"), ("Upper", "x")],
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"),
     ("connection", "keep-alive")],
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"),
     ("transfer-encoding", "chunked")],
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")],  # no :path
    [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "localhost"), (":path", "/")],
    [(":method", "GET"), ("x-a", "b"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")],
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"), (":bogus", "1")],
    [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"), ("te", "gzip")],
])
def test_malformed_requests_are_stream_errors(served, fields):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid, f = c.headers(raw_fields=fields)
    c.send(f)
    status, hdrs, _, _ = c.response(sid)
    assert status is None and hdrs == {"rst": PROTOCOL_ERROR}
    assert c.response(c.get("/"))[0] == 200, "a stream error leaves the connection up"
    c.close()
    log = moat.dir / "access.log"
    time.sleep(1.2)
    assert "Upper" not in (log.read_text() if log.exists() else "")


def test_content_length_that_disagrees_with_data_is_a_stream_error(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid, f = c.headers("/", method="POST", extra=[("content-length", "10")], end_stream=False)
    d = DataFrame(sid, b"abc")
    d.flags.add("END_STREAM")
    c.send(f, d)
    status, hdrs, _, _ = c.response(sid)
    assert status is None and hdrs == {"rst": PROTOCOL_ERROR}
    assert c.response(c.get("/"))[0] == 200
    c.close()


def test_request_body_limit_is_413(served):
    moat, ca, port, _ = served
    c = H2(port, ca.pem)
    sid, f = c.headers("/", method="POST", end_stream=False)
    c.send(f)
    try:
        for _ in range(4):
            c.send(DataFrame(sid, b"z" * 500))
    except OSError:
        pass
    status, _, _, _ = c.response(sid)
    assert status == 413
    c.close()
    assert normal_client_served(ca, port)


def test_flow_control_window_is_respected(served):
    """A client with a 1000-byte window gets 1000 bytes of a 1 MiB file, and the rest once it opens it."""
    moat, ca, port, _ = served
    c = H2(port, ca.pem, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1000})
    sid = c.get("/big.bin")
    frames = c.frames(timeout=1.5)
    got = sum(len(f.data) for f in frames if isinstance(f, DataFrame) and f.stream_id == sid)
    assert got == 1000, got
    c.send(WindowUpdateFrame(0, window_increment=1 << 20), WindowUpdateFrame(sid, window_increment=1 << 20))
    status, _, body, _ = c.response(sid)
    assert got + len(body) == 1 << 20
    c.close()


def test_idle_and_slow_readers_are_closed_by_the_idle_timeout(served):
    moat, ca, port, _ = served
    idle = H2(port, ca.pem)
    idle.frames(timeout=0.3)
    slow = H2(port, ca.pem, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 30})
    slow.send(WindowUpdateFrame(0, window_increment=(1 << 30)))
    slow.get("/big.bin")  # never read
    assert normal_client_served(ca, port)
    t0 = time.monotonic()
    frames = idle.frames(timeout=8)
    assert frames and frames[-1] is None, "the idle connection is closed"
    assert time.monotonic() - t0 < 6
    deadline = time.monotonic() + 8
    closed = False
    while time.monotonic() < deadline and not closed:
        time.sleep(0.5)
        try:
            slow.s.settimeout(0.1)
            while True:
                if not slow.s.recv(1 << 20):
                    closed = True
                    break
        except (TimeoutError, OSError) as e:
            closed = not isinstance(e, TimeoutError) and "timed out" not in str(e)
    assert closed, "a client that does not read is closed after the idle timeout"
    idle.close()
    slow.close()


def test_graceful_stop_sends_goaway_and_finishes_streams(served):
    moat, ca, port, proc = served
    c = H2(port, ca.pem)
    assert c.response(c.get("/"))[0] == 200
    proc.send_signal(signal.SIGTERM)
    frames = c.frames(timeout=5, until=lambda f: f is not None and f.type == 0x7)
    g = goaway_of(frames)
    assert g is not None and g.error_code == NO_ERROR and g.last_stream_id == 1
    assert wait_for(lambda: proc.poll() is not None, timeout=12)
