"""Replays only: simswitch's clock stands still while a party has work it has not done yet.

In a replay at speed N every wall millisecond a party takes to react is N ms of call time, so
a loaded machine would change what happens. Two holds keep a replay in call time:

- ``Pacer``: from the moment simswitch queues an ESL event until the robot's call has handled
  everything it has (and sent its commands), as the decode hold does for speech recognition; the
  robot's next deadline is a barrier the clock does not pass until the robot has acted on it.
- ``MediaLockstep``: from each binary message simswitch sends to the audio server until the server
  has handled it, and from each text frame the server sends until simswitch has it, so a barge-in
  reaches the switch at the media tick after the audio that caused it, at any speed.

A hold older than ``max_hold_s`` (wall) is let go, so work that never completes (an event no call
takes, a frame lost with its connection) cannot stop the clock; ``expired`` counts them.
"""

from __future__ import annotations

import threading
import time

from callbot.simswitch.clock import SimClock


class _Hold:
    """One hold on ``clock`` while ``pending`` is not zero, let go by a watchdog after ``max_hold_s`` idle."""

    def __init__(self, clock: SimClock, max_hold_s: float) -> None:
        self.clock = clock
        self.max_hold_s = max_hold_s
        self._lock = threading.Lock()
        self._pending = 0
        self._since: float | None = None  # wall time of the last change while held
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name=type(self).__name__.lower(), daemon=True)
        self.expired = 0

    def __enter__(self) -> "_Hold":
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watch.join()
        self._set(0)

    def _set(self, pending: int) -> None:
        with self._lock:
            self._apply(pending)

    def _add(self, delta: int) -> None:
        with self._lock:
            self._apply(self._pending + delta)

    def _apply(self, pending: int) -> None:
        """Under the lock: hold on the first pending piece of work, release after the last."""
        pending = max(0, pending)
        if pending and not self._pending:
            self.clock.hold()
        elif self._pending and not pending:
            self.clock.release()
        self._pending = pending
        self._since = time.monotonic() if pending else None

    def _watchdog(self) -> None:
        while not self._stop.wait(self.max_hold_s / 2):
            with self._lock:
                stale = self._since is not None and time.monotonic() - self._since > self.max_hold_s
            if stale:
                self.expired += 1
                self._set(0)


class Pacer(_Hold):
    """The robot's call time in a replay (robot.shell.session.CallTime): simswitch's clock, held while
    the robot is busy, stopped at the robot's next deadline until it has acted on it."""

    def __init__(self, clock: SimClock, max_hold_s: float = 0.05) -> None:
        super().__init__(clock, max_hold_s)

    def now(self) -> float:
        return self.clock.now()

    def wall_delay(self, call_t: float) -> float:
        return self.clock.wall_delay(call_t)

    def busy(self, busy: bool = True) -> None:
        """From any thread: True when an event waits for the robot (simswitch's hook), False when it is idle."""
        self._set(1 if busy else 0)

    def deadline(self, call_t: float | None) -> None:
        self.clock.set_barrier(self, call_t)


class MediaLockstep(_Hold):
    """Held while media work is in flight between simswitch and an in-process audio server."""

    def __init__(self, clock: SimClock, max_hold_s: float = 0.5) -> None:
        super().__init__(clock, max_hold_s)

    def work(self, delta: int) -> None:
        """+n: n messages on their way; -1: one handled (simswitch's and the audio server's hooks)."""
        self._add(delta)
