"""The emulator's clock: real time, or virtual time running ``speed`` times faster than the wall."""

from __future__ import annotations

import asyncio
import threading
import time

MEDIA_TICK_S = 0.020  # one media frame (ptime 20), the unit of all media work
HELD_POLL_S = 0.002  # while the clock is held, sleepers look again this often (wall seconds)


class SimClock:
    """Virtual seconds since start = wall seconds elapsed x speed.

    Event timestamps use a *virtual epoch* (the wall epoch at start plus virtual seconds), so
    differences between Event-Date-Timestamp values are call-time differences at any speed.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self.speed = float(speed)
        self._t0 = time.monotonic()
        self._epoch0_us = int(time.time() * 1_000_000)
        self._lock = threading.Lock()
        self._holds = 0
        self._held_since: float | None = None  # wall time the current hold began
        self._held_wall = 0.0  # wall seconds spent held so far: virtual time did not pass in them

    def now(self) -> float:
        """Virtual seconds since the clock started (frozen while held)."""
        wall = self._held_since if self._held_since is not None else time.monotonic()
        return (wall - self._t0 - self._held_wall) * self.speed

    def hold(self) -> None:
        """Stop virtual time (re-entrant, any thread): a replay holds it while a decode is running, so
        that the decode takes no call time at any speed and speed never changes what happens."""
        with self._lock:
            self._holds += 1
            if self._holds == 1:
                self._held_since = time.monotonic()

    def release(self) -> None:
        """Undo one :meth:`hold`; time goes on from where it stopped, with no jump."""
        with self._lock:
            if self._holds == 0:
                raise RuntimeError("SimClock.release() without a hold")
            self._holds -= 1
            if self._holds == 0 and self._held_since is not None:
                self._held_wall += time.monotonic() - self._held_since
                self._held_since = None

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
        catching up never starves the sockets."""
        await asyncio.sleep(self.wall_delay(virtual_t))

    async def sleep(self, virtual_s: float) -> None:
        """Sleep for a virtual duration."""
        await self.sleep_until(self.now() + virtual_s)
