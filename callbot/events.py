"""The audio event schema (DESIGN section 2, a contract), defined once and serialised in one place.

Pipeline stages return these dataclasses with ``t`` in stream seconds. The server adds the call
uuid when it serialises them; the robot parses the same text back with :func:`parse_event`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AudioEvent:
    """Base of every event: ``t`` is the event's stream time in seconds."""

    type: ClassVar[str] = ""
    t: float


@dataclass(frozen=True)
class SpeechStarted(AudioEvent):
    """Speech began; ``t`` is the onset, dated to the first voiced frame."""

    type: ClassVar[str] = "speech_started"


@dataclass(frozen=True)
class SpeechShort(AudioEvent):
    """An utterance ended before it was long enough to be a barge-in."""

    type: ClassVar[str] = "speech_short"
    duration_ms: int


@dataclass(frozen=True)
class BargeIn(AudioEvent):
    """The caller has talked over the robot for ``duration_ms``; ``t`` is the decision time."""

    type: ClassVar[str] = "barge_in"
    onset_s: float
    duration_ms: int


@dataclass(frozen=True)
class SpeechStopped(AudioEvent):
    """Speech ended; ``t`` is the end of the last voiced frame."""

    type: ClassVar[str] = "speech_stopped"
    duration_ms: int


@dataclass(frozen=True)
class Partial(AudioEvent):
    """A provisional transcript of the segment that started at ``start_s``."""

    type: ClassVar[str] = "partial"
    text: str
    start_s: float


@dataclass(frozen=True)
class Final(AudioEvent):
    """The transcript of a finished segment."""

    type: ClassVar[str] = "final"
    text: str
    start_s: float
    end_s: float
    avg_logprob: float
    no_speech_prob: float


@dataclass(frozen=True)
class StreamGap(AudioEvent):
    """Stream time skipped: the switch sent nothing (pause, or frames dropped) for ``missing_ms``."""

    type: ClassVar[str] = "stream_gap"
    missing_ms: int


@dataclass(frozen=True)
class Amd(AudioEvent):
    """Answering-machine decision, once per call."""

    type: ClassVar[str] = "amd"
    result: str  # human | machine | notsure
    cause: str
    decided_at_s: float


@dataclass(frozen=True)
class Beep(AudioEvent):
    """A voicemail beep ended at ``t``."""

    type: ClassVar[str] = "beep"
    freq_hz: float
    duration_ms: int


@dataclass(frozen=True)
class Error(AudioEvent):
    """The stream failed or rejected input; ``code`` is stable, ``message`` is for people.

    Codes that close the stream: ``idle_timeout``, ``rate_limited`` (audio too far ahead of real
    time), ``message_too_large``, ``too_many_streams``, ``internal_error``. Codes after which it
    goes on: ``bad_marker`` (a playback marker refused), ``stt_language_unsupported``.
    """

    type: ClassVar[str] = "error"
    code: str
    message: str


EVENT_TYPES: dict[str, type[AudioEvent]] = {
    cls.type: cls
    for cls in (SpeechStarted, SpeechShort, BargeIn, SpeechStopped, Partial, Final, StreamGap, Amd, Beep, Error)
}


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def to_json(event: AudioEvent, call: str) -> str:
    """Serialise as one compact JSON object: ``{"v":1,"type":T,"call":UUID,"t":S,...}``."""
    body: dict[str, Any] = {"v": SCHEMA_VERSION, "type": event.type, "call": call}
    for f in dataclasses.fields(event):
        body[f.name] = _round(getattr(event, f.name))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class EventParseError(ValueError):
    """Text that is not an audio event of this schema."""


def parse_event(text: str) -> tuple[str, AudioEvent]:
    """Parse a text frame back into ``(call_uuid, event)``; raises EventParseError on anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EventParseError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != SCHEMA_VERSION:
        raise EventParseError(f"not a v{SCHEMA_VERSION} audio event: {text[:80]!r}")
    cls = EVENT_TYPES.get(data.get("type", ""))
    if cls is None:
        raise EventParseError(f"unknown event type {data.get('type')!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    try:
        return str(data["call"]), cls(**{n: data[n] for n in names})
    except (KeyError, TypeError) as exc:
        raise EventParseError(f"{cls.type}: missing or bad field {exc}") from None
