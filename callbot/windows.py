"""Calling windows in the callee's local time: parsing, "is it open now", and "when does it next open" (sans-I/O).

A window is ``"<days> HH:MM-HH:MM"``: days ``mon``…``sun``, ranges (``mon-fri``, ``fri-mon`` wraps,
``mon-sun`` is every day) and comma lists (``mon,wed``); the end may be ``24:00``. A callee with
several possible zones is open only when it is open in every one of them. Times are read on
each zone's wall clock, so a 09:00 window opens at 09:00 local on both sides of a DST change;
a start that falls in a spring-forward gap opens when the clocks jump past it. Nothing here
reads a clock: every function takes the instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPEC = re.compile(r"^\s*(?P<days>[a-z,\-\s]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
HORIZON_DAYS = 8


class WindowError(ValueError):
    """A window spec that cannot be read; the message quotes it and shows the form."""


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and minutes of the local day, [start, end)."""

    days: frozenset[int]
    start_min: int
    end_min: int
    spec: str


def _minutes(text: str, spec: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise WindowError(f"window {spec!r}: {text} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes


def _days(text: str, spec: str) -> frozenset[int]:
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise WindowError(f"window {spec!r}: {part!r} is not a day or day range (mon…sun, e.g. mon-fri)")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(out)


def parse_windows(specs: Iterable[str]) -> tuple[Window, ...]:
    """Read ``["mon-fri 09:00-20:00", "sat 10:00-18:00"]``; an empty list means no restriction."""
    if isinstance(specs, str):
        raise WindowError(f"windows must be a list of strings, got the string {specs!r}")
    out: list[Window] = []
    for spec in specs:
        m = _SPEC.match(str(spec).lower())
        if not m:
            raise WindowError(f"window {spec!r} is not like \"mon-fri 09:00-20:00\"")
        start, end = _minutes(m["start"], spec), _minutes(m["end"], spec)
        if end <= start:
            raise WindowError(f"window {spec!r}: the end must be after the start on the same day "
                              "(split a window that crosses midnight in two)")
        out.append(Window(_days(m["days"], spec), start, end, spec))
    return tuple(out)


def zone_open(windows: Sequence[Window], instant: datetime, zone: ZoneInfo) -> bool:
    """Is ``instant`` inside a window on ``zone``'s wall clock?"""
    if not windows:
        return True
    local = instant.astimezone(zone)
    minute = local.hour * 60 + local.minute + local.second / 60
    return any(local.weekday() in w.days and w.start_min <= minute < w.end_min for w in windows)


def is_open(windows: Sequence[Window], instant: datetime, zones: Sequence[ZoneInfo]) -> bool:
    """Open in every zone (a callee whose number maps to several must be inside the window in each)."""
    return all(zone_open(windows, instant, z) for z in zones)


def next_open(windows: Sequence[Window], instant: datetime, zones: Sequence[ZoneInfo],
              horizon_days: int = HORIZON_DAYS) -> datetime | None:
    """The first instant at or after ``instant`` when every zone is open; None if none within the horizon."""
    if is_open(windows, instant, zones):
        return instant
    common: list[tuple[datetime, datetime]] | None = None
    for zone in zones:
        spans = _merge(_zone_spans(windows, instant, zone, horizon_days))
        common = spans if common is None else _intersect(common, spans)
    for start, end in common or []:
        if end <= instant:
            continue
        candidate = max(start, instant)
        if is_open(windows, candidate, zones):
            return candidate
    return None


def _zone_spans(windows: Sequence[Window], instant: datetime, zone: ZoneInfo,
                horizon_days: int) -> list[tuple[datetime, datetime]]:
    first = instant.astimezone(zone).date() - timedelta(days=1)
    spans = []
    for offset in range(horizon_days + 2):
        day = first + timedelta(days=offset)
        for w in windows:
            if day.weekday() in w.days:
                spans.append((_first_at_or_after(day, w.start_min, zone), _first_at_or_after(day, w.end_min, zone)))
    return sorted(spans)


def _first_at_or_after(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The first UTC instant whose wall time in ``zone`` is at or after ``day`` + ``minutes``."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)
    early = wall.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    late = wall.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    lo, hi = min(early, late), max(early, late)
    if _wall(lo, zone) == wall:
        return lo  # exists (the first of two, at a fall-back)
    # in a spring-forward gap: find the jump, to the second
    while (hi - lo) > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _wall(mid, zone) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersect(a: list[tuple[datetime, datetime]], b: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out
