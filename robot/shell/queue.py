"""The per-call event queue: barge-in and hang-up jump ahead; nothing slow ever sits in front of them."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import gevent.event

from callbot.events import EventParseError, parse_event
from callbot.esl.protocol import EslEvent

# Kinds of item that must reach the call greenlet before anything else that is waiting.
URGENT_KINDS = frozenset({"barge_in", "hangup"})
HANGUP_EVENTS = ("CHANNEL_HANGUP", "CHANNEL_GONE")  # CHANNEL_GONE: synthetic, the call ended during an ESL outage


@dataclass(frozen=True)
class CallItem:
    """One thing that happened to a call: ``kind`` says what, ``data`` carries it, ``t_wall`` when it arrived."""

    kind: str
    data: Any = None
    t_wall: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class QueueFull(RuntimeError):
    """The urgent lane overflowed: something is badly stuck; the call should end."""


class CallQueue:
    """Two bounded lanes, urgent first. Filled by the ESL dispatcher, drained by the call greenlet.

    Both sides live in the robot's gevent hub, so ``put`` never blocks (it must not stall the
    dispatcher): when the normal lane is full its oldest item is dropped and counted, which loses
    a partial transcript at worst. The urgent lane holds barge-in and hang-up only; a few can ever
    exist per call, so overflowing it raises.
    """

    def __init__(self, maxsize: int = 256, urgent_max: int = 32) -> None:
        if maxsize < 1 or urgent_max < 1:
            raise ValueError(f"queue sizes must be >= 1, got maxsize={maxsize} urgent_max={urgent_max}")
        self._urgent: collections.deque[CallItem] = collections.deque()
        self._normal: collections.deque[CallItem] = collections.deque()
        self._maxsize = maxsize
        self._urgent_max = urgent_max
        self._ready = gevent.event.Event()
        self.dropped = 0

    def put(self, item: CallItem) -> None:
        """Add an item; urgent kinds go ahead of everything already waiting. Never blocks."""
        if item.kind in URGENT_KINDS:
            if len(self._urgent) >= self._urgent_max:
                raise QueueFull(f"urgent lane full ({self._urgent_max}) putting {item.kind}")
            self._urgent.append(item)
        else:
            if len(self._normal) >= self._maxsize:
                self._normal.popleft()
                self.dropped += 1
            self._normal.append(item)
        self._ready.set()

    def get(self, timeout: float | None = None) -> CallItem | None:
        """The next item, urgent first; None when ``timeout`` (wall seconds) passes first."""
        while not (self._urgent or self._normal):
            self._ready.clear()
            if not self._ready.wait(timeout):
                return None
        item = self._urgent.popleft() if self._urgent else self._normal.popleft()
        return item

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)


def classify(event: EslEvent, call_uuid: str, now: float) -> CallItem:
    """Turn one routed ESL event into a queue item: audio events parsed, barge-in and hang-up marked urgent.

    Audio text that is not our schema, or names another call, becomes ``audio_text`` (logged, ignored).
    """
    if event.key == "mod_audio_stream::json":
        try:
            call, audio = parse_event(event.body or "")
        except EventParseError as exc:
            return CallItem("audio_text", (event, str(exc)), now)
        if call != call_uuid:
            return CallItem("audio_text", (event, f"event for call {call}"), now)
        return CallItem("barge_in" if audio.type == "barge_in" else "audio", audio, now)
    if event.name in HANGUP_EVENTS:
        return CallItem("hangup", event, now)
    return CallItem("switch", event, now)
