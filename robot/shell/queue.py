"""The per-call event queue: barge-in and hang-up jump ahead; nothing slow ever sits in front of them."""

from __future__ import annotations

import collections

import gevent.event

from callbot.events import BargeIn
from callbot.robot.call.events import HungUp

URGENT = (BargeIn, HungUp)  # by class: these reach the call before anything else that is waiting


class QueueFull(RuntimeError):
    """The urgent lane overflowed: something is badly stuck; the call should end."""


class CallQueue:
    """Two bounded lanes, urgent first. Filled by the ESL dispatcher, drained by the call's greenlet.

    Both sides live in the robot's gevent hub, so ``put`` never blocks (it must not stall the
    dispatcher): when the normal lane is full its oldest item is dropped and counted, which loses
    a partial transcript at worst. The urgent lane holds barge-ins and hang-ups only; a few can
    ever exist per call, so overflowing it raises.
    """

    def __init__(self, maxsize: int = 256, urgent_max: int = 32) -> None:
        if maxsize < 1 or urgent_max < 1:
            raise ValueError(f"queue sizes must be >= 1, got maxsize={maxsize} urgent_max={urgent_max}")
        self._urgent: collections.deque[object] = collections.deque()
        self._normal: collections.deque[object] = collections.deque()
        self._maxsize = maxsize
        self._urgent_max = urgent_max
        self._ready = gevent.event.Event()
        self.dropped = 0

    def put(self, event: object) -> None:
        """Add an event; urgent classes go ahead of everything already waiting. Never blocks."""
        if isinstance(event, URGENT):
            if len(self._urgent) >= self._urgent_max:
                raise QueueFull(f"urgent lane full ({self._urgent_max}) putting {type(event).__name__}")
            self._urgent.append(event)
        else:
            if len(self._normal) >= self._maxsize:
                self._normal.popleft()
                self.dropped += 1
            self._normal.append(event)
        self._ready.set()

    def get(self, timeout: float | None = None) -> object | None:
        """The next event, urgent first; None when ``timeout`` (wall seconds) passes first."""
        while not (self._urgent or self._normal):
            self._ready.clear()
            if not self._ready.wait(timeout):
                return None
        return self._urgent.popleft() if self._urgent else self._normal.popleft()

    def __len__(self) -> int:
        return len(self._urgent) + len(self._normal)
