"""What the robot and the audio server share about a stream: its URL, and the playback markers sent in it.

DESIGN section 2. The robot builds the URL that mod_audio_stream dials and the markers it sends
with ``uuid_audio_stream <uuid> send_text``; the audio server parses both. Each is written here
once, so the two sides cannot drift:

- ``ws://HOST:PORT/stream/<uuid>?rate=..&min_speech_ms=..&bridge_ms=..[&amd=on][&amd_<name>=ms]
  [&lang=..][&answered_ago_ms=..][&replay=1][&token=..]``. A query value takes exactly the values of
  the setting it overrides (:func:`callbot.config.coerce_setting`: the same coercion and range as the
  settings loader); an unknown key is refused, naming it. ``answered_ago_ms`` (no setting: an int,
  0..``ANSWERED_AGO_LIMIT.hi``, coerced as settings are) is how long before the start command the call
  was answered, in call time: where the stream's sample 0 lies after the answer, so the AMD times
  its rules from the answer (docs/amd.md, "Late streams").
- ``{"type":"playback","state":"start","file":F,"text":T}`` and
  ``{"type":"playback","state":"stop"|"pause"|"resume"}``, compact JSON. ``send_text`` strips
  ``'`` and eats backslashes on the way (wire facts 1.1), so no value may hold ``'``, ``\\`` or ``"``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from callbot.config import ConfigError, Limit, Settings, coerce, coerce_setting

STREAM_PREFIX = "/stream/"

# mod_amd timings a call may set for itself with ``amd_<name>=<ms>`` (a count for the words).
AMD_URL_TIMINGS = ("initial_silence", "greeting", "after_greeting_silence", "total_analysis_time",
                   "min_word_length", "between_words_silence", "maximum_number_of_words", "maximum_word_length")
AMD_PREFIX = "amd_"

# URL key -> the setting (section, field) whose type and range it takes.
QUERY_SETTINGS: dict[str, tuple[str, str]] = {
    "rate": ("robot", "stream_rate"),
    "min_speech_ms": ("bargein", "min_speech_ms"),
    "bridge_ms": ("bargein", "bridge_ms"),
    "amd": ("amd", "enabled"),
    **{AMD_PREFIX + name: ("amd", name) for name in AMD_URL_TIMINGS},
    "lang": ("stt", "language"),
}
FLAG_KEYS = ("replay",)  # booleans of the stream itself, not settings
AUTH_KEYS = ("token",)
# Facts of the call, not settings: key -> its limit (an int, coerced as settings are).
ANSWERED_AGO_KEY = "answered_ago_ms"
ANSWERED_AGO_LIMIT = Limit(lo=0, hi=60000)  # past a minute every AMD timing (at most 60000 ms) has run out
CALL_KEYS: dict[str, Limit] = {ANSWERED_AGO_KEY: ANSWERED_AGO_LIMIT}
QUERY_KEYS = (*QUERY_SETTINGS, *CALL_KEYS, *FLAG_KEYS, *AUTH_KEYS)


class StreamUrlError(ValueError):
    """A stream request refused; ``status`` is the HTTP status to answer with, the message says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def canonical_uuid(value: str, what: str = "call uuid") -> str:
    """``value`` if it is a lower-case canonical UUID (what FreeSWITCH prints), else a ValueError."""
    try:
        if isinstance(value, str) and str(uuid.UUID(value)) == value:
            return value
    except ValueError:
        pass
    raise ValueError(f"{what} {value!r} is not a lower-case UUID like 0f8fad5b-d9cb-469f-a165-70867728950e")


