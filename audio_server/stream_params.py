"""Parse and validate a stream's handshake request (path, uuid, query, token) into StreamParams.

mod_audio_stream may send its metadata late or never, so everything a stream needs travels in
the URL: ``/stream/<uuid>?rate=16000&min_speech_ms=1500&bridge_ms=300&token=...``. Each query
key is declared once in ``QUERY_PARAMS`` (an allow-list); an unknown key is rejected so that
typos are caught at the handshake instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from callbot.audio_server.amd.detector import QUERY_KEYS, AmdParams
from callbot.config import Settings

STREAM_PREFIX = "/stream/"
RATES = (8000, 16000)


class StreamRequestError(ValueError):
    """A handshake request we refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StreamParams:
    """What one stream was asked for; every field is validated before the upgrade."""

    call: str  # canonical lower-case UUID from the path
    rate: int
    min_speech_ms: int
    bridge_ms: int
    amd: AmdParams = field(default_factory=AmdParams)  # amd=on|off, amd_<mod_amd name>=<ms>: AmdParams.from_query
    lang: str | None = None  # the callee's language for speech recognition; None: stt.language

    @classmethod
    def defaults(cls, call: str, settings: Settings) -> "StreamParams":
        """Parameters for ``call`` when the URL gives none (used by tests and the bench)."""
        return cls(call=call, rate=16000, min_speech_ms=settings.bargein.min_speech_ms,
                   bridge_ms=settings.bargein.bridge_ms, amd=AmdParams(settings.amd))


def _int(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError("must be a whole number")
    return int(text)


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _int(text)
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value
    return parse


def _rate(text: str) -> int:
    value = _int(text)
    if value not in RATES:
        raise ValueError(f"must be one of {', '.join(map(str, RATES))}")
    return value


def _lang(text: str) -> str:
    """A short language code (ISO 639-1 or -2, e.g. en, fr); whether the model knows it is checked at the handshake."""
    value = text.lower()
    if not re.fullmatch(r"[a-z]{2,3}", value):
        raise ValueError("must be a short language code such as en or fr")
    return value


# Query key -> parser. Add a key here and a field of the same name to StreamParams.
QUERY_PARAMS: dict[str, Callable[[str], object]] = {
    "rate": _rate,
    "min_speech_ms": _int_in(100, 60000),
    "bridge_ms": _int_in(0, 5000),
    "lang": _lang,
}
AUTH_KEYS = ("token",)


def redact(target: str) -> str:
    """The request target with auth values masked, fit for a log line."""
    parts = urlsplit(target)
    if not parts.query:
        return target
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{k}={'***' if k in AUTH_KEYS else v}" for k, v in pairs)
    return f"{parts.path}?{query}"


def parse_call_uuid(segment: str) -> str:
    """The path's uuid in canonical form, or a 400 naming the bad value."""
    try:
        return str(uuid.UUID(segment))
    except ValueError:
        raise StreamRequestError(400, f"path segment {segment[:64]!r} is not a valid UUID; "
                                      "use /stream/<call-uuid>") from None


def check_token(expected: str | None, query_token: str | None, authorization: str | None) -> None:
    """Accept when no token is configured, else ``?token=`` or ``Authorization: [Bearer ]TOKEN``."""
    if expected is None:
        return
    given = query_token
    if given is None and authorization:
        given = authorization.removeprefix("Bearer ").strip()
    if given is None:
        raise StreamRequestError(401, "a token is required: add ?token=... or an Authorization header")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise StreamRequestError(403, "the token is wrong")


def parse_stream_request(target: str, settings: Settings,
                         headers: Mapping[str, str] | None = None) -> StreamParams:
    """Turn a request target (path + query) and headers into StreamParams, or raise StreamRequestError."""
    parts = urlsplit(target)
    if not parts.path.startswith(STREAM_PREFIX):
        raise StreamRequestError(404, f"no such path {parts.path[:80]!r}; streams connect to "
                                      f"{STREAM_PREFIX}<call-uuid>")
    call = parse_call_uuid(parts.path[len(STREAM_PREFIX):])
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                          max_num_fields=len(QUERY_PARAMS) + len(AUTH_KEYS) + len(QUERY_KEYS))
    except ValueError as exc:
        raise StreamRequestError(400, f"malformed query string: {exc}") from None
    values: dict[str, object] = {}
    auth: dict[str, str] = {}
    amd_query: dict[str, str] = {}
    for key, text in pairs:
        if key in values or key in auth or key in amd_query:
            raise StreamRequestError(400, f"query parameter {key!r} is given twice")
        if key in AUTH_KEYS:
            auth[key] = text
            continue
        if key in QUERY_KEYS:
            amd_query[key] = text
            continue
        parser = QUERY_PARAMS.get(key)
        if parser is None:
            known = ", ".join([*QUERY_PARAMS, *AUTH_KEYS, *QUERY_KEYS])
            raise StreamRequestError(400, f"unknown query parameter {key[:40]!r}; known: {known}")
        try:
            values[key] = parser(text)
        except ValueError as exc:
            raise StreamRequestError(400, f"query parameter {key}={text[:40]!r}: {exc}") from None
    check_token(settings.audio_server.token, auth.get("token"),
                (headers or {}).get("Authorization"))
    try:
        values["amd"] = AmdParams.from_query(amd_query, settings.amd)
    except ValueError as exc:
        raise StreamRequestError(400, str(exc)) from None
    return dataclasses.replace(StreamParams.defaults(call, settings), **values)
