"""Ground truth of one call: what the switch did and when, in call seconds from the answer.

Replay and bench score the robot against this: when each prompt really started and stopped,
when each ``uuid_break`` reached the switch (relative to the playback and the callee's speech),
and which call time the audio stream's sample 0 corresponds to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallTruth:
    """Timeline of one call. ``t`` is call seconds from answer (None before the answer);
    ``vt`` is the switch's virtual clock, kept so pre-answer entries can still be ordered."""

    uuid: str
    created_at_virtual: float
    answered_at_virtual: float | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    max_entries: int = 100000

    def call_time(self, vt: float) -> float | None:
        """Call seconds for a virtual time, rounded to the µs (None before the answer)."""
        if self.answered_at_virtual is None:
            return None
        return round(vt - self.answered_at_virtual, 6)

    def record(self, kind: str, vt: float, **fields: Any) -> dict[str, Any]:
        """Append one entry; past ``max_entries`` the oldest are kept and the rest counted."""
        entry = {"t": self.call_time(vt), "vt": round(vt, 6), "kind": kind, **fields}
        if len(self.entries) < self.max_entries:
            self.entries.append(entry)
        return entry

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == kind]

    def prompts(self) -> list[dict[str, Any]]:
        """One row per playback: {file, started_s, stopped_s, status, played_ms}."""
        rows: list[dict[str, Any]] = []
        for e in self.entries:
            if e["kind"] == "playback_start":
                rows.append({"file": e["file"], "started_s": e["t"], "stopped_s": None,
                             "status": None, "played_ms": None})
            elif e["kind"] == "playback_stop":
                row = next((r for r in reversed(rows) if r["file"] == e["file"] and r["status"] is None), None)
                if row is not None:
                    row.update(stopped_s=e["t"], status=e["status"], played_ms=e["played_ms"])
        return rows

    def breaks(self) -> list[float | None]:
        """Call times at which each ``uuid_break`` for this call reached the switch."""
        return [e["t"] for e in self.entries if e["kind"] == "break_received"]

    @property
    def stream_start_s(self) -> float | None:
        """Call time of the (first) audio stream's sample 0, or None if no stream ran."""
        starts = self.of_kind("stream_started")
        return starts[0]["t"] if starts else None

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "answered_at_virtual": self.answered_at_virtual,
                "prompts": self.prompts(), "breaks": self.breaks(),
                "stream_start_s": self.stream_start_s, "entries": list(self.entries)}
