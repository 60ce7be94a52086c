"""The emulator's clock: real time, or virtual time running ``speed`` times faster than the wall,
that an orchestrator can hold (stop) while something outside the call's time runs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime, timezone
from typing import Iterator

MEDIA_TICK_S = 0.020  # one media frame (ptime 20), the unit of all media work
HELD_POLL_S = 0.002  # while the clock is held, sleepers look again this often (wall seconds)


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
    """Virtual seconds since start = wall seconds elapsed, less the wall time spent held, x speed.

    Event timestamps use a *virtual epoch*: ``start_epoch_s`` (default: the wall epoch when the
    clock was made) plus virtual seconds, so differences between Event-Date-Timestamp values are
    call-time differences at any speed, and a campaign can run from a chosen instant.

    ``hold()``/``release()`` (any thread, re-entrant) stop virtual time: a replay holds it while
    the audio server decodes, so that a decode takes no call time and speed changes no decision.
    While held, ``now()`` stays put and no media tick runs; after the last release time goes on
    from where it stopped, with no jump.
    """

    def __init__(self, speed: float = 1.0, start_epoch_s: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self.speed = float(speed)
        self._t0 = time.monotonic()
        self._epoch0_us = int(round((time.time() if start_epoch_s is None else start_epoch_s) * 1_000_000))
        self._lock = threading.Lock()
        self._holds = 0
        # (wall time the current hold began or None, wall seconds held before it): one tuple, swapped
        # whole, so that a reader in another thread never sees half of a release
        self._held: tuple[float | None, float] = (None, 0.0)

    def now(self) -> float:
        """Virtual seconds since the clock started (frozen while held)."""
        since, held_wall = self._held
        wall = since if since is not None else time.monotonic()
        return (wall - self._t0 - held_wall) * self.speed

    def hold(self) -> None:
        """Stop virtual time until the matching :meth:`release` (re-entrant: a count)."""
        with self._lock:
            self._holds += 1
            if self._holds == 1:
                self._held = (time.monotonic(), self._held[1])

    def release(self) -> None:
        """Undo one :meth:`hold`; after the last one, time goes on from where it stopped."""
        with self._lock:
            if self._holds == 0:
                raise RuntimeError("SimClock.release() without a hold")
            self._holds -= 1
            since, held_wall = self._held
            if self._holds == 0 and since is not None:
                self._held = (None, held_wall + time.monotonic() - since)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """``with clock.holding(): ...``: held for the block."""
        self.hold()
        try:
            yield
        finally:
            self.release()

    @property
    def held(self) -> bool:
        return self._holds > 0

    def epoch_us(self, virtual_t: float | None = None) -> int:
        """Microseconds of the virtual epoch at ``virtual_t`` (default: now)."""
        t = self.now() if virtual_t is None else virtual_t
        return self._epoch0_us + int(round(t * 1_000_000))

    def wall_delay(self, virtual_t: float) -> float:
        """Wall seconds until ``virtual_t`` (0 if it has passed; a short poll while the clock is held)."""
        delay = max(0.0, (virtual_t - self.now()) / self.speed)
        return max(delay, HELD_POLL_S) if self.held and delay > 0 else delay

    async def sleep_until(self, virtual_t: float) -> None:
        """Sleep until the virtual deadline; absolute, so repeated use never drifts.

        Always yields to the loop, even when the deadline has passed, so a late media tick
        catching up never starves the sockets; a hold that began meanwhile keeps it asleep."""
        await asyncio.sleep(self.wall_delay(virtual_t))
        while self.now() < virtual_t - 1e-9:
            await asyncio.sleep(self.wall_delay(virtual_t))

    async def sleep(self, virtual_s: float) -> None:
        """Sleep for a virtual duration."""
        await self.sleep_until(self.now() + virtual_s)
