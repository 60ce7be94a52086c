"""The decode queue's policy, as a plain object: finals first and never dropped, partials bounded and dropped oldest-first."""

from __future__ import annotations

from collections import deque

from callbot.audio_server.stt.stage import DecodeJob


class DecodeQueue:
    """Jobs waiting for a decode worker.

    - ``pop`` serves finals before partials, each in arrival order: a final is what the robot
      waits for, a partial only makes it wait less.
    - A final is always accepted, even beyond ``max_len``; room is made by dropping partials.
    - A final makes any queued partial of the same segment stale, and drops it.
    - A partial that finds the queue full pushes out the oldest queued partial; if only finals
      are queued, the new partial itself is dropped.
    - An early partial (issued in a pause, likely the segment's final) goes before the other
      partials, and may take a worker kept for finals.
    """

    def __init__(self, max_len: int) -> None:
        if max_len < 1:
            raise ValueError(f"stt.queue_max must be at least 1, got {max_len}")
        self.max_len = max_len
        self._finals: deque[DecodeJob] = deque()
        self._partials: deque[DecodeJob] = deque()

    def __len__(self) -> int:
        return len(self._finals) + len(self._partials)

    def push(self, job: DecodeJob) -> list[DecodeJob]:
        """Queue ``job``; returns the partial jobs dropped to do so (possibly ``job`` itself)."""
        dropped: list[DecodeJob] = []
        if job.kind == "final":
            dropped += self.drop_stale(job)
            self._finals.append(job)
        elif job.early:
            self._partials.appendleft(job)
        else:
            self._partials.append(job)
        while len(self) > self.max_len and self._partials:
            dropped.append(self._partials.popleft())
        return dropped

    def drop_stale(self, final: DecodeJob) -> list[DecodeJob]:
        """Remove and return the queued partials of ``final``'s segment: its final makes them worth nothing
        (also when the final is not queued at all, because it shares a running decode)."""
        stale = [p for p in self._partials if (p.stream, p.segment_id) == (final.stream, final.segment_id)]
        for p in stale:
            self._partials.remove(p)
        return stale

    def pop(self, partials: bool = True) -> DecodeJob | None:
        """The next job to decode (a final, or only finals when ``partials`` is False), or None."""
        if self._finals:
            return self._finals.popleft()
        if self._partials and (partials or self._partials[0].early):
            return self._partials.popleft()
        return None
