"""In-process runs on simswitch's clock (a replay, a simulated campaign): the clock stands still while a party
has work it has not done yet.

At speed N every wall millisecond a party takes to react is N ms of call time, so a loaded machine
would change what happens. Two holds keep such a run in call time:

- ``Pacer``: from the moment simswitch queues an ESL event until the robot's calls have handled
  everything they have (and sent their commands), as the decode hold does for speech recognition;
  each call's next deadline is a barrier the clock does not pass until the call has acted on it.
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


# Wall seconds before a robot hold nobody lets go (an event no call takes) is dropped. Long enough that a
# loaded machine's slow reaction is still waited for (a dropped hold lets call time pass), short enough
# that an event nobody takes costs little: in a replay none goes untaken.
ROBOT_MAX_HOLD_S = 0.2


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
    """The calls' time on simswitch's clock (robot.shell.session.CallTime, one view per call): held while any
    call is busy or an ESL event is on its way to one, stopped at each call's next deadline until it has acted.

    A replay has one call; a simulated campaign has many. :meth:`call` gives each its own view: its ``busy``
    counts for the hold (on while ANY call is busy), its ``deadline`` is a barrier of its own. simswitch's
    ``on_event_queued`` hook is :meth:`event_queued`: an event queued for the robot holds the clock until a
    call takes it (each ``busy(True)`` takes one); one that no call takes is let go by the watchdog.
    """

    def __init__(self, clock: SimClock, max_hold_s: float = ROBOT_MAX_HOLD_S) -> None:
        super().__init__(clock, max_hold_s)
        self._queued = 0  # events simswitch queued for the robot that no call has taken yet
        self._busy: set[PacedCall] = set()

    def call(self, busy: bool = False) -> "PacedCall":
        """A new call's time. ``busy=True``: a call about to be placed, holding the clock from now until the
        switch's first event for it (CHANNEL_CREATE, or the originate's BACKGROUND_JOB) has reached it, so the
        originate reaches the switch at the instant it was decided (until then, going idle does not count)."""
        view = PacedCall(self, fresh=busy)
        if busy:
            self._mark(view, True, took_event=False)
        return view

    def event_queued(self) -> None:
        """simswitch's hook (its loop): an event is on its way to the robot."""
        with self._lock:
            self._queued += 1
            self._apply(self._count())

    @property
    def calls_busy(self) -> int:
        return len(self._busy)

    def _mark(self, view: "PacedCall", busy: bool, took_event: bool = True) -> None:
        with self._lock:
            before = (self._queued, len(self._busy))
            if busy:
                self._busy.add(view)
                if took_event:
                    self._queued = max(0, self._queued - 1)
            else:
                self._busy.discard(view)
            if (self._queued, len(self._busy)) != before:  # an idle call telling it again is no progress
                self._apply(self._count())

    def _count(self) -> int:
        return self._queued + len(self._busy)

    def _set(self, pending: int) -> None:
        """The watchdog's and the exit's reset: nothing queued, no call busy."""
        with self._lock:
            if not pending:
                self._queued = 0
                self._busy.clear()
            self._apply(pending)


class PacedCall:
    """One call's view of a :class:`Pacer` (a CallTime): the shared clock, its own busy flag and barrier."""

    def __init__(self, pacer: Pacer, fresh: bool = False) -> None:
        self.pacer = pacer
        self.clock = pacer.clock
        self._fresh = fresh  # placed, and no event from the switch yet: busy until one comes

    def now(self) -> float:
        return self.clock.now()

    def wall_delay(self, call_t: float) -> float:
        return self.clock.wall_delay(call_t)

    def busy(self, busy: bool = True) -> None:
        """From any thread: True when an event waits for the call, False when it has handled everything."""
        if busy:
            self._fresh = False
        elif self._fresh:
            return
        self.pacer._mark(self, busy)

    def deadline(self, call_t: float | None) -> None:
        """The call's next deadline, a barrier (None: it has none, or it has ended, which ends ``fresh`` too)."""
        if call_t is None:
            self._fresh = False
        self.clock.set_barrier(self, call_t)


class MediaLockstep(_Hold):
    """Held while media work is in flight between simswitch and an in-process audio server."""

    def __init__(self, clock: SimClock, max_hold_s: float = 0.5) -> None:
        super().__init__(clock, max_hold_s)

    def work(self, delta: int) -> None:
        """+n: n messages on their way; -1: one handled (simswitch's and the audio server's hooks)."""
        self._add(delta)


class DecodeHold(_Hold):
    """Held while the in-process speech engine decodes (its ``on_busy``); a decode that never ends is let go."""

    def __init__(self, clock: SimClock, max_hold_s: float = 30.0) -> None:
        super().__init__(clock, max_hold_s)

    def busy(self, busy: bool) -> None:
        self._set(1 if busy else 0)
