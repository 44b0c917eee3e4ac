"""A raw HTTP/2 client for tests: TLS with ALPN h2, frames built and read with hyperframe, fields with
hpack. It sends exactly what a test asks for (malformed frames too) and reads what the server answers."""
import socket
import ssl
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, \
    ENHANCE_YOUR_CALM = 0, 1, 2, 3, 6, 7, 8, 9, 11


class H2:
    def __init__(self, port, cafile, sni="localhost", settings=None, preface=True, timeout=5):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(cafile))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s = ctx.wrap_socket(raw, server_hostname=sni)
        assert self.s.selected_alpn_protocol() == "h2"
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.next_id = 1
        self.server_settings = {}
        if preface:
            self.s.sendall(PREFACE)
            self.send(SettingsFrame(0, settings=settings or {}))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, *frames):
        self.s.settimeout(5)  # a read may have left a short timeout: a write cut by it cannot be retried
        self.s.sendall(b"".join(f.serialize() for f in frames))

    def send_raw(self, data):
        self.s.sendall(data)

    def stream(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def headers(self, path="/", authority="localhost", method="GET", extra=(), end_stream=True, sid=None,
                raw_fields=None):
        sid = sid or self.stream()
        fields = raw_fields if raw_fields is not None else \
            [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path), *extra]
        f = HeadersFrame(sid, self.enc.encode(fields))
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return sid, f

    def get(self, path="/", **kw):
        sid, f = self.headers(path, **kw)
        self.send(f)
        return sid

    def read_frame(self, deadline):
        while True:
            if len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) >= 9 + length:
                    f.parse_body(memoryview(self.buf[9:9 + length]))
                    self.buf = self.buf[9 + length:]
                    if isinstance(f, HeadersFrame):
                        # Every field block goes through the decoder, whichever stream it is on: HPACK's
                        # dynamic table is the connection's (the server sends no CONTINUATION).
                        f.fields = self.dec.decode(f.data)
                    if isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                        self.server_settings.update(f.settings)
                        try:
                            self.send(SettingsFrame(0, flags=["ACK"]))
                        except OSError:
                            pass  # the server may be closing: what it sent is still read
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except (ssl.SSLError, ConnectionError, OSError):
                data = b""
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data

    def frames(self, timeout=3, until=None):
        """Frames until <until>(frame) is true, the connection closes, or <timeout> seconds pass."""
        out = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                f = self.read_frame(deadline)
                if f is None:
                    break
                out.append(f)
                if until is not None and until(f):
                    break
        except EOFError:
            out.append(None)  # the connection closed
        return out

    def response(self, sid, timeout=5, window_updates=True):
        """(status, headers dict, body, frames seen) of stream <sid>."""
        status, hdrs, body, seen = None, {}, b"", []
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(deadline)
            if f is None:
                raise TimeoutError(f"no end of stream {sid}; saw {seen}")
            seen.append(f)
            if isinstance(f, GoAwayFrame):
                raise ConnectionError(f"GOAWAY {f.error_code} before stream {sid} ended")
            if f.stream_id != sid:
                if isinstance(f, DataFrame) and window_updates and f.flow_controlled_length:
                    # another stream's data still spends the connection's window
                    self.send(WindowUpdateFrame(0, window_increment=f.flow_controlled_length))
                continue
            if isinstance(f, HeadersFrame):
                for k, v in f.fields:
                    if k == ":status":
                        status = int(v)
                    else:
                        hdrs[k] = v
            elif isinstance(f, DataFrame):
                body += f.data
                if window_updates and f.flow_controlled_length:
                    self.send(WindowUpdateFrame(0, window_increment=f.flow_controlled_length),
                              WindowUpdateFrame(sid, window_increment=f.flow_controlled_length))
            elif isinstance(f, RstStreamFrame):
                return None, {"rst": f.error_code}, body, seen
            if "END_STREAM" in f.flags:
                return status, hdrs, body, seen


def goaway_of(frames):
    for f in frames:
        if isinstance(f, GoAwayFrame):
            return f
    return None


def rst_of(frames, sid):
    for f in frames:
        if isinstance(f, RstStreamFrame) and f.stream_id == sid:
            return f.error_code
    return None


__all__ = ["H2", "goaway_of", "rst_of", "ContinuationFrame", "DataFrame", "GoAwayFrame", "HeadersFrame",
           "PingFrame", "RstStreamFrame", "SettingsFrame", "WindowUpdateFrame", "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR",
           "FLOW_CONTROL_ERROR", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
           "ENHANCE_YOUR_CALM"]
