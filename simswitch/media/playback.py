"""The prompt queue of one channel (``uuid_broadcast``), advanced one 20 ms media tick at a time.

Sans-I/O: the channel feeds it ticks and turns the returned transitions into ESL events.
Semantics from FreeSWITCH: broadcasts queue up and play one at a time; ``uuid_break`` ends the
current file on the next media frame with status ``break``; ``uuid_break all`` also flushes the
queue; a file that plays to its end stops with ``done``; a missing file yields no PLAYBACK events.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from callbot.simswitch.clock import MEDIA_TICK_S
from callbot.simswitch.media.wavs import WavError, load_pcm

PLAY_RATE = 8000  # the emulated channel's codec rate (L16/8000, as on the captured switch)


@dataclass
class Prompt:
    """One queued or playing file."""

    path: str
    not_before: float  # virtual time before which it cannot start (dequeue latency)
    pcm: np.ndarray | None = None  # at PLAY_RATE, None if the file could not be read
    error: str | None = None
    started_vt: float | None = None
    ticks_played: int = 0
    ticks_total: int = 0
    samples_total: int = 0
    status: str | None = None  # done | break once stopped
    _cache: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def played_samples(self) -> int:
        """Samples at PLAY_RATE that went out (capped at the file's length)."""
        return min(self.samples_total, self.ticks_played * int(PLAY_RATE * MEDIA_TICK_S))

    @property
    def played_ms(self) -> int:
        return self.played_samples * 1000 // PLAY_RATE

    def frame(self, rate: int) -> np.ndarray:
        """This tick's 20 ms of the prompt at ``rate`` (zero-padded at the end)."""
        pcm = self._cache.get(rate)
        if pcm is None:
            pcm = load_pcm(self.path, rate) if rate != PLAY_RATE else self.pcm
            assert pcm is not None
            self._cache[rate] = pcm
        n = int(rate * MEDIA_TICK_S)
        start = self.ticks_played * n
        chunk = pcm[start:start + n]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.int16)])
        return chunk


class PromptQueue:
    """Queued broadcasts and the one playing now."""

    def __init__(self, max_queue: int = 64, max_wav_s: float = 600.0) -> None:
        self.queue: collections.deque[Prompt] = collections.deque()
        self.current: Prompt | None = None
        self.max_queue = max_queue
        self.max_wav_s = max_wav_s
        self._break_at: float | None = None  # virtual time the uuid_break arrived

    def enqueue(self, path: str, not_before: float) -> bool:
        """Queue a file; False if the queue is full."""
        if len(self.queue) >= self.max_queue:
            return False
        self.queue.append(Prompt(path, not_before))
        return True

    def request_break(self, flush: bool, vt: float) -> Prompt | None:
        """Mark the current file to stop on the first tick after ``vt``; ``flush`` drops the queued ones.

        A tick that is processed late (catch-up) but is older than the break does not apply it."""
        if flush:
            self.queue.clear()
        if self.current is not None and self._break_at is None:
            self._break_at = vt
        return self.current

    def tick(self, vt: float) -> list[tuple[str, Prompt]]:
        """Advance to the tick at ``vt``: returns ("stop"|"start"|"missing", prompt) transitions."""
        out: list[tuple[str, Prompt]] = []
        cur = self.current
        broken = self._break_at is not None and self._break_at <= vt + 1e-9
        if cur is not None and (broken or cur.ticks_played >= cur.ticks_total):
            cur.status = "break" if broken else "done"
            self._break_at = None
            self.current = None
            out.append(("stop", cur))
        if self.current is None and self.queue and self.queue[0].not_before <= vt + 1e-9:
            nxt = self.queue.popleft()
            try:
                nxt.pcm = load_pcm(nxt.path, PLAY_RATE, self.max_wav_s)
            except WavError as exc:
                nxt.error = str(exc)
                out.append(("missing", nxt))
                return out
            nxt.samples_total = len(nxt.pcm)
            nxt.ticks_total = math.ceil(nxt.samples_total / (PLAY_RATE * MEDIA_TICK_S))
            nxt.started_vt = vt
            self.current = nxt
            out.append(("start", nxt))
        return out

    def stop_for_hangup(self) -> Prompt | None:
        """The channel hung up: the current file ends ``done`` (as FreeSWITCH reports it)."""
        cur, self.current = self.current, None
        self.queue.clear()
        self._break_at = None
        if cur is not None:
            cur.status = "done"
        return cur

    def write_frame(self, rate: int | None) -> np.ndarray | None:
        """Advance the playback by one tick; with a ``rate``, also return its audio at that rate.

        None when nothing plays (a parked channel writes nothing)."""
        cur = self.current
        if cur is None:
            return None
        chunk = cur.frame(rate) if rate else None
        cur.ticks_played += 1
        return chunk