@dataclass(frozen=True)
class StreamQuery:
    """A stream's URL query. ``None`` (or an empty ``amd_timings``) leaves the server's own setting."""

    rate: int | None = None
    min_speech_ms: int | None = None
    bridge_ms: int | None = None
    amd: bool | None = None  # amd=on|off
    amd_timings: Mapping[str, int] = field(default_factory=dict)  # name (without amd_) -> ms
    lang: str | None = None
    answered_ago_ms: int | None = None  # the answer, this long before the stream's sample 0 (None: not said, 0)
    replay: bool = False  # a replayed call, faster than real time: the server's higher cap (needs the token)
    token: str | None = None

    @classmethod
    def for_robot(cls, settings: Settings, lang: str | None = None,
                  answered_ago_ms: int | None = None) -> "StreamQuery":
        """What the robot asks for: its stream rate and barge-in settings; ``amd=on`` when it acts on AMD, so the
        verdict never depends on the server's default; ``lang`` is the scenario's language; ``answered_ago_ms``
        how long before this start command the call was answered (its first stream; clipped to the limit);
        ``replay`` when the switch runs faster than real time (``robot.speed``); the audio server's token."""
        if answered_ago_ms is not None:
            answered_ago_ms = min(max(0, answered_ago_ms), int(ANSWERED_AGO_LIMIT.hi or 0))
        return cls(rate=settings.robot.stream_rate, min_speech_ms=settings.bargein.min_speech_ms,
                   bridge_ms=settings.bargein.bridge_ms, amd=True if settings.robot.act_on_amd else None,
                   lang=lang or None, answered_ago_ms=answered_ago_ms, replay=settings.robot.speed != 1.0,
                   token=settings.audio_server.token)

    def pairs(self) -> list[tuple[str, str]]:
        """The query's ``(key, text)`` pairs, in URL order; each value checked as the server will check it."""
        values: dict[str, Any] = {"rate": self.rate, "min_speech_ms": self.min_speech_ms, "bridge_ms": self.bridge_ms,
                                  "amd": self.amd}
        values.update({AMD_PREFIX + name: ms for name, ms in self.amd_timings.items()})
        values["lang"] = self.lang
        out: list[tuple[str, str]] = []
        for key, value in values.items():
            if value is None:
                continue
            if key not in QUERY_SETTINGS:
                raise ValueError(f"stream URL: no such key {key!r}; AMD timings are {', '.join(AMD_URL_TIMINGS)}")
            try:
                checked = coerce_setting(*QUERY_SETTINGS[key], value, f"stream URL {key}")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            out.append((key, _text(checked)))
        if self.answered_ago_ms is not None:
            out.append((ANSWERED_AGO_KEY, str(call_fact(ANSWERED_AGO_KEY, self.answered_ago_ms, "stream URL"))))
        if self.replay:
            out.append(("replay", "1"))
        if self.token:
            out.append(("token", self.token))
        return out


def call_fact(key: str, value: Any, where: str) -> int:
    """A call fact's value (``CALL_KEYS``) as an int in its range, else ValueError (ConfigError) naming ``where``."""
    typed = coerce(value, int, f"{where} {key}")
    problem = CALL_KEYS[key].problem(typed)
    if problem:
        raise ConfigError(f"{where} {key}: {typed!r} {problem}")
    return typed


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def stream_url(base: str, call_uuid: str, query: StreamQuery) -> str:
    """``base/stream/<uuid>?<query>``: the URL mod_audio_stream dials (``base`` is ``ws://host:port``)."""
    text = urlencode(query.pairs())
    return f"{base.rstrip('/')}{STREAM_PREFIX}{canonical_uuid(call_uuid)}" + (f"?{text}" if text else "")


def robot_stream_url(base: str, call_uuid: str, settings: Settings, lang: str | None = None,
                     answered_ago_ms: int | None = None) -> str:
    """The robot's stream URL for a call: :meth:`StreamQuery.for_robot` under ``base``."""
    return stream_url(base, call_uuid, StreamQuery.for_robot(settings, lang, answered_ago_ms))


