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
    """One framed message: its header lines (undecoded) and its body bytes.

    ``skipped`` is the size of a body that was over the parser's limit and discarded unread
    (``body`` is then empty).
    """

    lines: list[str]
    body: bytes = b""
    skipped: int = 0

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
    """A message from the switch: ``command/reply``, ``api/response``, an event or a notice.

    ``skipped`` > 0: the body was over the parser's limit and was discarded (``body`` is empty).
    """

    headers: dict[str, str]
    body: bytes = b""
    skipped: int = 0

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


_LENGTH = re.compile(r"^[0-9]{1,15}$")


def _content_length(value: str, where: str) -> int:
    """A Content-Length value: plain decimal digits only (``int()`` would take ``+5``, ``5_0``, ``٥``)."""
    value = value.strip()
    if not _LENGTH.fullmatch(value):
        raise EslProtocolError(f"bad Content-Length {value[:40]!r} in {where}")
    return int(value)


class EslParser:
    """Incremental framer: feed bytes, get complete messages; never reads a socket.

    A message is header lines up to an empty line, then ``Content-Length`` body bytes if that
    header is present. ``\\r`` is ignored and leading blank lines are skipped, as in
    mod_event_socket's ``read_packet``.

    Linear time however the stream is split: the search for the end of a header block resumes
    where the previous feed stopped, so each byte is looked at once. Limits: a header block over
    ``max_header`` bytes, or a Content-Length that is not a decimal number, raises
    EslProtocolError (the stream cannot be resynchronised: drop the connection). A body over
    ``max_body`` raises too, unless ``skip_oversize_body``: its bytes are then discarded as they
    arrive, never buffered, and the message comes out with an empty body and ``skipped`` set, so
    the stream stays in step (a client drops such an event, or fails the command it answers).
    """

    def __init__(self, max_body: int = MAX_BODY_BYTES, max_header: int = MAX_HEADER_BYTES,
                 skip_oversize_body: bool = False) -> None:
        self._buf = bytearray()
        self._scan = 0  # the next byte of the header block to search for a line end
        self._line = 0  # where the header line being read starts
        self._lines: list[str] | None = None  # the headers of the message whose body is awaited
        self._need = 0  # body bytes awaited
        self._skip = 0  # bytes of an oversize body still to discard
        self.max_body = max_body
        self.max_header = max_header
        self.skip_oversize_body = skip_oversize_body

    def feed(self, data: bytes) -> list[RawMessage]:
        """Add bytes; return every message they complete (raises EslProtocolError on abuse)."""
        self._buf += data
        out: list[RawMessage] = []
        while True:
            if self._lines is None:
                head = self._take_headers()
                if head is None:
                    break
                lines, need = head
                if need == 0:
                    out.append(RawMessage(lines))
                    continue
                if need > self.max_body and not self.skip_oversize_body:
                    raise EslProtocolError(f"Content-Length {need} is over the {self.max_body}-byte limit")
                self._lines, self._need = lines, need
                self._skip = need if need > self.max_body else 0
            if self._skip:
                gone = min(len(self._buf), self._skip)
                del self._buf[:gone]
                self._skip -= gone
                if self._skip:
                    break
                out.append(RawMessage(self._lines, skipped=self._need))
                self._lines, self._need = None, 0
                continue
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
        buf = self._buf
        if self._scan == 0:  # a new message: skip blank lines before it
            start = 0
            while start < len(buf) and buf[start] in b"\r\n":
                start += 1
            del buf[:start]
        while True:
            end = buf.find(b"\n", self._scan)
            if end == -1:
                self._scan = len(buf)
                if self._scan > self.max_header:
                    raise EslProtocolError(f"header block over {self.max_header} bytes without an end")
                return None
            if end > self.max_header:
                raise EslProtocolError(f"header block over {self.max_header} bytes")
            if buf.count(b"\r", self._line, end) == end - self._line:  # an empty line (``\\r`` is ignored)
                break
            self._scan = self._line = end + 1
        block = bytes(buf[: self._line]).replace(b"\r", b"")
        del buf[: end + 1]
        self._scan = self._line = 0
        lines = block.decode("utf-8", errors="replace").split("\n")[:-1]
        need = 0
        for line in lines:
            name, sep, value = line.partition(":")
            if sep and name.strip().lower() == "content-length":
                need = _content_length(value, "the message headers")
        return lines, need


