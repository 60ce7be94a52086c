"""Sans-I/O WebSocket framing as libwsc does it: the client handshake bytes, masked single frames,
and a parser for what the server sends back."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# libwsc ErrorCode values (WebSocketClient.h)
ERR_IO, ERR_SERVER_MASKED, ERR_NOT_SUPPORTED, ERR_CONNECT_FAILED, ERR_TIMEOUT, ERR_PROTOCOL = 1, 3, 4, 6, 10, 11

_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP header name
_CRLF = re.compile(r"[\r\n]")


class WsError(Exception):
    """A libwsc-style failure: ``code`` and ``message`` go into ``mod_audio_stream::error``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class WsUrl:
    """A URL that passed mod_audio_stream's ``validate_ws_uri``."""

    secure: bool
    host: str
    port: int
    path: str  # path and query, "/" if empty


def parse_ws_url(url: str) -> WsUrl | None:
    """ws:// or wss://, host of [A-Za-z0-9.-], numeric port; path and query unchecked. None if invalid."""
    for scheme, secure, default_port in (("ws://", False, 80), ("wss://", True, 443)):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            break
    else:
        return None
    if " " in url:
        return None
    hostport, slash, path = rest.partition("/")
    hostport, q, query = hostport.partition("?")
    host, colon, port_s = hostport.partition(":")
    if not host or not _HOST.match(host) or (colon and not port_s.isdigit()):
        return None
    port = int(port_s) if colon else default_port
    if not 0 < port < 65536:
        return None
    full = "/" + path if slash else "/"
    if q:
        full = "/?" + query
    return WsUrl(secure, host, port, full)


def handshake_request(url: WsUrl, extra_headers: list[tuple[str, str]] | None = None) -> tuple[bytes, str]:
    """libwsc's upgrade request, byte for byte (no space after the colons); returns it and the key."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {url.path} HTTP/1.1",
        f"Host:{url.host}:{url.port}",
        "Upgrade:websocket",
        "Connection:upgrade",
        f"Sec-WebSocket-Key:{key}",
        "Sec-WebSocket-Version:13",
        f"Origin:http://{url.host}:{url.port}",
    ]
    lines += [f"{k}:{v}" for k, v in extra_headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def extra_headers(variable: str | None) -> list[tuple[str, str]]:
    """``STREAM_EXTRA_HEADERS``: a JSON object whose string values become handshake headers.

    Anything else (bad JSON, non-string values, names or values with CR/LF or a colon in the
    name) is skipped, so no header can be injected."""
    if not variable:
        return []
    try:
        obj = json.loads(variable)
    except ValueError:
        return []
    if not isinstance(obj, dict):
        return []
    return [(k, v) for k, v in obj.items() if isinstance(v, str) and _TOKEN.match(k) and not _CRLF.search(v)]


def handshake_ok(response: bytes) -> bool:
    """libwsc's check: the literal ``HTTP/1.1 101`` and a Sec-WebSocket-Accept header (any case)."""
    return b"HTTP/1.1 101" in response and b"sec-websocket-accept:" in response.lower()


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame, FIN set, RSV clear (libwsc never fragments)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    if n:
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    else:
        masked = b""
    return head + mask + masked


def close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


class WsFrameParser:
    """Server-to-client frames in, complete messages out: (opcode, payload).

    Continuation frames are joined; a masked server frame or an oversize message raises WsError.
    """

    def __init__(self, max_message: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._frag_op: int | None = None
        self._frag = bytearray()
        self.max_message = max_message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            frame = self._take()
            if frame is None:
                return out
            fin, op, payload = frame
            if op >= 0x8:  # control frames may sit between fragments
                out.append((op, payload))
            elif op == OP_CONT:
                if self._frag_op is None:
                    raise WsError(ERR_PROTOCOL, "continuation frame without a start")
                self._frag += payload
                if len(self._frag) > self.max_message:
                    raise WsError(ERR_PROTOCOL, f"message over {self.max_message} bytes")
                if fin:
                    out.append((self._frag_op, bytes(self._frag)))
                    self._frag_op, self._frag = None, bytearray()
            elif fin:
                out.append((op, payload))
            else:
                self._frag_op, self._frag = op, bytearray(payload)

    def _take(self) -> tuple[bool, int, bytes] | None:
        b = self._buf
        if len(b) < 2:
            return None
        fin, op = bool(b[0] & 0x80), b[0] & 0x0F
        if b[1] & 0x80:
            raise WsError(ERR_SERVER_MASKED, "server frame is masked")
        n, pos = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack_from("!H", b, 2)[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack_from("!Q", b, 2)[0], 10
        if n > self.max_message:
            raise WsError(ERR_PROTOCOL, f"frame of {n} bytes is over the {self.max_message} limit")
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        return fin, op, payload