def parse_stream_target(target: str) -> tuple[str, StreamQuery]:
    """A request target (``/stream/<uuid>?...``) as ``(canonical call uuid, StreamQuery)``, or StreamUrlError."""
    parts = urlsplit(target)
    if not parts.path.startswith(STREAM_PREFIX):
        raise StreamUrlError(404, f"no such path {parts.path[:80]!r}; streams connect to {STREAM_PREFIX}<call-uuid>")
    segment = parts.path[len(STREAM_PREFIX):]
    try:
        call = str(uuid.UUID(segment))
    except ValueError:
        raise StreamUrlError(400, f"path segment {segment[:64]!r} is not a valid UUID; "
                                  f"use {STREAM_PREFIX}<call-uuid>") from None
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                          max_num_fields=len(QUERY_KEYS))
    except ValueError as exc:
        raise StreamUrlError(400, f"malformed query string: {exc}") from None
    values: dict[str, Any] = {}
    timings: dict[str, int] = {}
    seen: set[str] = set()
    for key, text in pairs:
        if key in seen:
            raise StreamUrlError(400, f"query parameter {key[:40]!r} is given twice")
        seen.add(key)
        if key == "lang":
            text = text.lower()  # language codes are case-blind: FR is fr
        try:
            if key in QUERY_SETTINGS:
                value = coerce_setting(*QUERY_SETTINGS[key], text, f"query parameter {key}")
                if key.startswith(AMD_PREFIX):
                    timings[key[len(AMD_PREFIX):]] = value
                else:
                    values[key] = value
            elif key in CALL_KEYS:
                values[key] = call_fact(key, text, "query parameter")
            elif key in FLAG_KEYS:
                values[key] = coerce(text, bool, f"query parameter {key}")
            elif key in AUTH_KEYS:
                values[key] = text
            else:
                raise StreamUrlError(400, f"unknown query parameter {key[:40]!r}; known: {', '.join(QUERY_KEYS)}")
        except ConfigError as exc:
            raise StreamUrlError(400, str(exc)[:300]) from None
    return call, StreamQuery(**values, amd_timings=timings)


# -- playback markers ----------------------------------------------------------------------------

MARKER_TYPE = "playback"
PLAYBACK_STATES = ("start", "stop", "pause", "resume")
_UNSAFE = re.compile(r"['\\\"\x00-\x1f\x7f]")
MAX_FILE_CHARS = 1024


class MarkerError(ValueError):
    """A playback marker that must not be sent (robot side) or is refused (server side); the message says why."""


def check_prompt_file(path: Any) -> str:
    """``path`` if it is a prompt file the marker may name, else MarkerError naming the problem.

    It is a POSIX path relative to the prompts directory (``en/16000/greeting.wav``): not
    absolute, no ``..`` (nor empty or ``.``) segment, and none of ``'``, ``\\``, ``"`` or control
    characters, which send_text would mangle.
    """
    if not isinstance(path, str) or not path:
        raise MarkerError(f"prompt file {path!r}: give a path relative to the prompts directory ([prompts] dir)")
    if len(path) > MAX_FILE_CHARS:
        raise MarkerError(f"prompt file {path[:40]!r}...: longer than {MAX_FILE_CHARS} characters")
    bad = _UNSAFE.search(path)
    if bad:
        raise MarkerError(f"prompt file {path!r}: contains {bad.group()!r}; send_text cannot carry ', \\ or \" "
                          "or control characters; rename the file")
    if path.startswith("/"):
        raise MarkerError(f"prompt file {path!r}: an absolute path; give it relative to the prompts directory "
                          "([prompts] dir), e.g. en/16000/greeting.wav")
    segments = path.split("/")
    if ".." in segments:
        raise MarkerError(f"prompt file {path!r}: '..' leaves the prompts directory; "
                          "give a path inside it, e.g. en/16000/greeting.wav")
    if "" in segments or "." in segments:
        raise MarkerError(f"prompt file {path!r}: empty or '.' path segment; write it as lang/rate/name.wav")
    return path


def clean_text(text: str) -> str:
    """The prompt's words as a marker may carry them: ``'``, ``\\``, ``"`` and control characters become spaces
    (send_text would strip or eat them), runs of spaces become one."""
    return " ".join(_UNSAFE.sub(" ", text).split())


