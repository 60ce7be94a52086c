"""Replays only: simswitch's clock stands still while the robot has an event it has not acted on yet.

In a replay at speed N every wall millisecond the robot takes to react is N ms of call time, so
a loaded machine would change what happens. The pacer holds the virtual clock from the moment
simswitch queues an ESL event until the robot's call has handled everything it has (and sent its
commands), as the decode hold does for speech recognition. A hold older than ``max_hold_s`` (wall)
is let go, so an event that no call ever takes (another call's, a job reply) cannot stop the clock.
"""

from __future__ import annotations

import threading
import time

from callbot.simswitch.clock import SimClock


class Pacer:
    """One hold on ``clock`` while the robot is busy; ``busy()`` and ``idle()`` from any thread."""

    def __init__(self, clock: SimClock, max_hold_s: float = 0.05) -> None:
        self.clock = clock
        self.max_hold_s = max_hold_s
        self._lock = threading.Lock()
        self._since: float | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="pacer", daemon=True)
        self.expired = 0  # holds given up by the watchdog

    def __enter__(self) -> "Pacer":
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.join()
        self.idle()

    def busy(self) -> None:
        with self._lock:
            if self._since is None:
                self.clock.hold()
                self._since = time.monotonic()

    def idle(self) -> None:
        with self._lock:
            if self._since is not None:
                self.clock.release()
                self._since = None

    def _watchdog(self) -> None:
        while not self._stop.wait(self.max_hold_s / 2):
            with self._lock:
                stale = self._since is not None and time.monotonic() - self._since > self.max_hold_s
            if stale:
                self.expired += 1
                self.idle()
