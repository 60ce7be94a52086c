"""The emulator's clock: real time, or virtual time running ``speed`` times faster than the wall,
that an orchestrator can hold (stop) while something outside the call's time runs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime, timezone
from typing import AsyncIterator, Iterator

MEDIA_TICK_S = 0.020  # one media frame (ptime 20), the unit of all media work
HELD_POLL_S = 0.002  # while a hold or a barrier blocks it, a thread's sleeper looks again this often (wall s)


def epoch_of(instant: str) -> float:
    """``--start``: an ISO-8601 instant as epoch seconds (without a zone it is UTC)."""
    try:
        when = datetime.fromisoformat(instant.strip())
    except ValueError:
        raise ValueError(f"start {instant!r} is not an ISO-8601 instant (e.g. 2026-03-02T08:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class SimClock:
    """Virtual seconds since start: wall seconds elapsed, less the wall time spent held, x speed.

    Event timestamps use a *virtual epoch*: ``start_epoch_s`` (default: the wall epoch when the
    clock was made) plus virtual seconds, so differences between Event-Date-Timestamp values are
    call-time differences at any speed, and a campaign can run from a chosen instant.

    ``hold()``/``release()`` (any thread, re-entrant) stop virtual time: a replay holds it while
    the audio server decodes, so that a decode takes no call time and speed changes no decision.
    While held, ``now()`` stays put and no media tick runs; after the last release time goes on
    from where it stopped, with no jump.

    A *lockstep* run (an in-process replay, where every party tells the clock when it is busy) adds
    two things. Barriers (``set_barrier``): virtual times the clock does not pass until their owner
    moves them on (the next media tick, the robot's next deadline), so every party acts at the exact
    call time it asked for, however late its thread wakes. And catch-up (``catch_up=True``): time
    spent held is made up afterwards, as fast as the barriers let the parties go, so that the run
    as a whole keeps ``speed`` in effect and the holds cost no wall time in the end; ``lead_s`` (wall seconds)
    lets it also run that far ahead of the schedule, so a hold that comes late in a run (a decode near the
    end of a call) is paid from time banked before it instead of making the run late; ``restart_schedule``
    starts the schedule over (media starting after an idle stretch), so idle time banks nothing. ``free_run`` drops
    the speed limit: whenever nothing holds the clock it stands at the earliest barrier, so time that
    nobody waits through (the idle hours of a simulated campaign) takes no wall time at all.
    """

    def __init__(self, speed: float = 1.0, start_epoch_s: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self.speed = float(speed)
        self.catch_up = False
        self.lead_s = 0.0  # with catch_up: wall seconds the clock may be ahead of its schedule
        self.free_run = False  # lockstep without a speed limit: at once to the earliest barrier when nothing holds
        self._t0 = time.monotonic()
        self._epoch0_us = int(round((time.time() if start_epoch_s is None else start_epoch_s) * 1_000_000))
        self._lock = threading.Lock()
        self._holds = 0
        self._v = 0.0  # virtual time at the anchor ...
        self._wall = self._t0  # ... and the wall time of the anchor
        self._barriers: dict[object, float] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # ---- reading ----------------------------------------------------------------------------

    def now(self) -> float:
        """Virtual seconds since the clock started (frozen while held, never past a barrier)."""
        with self._lock:
            return self._now(time.monotonic())

    def _now(self, wall: float) -> float:
        if self._holds:
            return self._v
        v = self._v + (wall - self._wall) * self.speed
        if self.catch_up:
            v = max(v, (wall - self._t0 + self.lead_s) * self.speed)
        if self._barriers:
            earliest = min(self._barriers.values())
            if self.free_run:
                v = max(v, earliest)
            v = min(v, max(self._v, earliest))
        return v

    @property
    def held(self) -> bool:
        return self._holds > 0

    def epoch_us(self, virtual_t: float | None = None) -> int:
        """Microseconds of the virtual epoch at ``virtual_t`` (default: now)."""
        t = self.now() if virtual_t is None else virtual_t
        return self._epoch0_us + int(round(t * 1_000_000))

    # ---- stopping time ----------------------------------------------------------------------

    def _anchor(self, wall: float) -> None:
        """Start a new stretch from the current virtual time (so what follows never jumps back)."""
        self._v, self._wall = self._now(wall), wall

    def hold(self) -> None:
        """Stop virtual time until the matching :meth:`release` (re-entrant: a count)."""
        with self._lock:
            if self._holds == 0:
                self._anchor(time.monotonic())
            self._holds += 1

    def release(self) -> None:
        """Undo one :meth:`hold`; after the last one, time goes on from where it stopped."""
        with self._lock:
            if self._holds == 0:
                raise RuntimeError("SimClock.release() without a hold")
            self._holds -= 1
            if self._holds == 0:
                self._wall = time.monotonic()
                self._wake()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """``with clock.holding(): ...``: held for the block."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    def restart_schedule(self) -> None:
        """Start the catch-up schedule over from now: no lead banked and no held time owed so far."""
        with self._lock:
            wall = time.monotonic()
            self._anchor(wall)
            self._t0 = wall - self._v / self.speed

    def set_barrier(self, owner: object, virtual_t: float | None) -> None:
        """``owner``'s barrier: the clock does not pass ``virtual_t`` until it is moved on (None: removed).

        A barrier already behind the clock stops it where it is (time never goes back)."""
        with self._lock:
            if self._barriers.get(owner) == virtual_t:
                return
            self._anchor(time.monotonic())
            if virtual_t is None:
                self._barriers.pop(owner, None)
            else:
                self._barriers[owner] = virtual_t
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, future in waiters:
            if loop is here:  # a party on the waiter's own loop let go (an in-process audio server): no self-pipe
                loop.call_soon(_resolve, future)
                continue
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    # ---- waiting ----------------------------------------------------------------------------

    def wall_delay(self, virtual_t: float) -> float:
        """Wall seconds until ``virtual_t`` (0 if it has passed; a short poll while the clock is held)."""
        with self._lock:
            delay = self._wall_delay(virtual_t, time.monotonic())
        return HELD_POLL_S if delay is None else delay

    def _wall_delay(self, virtual_t: float, wall: float) -> float | None:
        """As :meth:`wall_delay`, but None while a hold or a barrier stands in the way."""
        v = self._now(wall)
        if v >= virtual_t - 1e-9:
            return 0.0
        if self._holds or (self._barriers and min(self._barriers.values()) < virtual_t - 1e-9):
            return None
        delay = (virtual_t - v) / self.speed
        if self.catch_up:  # the schedule may get there first
            delay = min(delay, max(0.0, self._t0 - self.lead_s + virtual_t / self.speed - wall))
        return delay

    async def sleep_until(self, virtual_t: float) -> None:
        """Sleep until the virtual deadline; absolute, so repeated use never drifts.

        Always yields to the loop, even when the deadline has passed, so a late media tick
        catching up never starves the sockets. While a hold or a barrier is in the way it waits
        to be woken by their release, polling at most every ``HELD_POLL_S``."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)
        while True:
            with self._lock:
                delay = self._wall_delay(virtual_t, time.monotonic())
                if delay == 0.0:
                    return
                future: asyncio.Future[None] | None = None
                if delay is None:
                    future = loop.create_future()
                    self._waiters.append((loop, future))
            if delay is not None:
                await asyncio.sleep(delay)
            else:
                assert future is not None
                timer = loop.call_later(HELD_POLL_S * 10, _resolve, future)
                try:
                    await future
                finally:
                    timer.cancel()

    @contextlib.asynccontextmanager
    async def at(self, virtual_t: float, barrier: bool) -> AsyncIterator[None]:
        """``async with clock.at(t, barrier): ...``: the block runs at virtual ``t``; with ``barrier`` (a lockstep
        run) the clock does not pass ``t`` until the block has run, however fast the media ticks go."""
        owner = object()
        if barrier:
            self.set_barrier(owner, virtual_t)
        try:
            await self.sleep_until(virtual_t)
            yield
        finally:
            if barrier:
                self.set_barrier(owner, None)

    async def sleep(self, virtual_s: float) -> None:
        """Sleep for a virtual duration."""
        await self.sleep_until(self.now() + virtual_s)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
