"""One call's timeline: every event and state change, dated in call seconds from the answer.

Sans-I/O: each row is added with the call-clock time at which the call handled it (``at``); no
clock is read here. Three clocks meet and are mapped onto call time:
- switch events carry ``Event-Date-Timestamp`` (µs; simswitch stamps its virtual clock), dated
  against the answer's own stamp, so they keep the switch's precision;
- audio events carry stream time, offset by when the stream's sample 0 was taken (MEDIA_BUG_START
  relative to the answer, or simswitch's ground truth in a replay);
- the robot's own rows are dated by the call clock (``at``) relative to the answer.
Raw stamps are kept, so times are computed when read and can be re-based once the stream offset is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

SOURCES = ("switch", "audio", "robot")


@dataclass
class Entry:
    """One timeline row before it is dated: its source, type, fields and raw clock stamps."""

    source: str
    type: str
    fields: dict[str, Any]
    at: float
    switch_us: int | None = None
    stream_t: float | None = None
    stream: int = 0  # which audio stream of the call (a restarted stream counts its samples from 0 again)


@dataclass
class Timeline:
    """Entries of one call in arrival order; ``rows()`` dates them in call seconds."""

    max_entries: int = 5000
    on_entry: Callable[[dict[str, Any]], None] | None = None
    entries: list[Entry] = field(default_factory=list)
    answer_at: float | None = None
    answer_us: int | None = None
    stream_offset_s: float | None = None  # the first stream's sample 0, in call time
    later_offsets: dict[int, float] = field(default_factory=dict)  # restarted streams' sample 0
    truncated: int = 0

    def add(self, source: str, type_: str, at: float, *, switch_us: int | None = None,
            stream_t: float | None = None, stream: int = 0, **fields: Any) -> Entry:
        """Record one row; past ``max_entries`` rows are counted, not kept (a runaway call stays bounded)."""
        if source not in SOURCES:
            raise ValueError(f"timeline source {source!r} is not one of {SOURCES}")
        entry = Entry(source, type_, fields, at, switch_us, stream_t, stream)
        if len(self.entries) >= self.max_entries:
            self.truncated += 1
            return entry
        self.entries.append(entry)
        if self.on_entry is not None:
            self.on_entry(self.row(entry))
        return entry

    def mark_answer(self, at: float, switch_us: int | None) -> None:
        """The call was answered at call-clock ``at`` (and switch stamp ``switch_us``): every row now has a zero."""
        self.answer_at, self.answer_us = at, switch_us

    def call_time(self, entry: Entry) -> float | None:
        """Seconds from the answer (negative before it), or None while the answer is unknown."""
        offset = self.stream_offset_s if entry.stream == 0 else self.later_offsets.get(entry.stream)
        if entry.stream_t is not None and offset is not None:
            return round(entry.stream_t + offset, 3)
        if entry.switch_us is not None and self.answer_us is not None:
            return round((entry.switch_us - self.answer_us) / 1e6, 3)
        if self.answer_at is not None:
            return round(entry.at - self.answer_at, 3)
        return None

    def row(self, entry: Entry) -> dict[str, Any]:
        """``{t, source, type, ...}`` (the ``events`` of ``callbot replay --json``), plus ``stream_t`` for audio rows."""
        out: dict[str, Any] = {"t": self.call_time(entry), "source": entry.source, "type": entry.type}
        if entry.stream_t is not None:
            out["stream_t"] = round(entry.stream_t, 3)
            if entry.stream:
                out["stream"] = entry.stream
        out.update(entry.fields)
        return out

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(entry) for entry in self.entries]
