"""The campaign's clock: real UTC, or simswitch's virtual clock (``--speed N --start ISO``); and ISO-8601 ``Z`` times.

The dialer's rules never read a clock (robot.campaign.rules); the runner asks a
:class:`CampaignClock` and passes the instant in. Under ``--speed`` the clock runs N× faster
than the wall from ``start``, the same instant and speed given to simswitch, so the
campaign's windows, retries and leases play out on the switch's own time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

UTC = timezone.utc


def iso(value: datetime | None) -> str | None:
    """``2024-06-03T14:00:00.000Z`` (UTC, milliseconds), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 instant; a value without a zone is UTC. ValueError names the value."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time such as 2024-06-03T09:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class CampaignClock:
    """``now()`` = ``start`` + wall time elapsed × ``speed``; real UTC when ``start`` is None and speed is 1.

    ``source``: a callable returning the epoch seconds of another clock (a simulated campaign passes
    simswitch's virtual clock, which stands still while it is held), read by ``now()`` instead."""

    speed: float = 1.0
    start: datetime | None = None
    source: Callable[[], float] | None = None
    _wall0: float = 0.0
    _mono0: float = 0.0
    _virtual: bool = False

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self._virtual = self.start is not None or self.speed != 1.0 or self.source is not None
        if self.source is not None:
            self.start = datetime.fromtimestamp(self.source(), UTC)
        elif self.start is None:
            self.start = datetime.fromtimestamp(self._wall0, UTC)

    def now(self) -> datetime:
        if self.source is not None:
            return datetime.fromtimestamp(self.source(), UTC)
        assert self.start is not None
        return self.start + timedelta(seconds=(time.monotonic() - self._mono0) * self.speed)

    def align(self, virtual_now: datetime) -> None:
        """Make ``now()`` equal ``virtual_now`` at this moment (synchronised to simswitch's clock; with a
        ``source``, that clock is read directly and this changes nothing)."""
        if self.source is not None:
            return
        self.start = virtual_now
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    def wall_s(self, campaign_s: float) -> float:
        """Wall seconds for a span of campaign seconds (at least: a held ``source`` clock takes longer)."""
        return campaign_s / self.speed

    @property
    def virtual(self) -> bool:
        return self._virtual

    def as_json(self, frozen: bool = False) -> dict[str, Any] | None:
        """Stored with the campaign, so `campaign status` reads the campaign's time (None: the wall's)."""
        if not self._virtual:
            return None
        if frozen:
            return {"speed": self.speed, "frozen": iso(self.now())}
        return {"speed": self.speed, "virtual": iso(self.now()), "wall": time.time()}


def campaign_now(clock: dict[str, Any] | None) -> datetime:
    """The campaign's current time: the wall's, or its last run's virtual clock (running on while that run
    lives, frozen where it stopped)."""
    if not clock:
        return datetime.now(UTC)
    if clock.get("frozen"):
        return parse_iso(clock["frozen"])
    elapsed = time.time() - float(clock["wall"])
    return parse_iso(clock["virtual"]) + timedelta(seconds=elapsed * float(clock["speed"]))
