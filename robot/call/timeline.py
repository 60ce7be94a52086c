"""One call's timeline: every event and state change, dated in call seconds from the answer.

Three clocks meet here and are mapped onto call time:
- switch events carry ``Event-Date-Timestamp`` (µs since epoch; simswitch stamps its virtual clock);
- audio events carry stream time, offset by when the stream's sample 0 was taken (MEDIA_BUG_START
  relative to the answer, or simswitch's ground truth in a replay);
- the robot's own actions are dated from the last switch event received before them, plus the
  robot's wall time since then times the switch's speed (so a long call does not drift).
Raw stamps are kept, so times are computed when read and can be re-based once the answer or the
stream offset is known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

SOURCES = ("switch", "audio", "robot")


@dataclass
class Entry:
    """One timeline row before it is dated: its source, type, fields and raw clock stamps."""

    source: str
    type: str
    fields: dict[str, Any]
    wall: float
    switch_us: int | None = None
    stream_t: float | None = None
    anchor: tuple[float, int] | None = None  # (wall, switch µs) of the last switch event before this row


@dataclass
class Timeline:
    """Entries of one call in arrival order; ``rows()`` dates them in call seconds."""

    speed: float = 1.0
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 5000
    on_entry: Callable[[dict[str, Any]], None] | None = None
    entries: list[Entry] = field(default_factory=list)
    answer_wall: float | None = None
    answer_us: int | None = None
    stream_offset_s: float | None = None
    truncated: int = 0
    _anchor: tuple[float, int] | None = None
    _live_floor: float | None = None

    def add(self, source: str, type_: str, *, switch_us: int | None = None, stream_t: float | None = None,
            **fields: Any) -> Entry:
        """Record one row now; past ``max_entries`` rows are counted, not kept (a runaway call stays bounded)."""
        if source not in SOURCES:
            raise ValueError(f"timeline source {source!r} is not one of {SOURCES}")
        entry = Entry(source, type_, fields, self.clock(), switch_us, stream_t, self._anchor)
        if switch_us is not None:
            self._anchor = (entry.wall, switch_us)
        if len(self.entries) >= self.max_entries:
            self.truncated += 1
            return entry
        self.entries.append(entry)
        if self.on_entry is not None:
            row = self.row(entry, self._live_floor)
            self._live_floor = _later(self._live_floor, row["t"])
            self.on_entry(row)
        return entry

    def mark_answer(self, switch_us: int | None) -> None:
        """The call was answered: now every later stamp has a zero."""
        self.answer_wall = self.clock()
        self.answer_us = switch_us
        if switch_us is not None:
            self._anchor = (self.answer_wall, switch_us)

    def call_time(self, entry: Entry) -> float | None:
        """Seconds from the answer (negative before it), or None while the answer is unknown."""
        if entry.stream_t is not None and self.stream_offset_s is not None:
            return round(entry.stream_t + self.stream_offset_s, 3)
        if entry.switch_us is not None and self.answer_us is not None:
            return round((entry.switch_us - self.answer_us) / 1e6, 3)
        if entry.anchor is not None and self.answer_us is not None:
            wall, us = entry.anchor
            return round((us - self.answer_us) / 1e6 + (entry.wall - wall) * self.speed, 3)
        if self.answer_wall is not None:
            return round((entry.wall - self.answer_wall) * self.speed, 3)
        return None

    def row(self, entry: Entry, floor: float | None = None) -> dict[str, Any]:
        """``{t, source, type, ...}`` (DESIGN section 5 ``events``), plus ``stream_t`` for audio rows.

        A robot row is dated no earlier than ``floor``, the latest time of the rows before it: the
        robot acted after those events, whatever its own clock estimate says (it lags by ms x speed).
        """
        t = self.call_time(entry)
        if entry.source == "robot" and t is not None and floor is not None:
            t = max(t, floor)
        out: dict[str, Any] = {"t": t, "source": entry.source, "type": entry.type}
        if entry.stream_t is not None:
            out["stream_t"] = round(entry.stream_t, 3)
        out.update(entry.fields)
        return out

    def rows(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        floor = None
        for entry in self.entries:
            out.append(self.row(entry, floor))
            floor = _later(floor, out[-1]["t"])
        return out


def _later(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