@dataclass(frozen=True)
class PlaybackMarker:
    """One playback marker. ``file`` and ``text`` belong to ``start`` only; ``text`` is the decoder's context."""

    state: str
    file: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.state not in PLAYBACK_STATES:
            raise MarkerError(f"playback state {self.state!r}: use one of {', '.join(PLAYBACK_STATES)}")
        if self.state == "start":
            check_prompt_file(self.file)
            if self.text is not None and (not isinstance(self.text, str) or _UNSAFE.search(self.text)):
                raise MarkerError(f"playback text {self.text!r}: build it with PlaybackMarker.start, which cleans it")
        elif self.file is not None or self.text is not None:
            raise MarkerError(f"a {self.state!r} marker has no file or text; only 'start' names the prompt")

    @classmethod
    def start(cls, file: str, text: str | None = None) -> "PlaybackMarker":
        """The marker for PLAYBACK_START of ``file``; ``text`` (the prompt's words) is cleaned, and left out when empty."""
        return cls("start", file, clean_text(text or "") or None)

    def to_json(self) -> str:
        """Compact JSON, keys in contract order: ``{"type":"playback","state":..[,"file":..][,"text":..]}``."""
        body: dict[str, str] = {"type": MARKER_TYPE, "state": self.state}
        if self.file is not None:
            body["file"] = self.file
        if self.text:
            body["text"] = self.text
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


ANSWERED_TYPE = "answered"


@dataclass(frozen=True)
class AnsweredMarker:
    """``{"type":"answered","ago_ms":N}``: the call was answered N ms before the stream's sample 0, by the
    switch's own stamps (CHANNEL_ANSWER to MEDIA_BUG_START). The URL's ``answered_ago_ms`` is the robot's
    figure from before the switch ran the start command; on a busy switch the command runs later, and this
    marker corrects it, so the AMD times its rules from the answer all the same."""

    ago_ms: int

    def __post_init__(self) -> None:
        problem = ANSWERED_AGO_LIMIT.problem(self.ago_ms) if type(self.ago_ms) is int else "must be an integer"
        if problem:
            raise MarkerError(f"answered marker: ago_ms {self.ago_ms!r} {problem}")

    def to_json(self) -> str:
        return json.dumps({"type": ANSWERED_TYPE, "ago_ms": self.ago_ms}, separators=(",", ":"))


Marker = PlaybackMarker | AnsweredMarker


def marker_command(call_uuid: str, marker: Marker) -> str:
    """``uuid_audio_stream <uuid> send_text '<json>'``: single-quoted so spaces survive (wire facts 1.1)."""
    payload = marker.to_json()
    assert not any(ch in payload for ch in "'\\"), payload  # guaranteed by the checks above
    return f"uuid_audio_stream {canonical_uuid(call_uuid)} send_text '{payload}'"


def parse_marker(text: str) -> Marker | None:
    """The robot's marker in a text frame; None when the frame is not one (metadata, other JSON).

    A frame whose ``type`` is ``playback`` or ``answered`` but that is malformed (unknown state or key, a file
    that is absolute or has ``..``, a value of the wrong type) raises MarkerError saying what is wrong.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == ANSWERED_TYPE:
        unknown = sorted(set(data) - {"type", "ago_ms"})
        if unknown:
            raise MarkerError(f"answered marker: unknown key {unknown[0][:40]!r}; keys are type, ago_ms")
        return AnsweredMarker(data.get("ago_ms"))  # type: ignore[arg-type]  # checked in __post_init__
    if not isinstance(data, dict) or data.get("type") != MARKER_TYPE:
        return None
    unknown = sorted(set(data) - {"type", "state", "file", "text"})
    if unknown:
        raise MarkerError(f"playback marker: unknown key {unknown[0][:40]!r}; keys are type, state, file, text")
    state, file, words = data.get("state"), data.get("file"), data.get("text")
    if not isinstance(state, str):
        raise MarkerError(f"playback marker: state {state!r}: use one of {', '.join(PLAYBACK_STATES)}")
    if words is not None and not isinstance(words, str):
        raise MarkerError(f"playback marker: text must be a string, got {type(words).__name__}")
    if state == "start":
        if file is None:
            raise MarkerError("playback marker: a 'start' marker must name its file")
        return PlaybackMarker(state, check_prompt_file(file), clean_text(words or "") or None)
    return PlaybackMarker(state, file, words)
