"""Turn a stream's handshake request (path, uuid, query, token) into validated StreamParams.

mod_audio_stream may send its metadata late or never, so everything a stream needs travels in
the URL (DESIGN section 2). The URL is parsed by :func:`callbot.stream.parse_stream_target`,
the one parser of what the robot's :func:`callbot.stream.stream_url` builds; this module adds
the server's side: its settings as defaults, and the token.
"""

from __future__ import annotations

import dataclasses
import hmac
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import parse_qsl, urlsplit

from callbot.audio_format import DEFAULT_RATE
from callbot.audio_server.amd.detector import AmdParams
from callbot.config import Settings
from callbot.stream import AUTH_KEYS, StreamQuery, StreamUrlError, parse_stream_target

StreamRequestError = StreamUrlError  # every refusal at the handshake: a status and what to fix


@dataclass(frozen=True)
class StreamParams:
    """What one stream was asked for; every field is validated before the upgrade."""

    call: str  # canonical lower-case UUID from the path
    rate: int
    min_speech_ms: int
    bridge_ms: int
    amd: AmdParams = field(default_factory=AmdParams)  # the server's amd settings with amd=, amd_<name>=,
    # answered_ago_ms= applied
    lang: str | None = None  # the callee's language for speech recognition; None: stt.language
    replay: bool = False  # replay=1 with a valid token: audio may run audio_server.replay_max_speed x real time

    @classmethod
    def defaults(cls, call: str, settings: Settings) -> "StreamParams":
        """Parameters for ``call`` when the URL gives none (used by tests and the bench)."""
        return cls(call=call, rate=DEFAULT_RATE, min_speech_ms=settings.bargein.min_speech_ms,
                   bridge_ms=settings.bargein.bridge_ms, amd=AmdParams(settings.amd))

    @classmethod
    def from_query(cls, call: str, query: StreamQuery, settings: Settings) -> "StreamParams":
        """The server's settings with the stream's query applied."""
        amd = settings.amd if query.amd is None else dataclasses.replace(settings.amd, enabled=query.amd)
        base = cls.defaults(call, settings)
        return cls(call=call, rate=query.rate or base.rate,
                   min_speech_ms=base.min_speech_ms if query.min_speech_ms is None else query.min_speech_ms,
                   bridge_ms=base.bridge_ms if query.bridge_ms is None else query.bridge_ms,
                   amd=AmdParams(dataclasses.replace(amd, **query.amd_timings),
                                 answered_ago_ms=query.answered_ago_ms or 0), lang=query.lang,
                   replay=query.replay)


def redact(target: str) -> str:
    """The request target with auth values masked, fit for a log line."""
    parts = urlsplit(target)
    if not parts.query:
        return target
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{k}={'***' if k in AUTH_KEYS else v}" for k, v in pairs)
    return f"{parts.path}?{query}"


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
    call, query = parse_stream_target(target)
    cfg = settings.audio_server
    check_token(cfg.token, query.token, (headers or {}).get("Authorization"))
    if query.replay and cfg.token is None and cfg.insecure_no_token:
        raise StreamRequestError(403, "replay=1 needs the server's token, and this server has none "
                                      "(audio_server.insecure_no_token); set audio_server.token")
    try:
        return StreamParams.from_query(call, query, settings)
    except ValueError as exc:
        raise StreamRequestError(400, str(exc)) from None
