"""Sans-I/O Event Socket protocol: framing, commands, replies and event (de)serialisation, both ways.

The same code serves the robot (client side) and simswitch (server side), so the two can never
disagree about the wire. Byte layouts follow mod_event_socket.c as captured from FreeSWITCH
1.10.12 (shared/conformance): ``\\n`` line ends, header order per message type, URL-encoded
plain-event header values, raw bodies with no trailing newline added.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import unquote

MAX_BODY_BYTES = 16 * 1024 * 1024  # FreeSWITCH's own cap on a client Content-Length
MAX_HEADER_BYTES = 64 * 1024

DISCONNECT_NOTICE_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
DISCONNECT_NOTICE = (
    b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(DISCONNECT_NOTICE_BODY)
    + DISCONNECT_NOTICE_BODY
)
AUTH_REQUEST = b"Content-Type: auth/request\n\n"

# switch_url_encode_opt: control bytes, non-ASCII bytes and this set become uppercase %XX.
_UNSAFE = set(b"\r\n #%&+:;<=>?@[\\]^`{|}\"")
_HEX = set(b"0123456789abcdefABCDEF")


class EslProtocolError(ValueError):
    """The peer sent bytes that are not ESL, or broke a size limit."""


def url_encode(value: str) -> str:
    """Encode a header value exactly as FreeSWITCH does (an existing ``%XX`` is left alone)."""
    raw = value.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append(b)
        elif b < 0x20 or b > 0x7E or b in _UNSAFE:
            out += b"%%%02X" % b
        else:
            out.append(b)
        i += 1
    return out.decode("ascii")


def url_decode(value: str) -> str:
    """Decode ``%XX`` sequences (UTF-8); ``+`` stays a plus, as in FreeSWITCH."""
    return unquote(value, errors="replace")


@dataclass
class RawMessage:
    """One framed message: its header lines (undecoded) and its body bytes."""

    lines: list[str]
    body: bytes = b""

    def header_pairs(self, first_is_command: bool = False) -> list[tuple[str, str]]:
        """``Name: value`` lines as pairs; the first line is skipped when it is a command."""
        pairs = []
        for line in self.lines[1:] if first_is_command else self.lines:
            name, sep, value = line.partition(":")
            if sep:
                pairs.append((name.strip(), value.strip()))
        return pairs


@dataclass
class Reply:
    """A message from the switch: ``command/reply``, ``api/response``, an event or a notice."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def text(self) -> str:
        """The body as text (api/response output, or a serialised event)."""
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Command:
    """A message from the client: its command line, optional headers (sendmsg) and body."""

    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def verb(self) -> str:
        return self.line.split(" ", 1)[0].lower() if self.line else ""

    @property
    def args(self) -> str:
        return self.line.split(" ", 1)[1].strip() if " " in self.line else ""


class EslParser:
    """Incremental framer: feed bytes, get complete messages; never reads a socket.

    A message is header lines up to an empty line, then ``Content-Length`` body bytes if that
    header is present. ``\\r`` is ignored and leading blank lines are skipped, as in
    mod_event_socket's ``read_packet``.
    """

    def __init__(self, max_body: int = MAX_BODY_BYTES, max_header: int = MAX_HEADER_BYTES) -> None:
        self._buf = bytearray()
        self._lines: list[str] | None = None
        self._need = 0
        self.max_body = max_body
        self.max_header = max_header

    def feed(self, data: bytes) -> list[RawMessage]:
        """Add bytes; return every message they complete (raises EslProtocolError on abuse)."""
        self._buf += data
        out: list[RawMessage] = []
        while True:
            if self._lines is None:
                msg = self._take_headers()
                if msg is None:
                    break
                lines, need = msg
                if need == 0:
                    out.append(RawMessage(lines))
                    continue
                self._lines, self._need = lines, need
            if len(self._buf) < self._need:
                break
            body = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            out.append(RawMessage(self._lines, body))
            self._lines, self._need = None, 0
        return out

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    def _take_headers(self) -> tuple[list[str], int] | None:
        while self._buf[:1] in (b"\n", b"\r"):
            del self._buf[:1]
        end = self._buf.find(b"\n\n")
        crlf = self._buf.find(b"\r\n\r\n")
        if crlf != -1 and (end == -1 or crlf < end):
            end, sep = crlf, 4
        else:
            sep = 2
        if end == -1:
            if len(self._buf) > self.max_header:
                raise EslProtocolError(f"header block over {self.max_header} bytes without an end")
            return None
        block = bytes(self._buf[:end]).replace(b"\r", b"")
        del self._buf[: end + sep]
        lines = block.decode("utf-8", errors="replace").split("\n")
        need = 0
        for line in lines:
            name, sep_, value = line.partition(":")
            if sep_ and name.strip().lower() == "content-length":
                try:
                    need = int(value.strip())
                except ValueError:
                    raise EslProtocolError(f"bad Content-Length {value.strip()!r}") from None
                if need < 0 or need > self.max_body:
                    raise EslProtocolError(f"Content-Length {need} outside 0..{self.max_body}")
        return lines, need


