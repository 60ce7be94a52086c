"""The emulator's clock: real time, or virtual time running ``speed`` times faster than the wall."""

from __future__ import annotations

import asyncio
import time

MEDIA_TICK_S = 0.020  # one media frame (ptime 20), the unit of all media work


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

    def now(self) -> float:
        """Virtual seconds since the clock started."""
        return (time.monotonic() - self._t0) * self.speed

    def epoch_us(self, virtual_t: float | None = None) -> int:
        """Microseconds of the virtual epoch at ``virtual_t`` (default: now)."""
        t = self.now() if virtual_t is None else virtual_t
        return self._epoch0_us + int(round(t * 1_000_000))

    def wall_delay(self, virtual_t: float) -> float:
        """Wall seconds until ``virtual_t`` (0 if it has passed)."""
        return max(0.0, (virtual_t - self.now()) / self.speed)

    async def sleep_until(self, virtual_t: float) -> None:
        """Sleep until the virtual deadline; absolute, so repeated use never drifts.

        Always yields to the loop, even when the deadline has passed, so a late media tick
        catching up never starves the sockets."""
        await asyncio.sleep(self.wall_delay(virtual_t))

    async def sleep(self, virtual_s: float) -> None:
        """Sleep for a virtual duration."""
        await self.sleep_until(self.now() + virtual_s)