def to_reply(raw: RawMessage) -> Reply:
    """A switch-to-client message as a Reply (header values are not URL-encoded at this level)."""
    return Reply(dict(raw.header_pairs()), raw.body, raw.skipped)


def to_command(raw: RawMessage) -> Command:
    """A client-to-switch message as a Command."""
    line = raw.lines[0].strip() if raw.lines else ""
    return Command(line, dict(raw.header_pairs(first_is_command=True)), raw.body)


# ---- client to switch -------------------------------------------------------------------

_SAFE_LINE = re.compile(r"[^\r\n\x00]*")


def serialize_command(line: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    """``line\\n[Name: value\\n...]\\n[body]``; refuses newlines that would inject a second command."""
    if not line or not _SAFE_LINE.fullmatch(line):
        raise ValueError(f"ESL command must be one non-empty line, got {line!r}")
    out = line + "\n"
    for name, value in headers:
        if not _SAFE_LINE.fullmatch(name) or not _SAFE_LINE.fullmatch(value):
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
    """Decode the payload of a ``text/event-plain`` or ``text/event-json`` message, body intact.

    Anything malformed raises EslProtocolError, and only that, so a reader can drop the one event
    and go on: a non-numeric or overlong inner Content-Length, JSON that is not an object (or
    nests too deep), a non-string ``_body``, no ``Event-Name``. Bytes that are not UTF-8 become
    U+FFFD instead: a hang-up whose caller name is Latin-1 must still arrive.
    """
    if reply.content_type == "text/event-json":
        event = _parse_json_event(reply.body)
    elif reply.content_type == "text/event-plain":
        event = _parse_plain_event(reply.body)
    else:
        raise EslProtocolError(f"not an event: Content-Type {reply.content_type!r}")
    if not event.name:
        raise EslProtocolError(f"event without Event-Name (headers: {[n for n, _ in event.headers][:8]})")
    return event


def _parse_json_event(payload: bytes) -> EslEvent:
    try:
        obj = json.loads(payload.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError) as exc:
        raise EslProtocolError(f"event-json payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(obj, dict):
        raise EslProtocolError(f"event-json payload is a JSON {type(obj).__name__}, not an object")
    body = obj.pop("_body", None)
    if body is not None:
        if not isinstance(body, str):
            raise EslProtocolError(f"event-json _body is a JSON {type(body).__name__}, not a string")
        obj.pop("Content-Length", None)
    try:
        headers = [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in obj.items()]
    except (ValueError, RecursionError) as exc:
        raise EslProtocolError(f"event-json header value cannot be kept: {str(exc)[:80]}") from None
    return EslEvent(headers, body)


def _parse_plain_event(data: bytes) -> EslEvent:
    end = data.find(b"\n\n")
    head, rest = (data, b"") if end == -1 else (data[:end], data[end + 2:])
    headers = []
    body_len = None
    for line in head.decode("utf-8", errors="replace").split("\n"):
        name, sep, value = line.partition(": ")
        if not sep:
            continue
        if name == "Content-Length":
            body_len = _content_length(value, "an event")
            continue
        headers.append((name, url_decode(value)))
    if body_len is not None and body_len > len(rest):
        raise EslProtocolError(f"event body has {len(rest)} bytes, its Content-Length says {body_len}")
    body = rest[:body_len].decode("utf-8", errors="replace") if body_len is not None else None
    return EslEvent(headers, body)