def to_reply(raw: RawMessage) -> Reply:
    """A switch-to-client message as a Reply (header values are not URL-encoded at this level)."""
    return Reply(dict(raw.header_pairs()), raw.body)


def to_command(raw: RawMessage) -> Command:
    """A client-to-switch message as a Command."""
    line = raw.lines[0].strip() if raw.lines else ""
    return Command(line, dict(raw.header_pairs(first_is_command=True)), raw.body)


# ---- client to switch -------------------------------------------------------------------

_SAFE_LINE = re.compile(r"^[^\r\n]*$")


def serialize_command(line: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """``line\\n[Name: value\\n...]\\n[body]``; refuses newlines that would inject a second command."""
    if not line or not _SAFE_LINE.match(line):
        raise ValueError(f"ESL command must be one non-empty line, got {line!r}")
    out = line + "\n"
    for name, value in headers:
        if not _SAFE_LINE.match(name) or not _SAFE_LINE.match(value):
            raise ValueError(f"ESL header {name!r} must not contain a newline")
        out += f"{name}: {value}\n"
    if body:
        out += f"Content-Length: {len(body)}\n"
    return out.encode("utf-8") + b"\n" + body


# ---- switch to client -------------------------------------------------------------------


def frame_command_reply(reply_text: str, extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """``Content-Type: command/reply`` with Reply-Text first, then any extra (bgapi's Job-UUID)."""
    out = f"Content-Type: command/reply\nReply-Text: {reply_text}\n"
    out += "".join(f"{n}: {v}\n" for n, v in extra)
    return (out + "\n").encode("utf-8")


def frame_api_response(body: str | bytes) -> bytes:
    """``api/response``: Content-Type first, then Content-Length, then the raw output."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    if not data:
        data = b"-ERR no reply\n"  # api_exec turns an empty output into this
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def frame_event(payload: bytes, fmt: str = "plain") -> bytes:
    """An event message: for events Content-Length comes *before* Content-Type."""
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode()) + payload


@dataclass
class EslEvent:
    """A decoded event: headers in order (duplicates kept) and the raw body, if any."""

    headers: list[tuple[str, str]]
    body: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    @property
    def name(self) -> str:
        return self.get("Event-Name", "") or ""

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def key(self) -> str:
        """The dispatch key: the subclass for CUSTOM events, else the event name."""
        return (self.subclass or self.name) if self.name == "CUSTOM" else self.name

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")


def serialize_event(event: EslEvent, fmt: str = "plain") -> bytes:
    """Serialise an event's payload as FreeSWITCH does for ``event plain`` or ``event json``."""
    if fmt == "json":
        obj: dict[str, object] = {}
        for n, v in event.headers:
            obj.setdefault(n, v)
        if event.body is not None:
            obj["Content-Length"] = str(len(event.body.encode("utf-8")))
            obj["_body"] = event.body
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if fmt != "plain":
        raise ValueError(f"unsupported event format {fmt!r} (plain and json are supported)")
    out = "".join(f"{n}: {url_encode(v)}\n" for n, v in event.headers)
    if event.body is not None:
        body = event.body.encode("utf-8")
        return (out + f"Content-Length: {len(body)}\n\n").encode("utf-8") + body
    return (out + "\n").encode("utf-8")


def parse_event(reply: Reply) -> EslEvent:
    """Decode the payload of a ``text/event-plain`` or ``text/event-json`` message, body intact."""
    if reply.content_type == "text/event-json":
        try:
            obj = json.loads(reply.body)
        except ValueError as exc:
            raise EslProtocolError(f"event-json payload is not JSON: {exc}") from None
        body = obj.pop("_body", None)
        if body is not None:
            obj.pop("Content-Length", None)
        return EslEvent([(k, v if isinstance(v, str) else json.dumps(v)) for k, v in obj.items()], body)
    if reply.content_type != "text/event-plain":
        raise EslProtocolError(f"not an event: Content-Type {reply.content_type!r}")
    data = reply.body
    end = data.find(b"\n\n")
    head, rest = (data, b"") if end == -1 else (data[:end], data[end + 2:])
    headers = []
    body_len = None
    for line in head.decode("utf-8", errors="replace").split("\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            continue
        if name == "Content-Length":
            body_len = int(value)
            continue
        headers.append((name, url_decode(value)))
    body = rest[:body_len].decode("utf-8", errors="replace") if body_len is not None else None
    return EslEvent(headers, body)
