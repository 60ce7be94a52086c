"""The prompt queue of one channel (``uuid_broadcast``, ``uuid_break``, ``uuid_fileman``), one 20 ms tick at a time.

Sans-I/O: the channel feeds it ticks and turns the returned transitions into ESL events.
Semantics of FreeSWITCH 1.10.12 (``switch_ivr_play_file``, ``switch_ivr_process_fh``), with the
delays measured on it (DESIGN section 3):
- broadcasts queue up and play one at a time. Before a prompt starts the switch reads frames and
  writes nothing: it starts on the first tick ``simswitch.broadcast_start_ms`` (100) after the
  broadcast if the callee sent audio frames meanwhile, else ``SILENT_START_EXTRA_S`` (80 ms) later
  still (measured: 180-200 ms with a silent callee, about 100 ms while it sends audio);
- the file is read ahead in chunks of 16384 samples at the channel rate (2.048 s at 8 kHz), the
  next one when at most a frame of the last is left. ``variable_playback_ms`` reports what was
  read (``samples_in``), not what was heard: 2048 ms after 1 s of play, 4096 after 3.1 s;
  ``playback_last_offset_pos`` is the position really reached;
- ``uuid_break`` ends the file on the next frame with status ``break``; ``all`` also flushes the queue;
- ``uuid_fileman``: ``pause`` toggles (silence frames, the position kept, no event), ``stop`` lets
  the chunk already read play out and ends ``done``, ``volume:N`` (clamped to -4..4 when applied),
  ``seek:[+-]ms``, ``restart``; ``speed`` and ``truncate`` are accepted without effect. Each takes
  effect ``FILEMAN_DELAY_S`` after the command (the prompt went silent 41-52 ms after a pause);
- a file that plays to its end stops with ``done``; a missing file yields no PLAYBACK events.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from callbot.simswitch.clock import MEDIA_TICK_S
from callbot.simswitch.media.wavs import WavError, load_pcm, stored_format

PLAY_RATE = 8000  # the emulated channel's codec rate (L16/8000, as on the captured switch)
FRAME = int(PLAY_RATE * MEDIA_TICK_S)  # samples per media frame at PLAY_RATE
READ_CHUNK = 16384  # FILE_STARTSAMPLES / 2: samples at the channel rate per file read (2.048 s)
FILEMAN_DELAY_S = 0.040  # a uuid_fileman command is heard two frames later (measured: silent 41-52 ms after)
SILENT_START_EXTRA_S = 0.080  # a silent callee: the switch reads 4 more frames before it plays
FILL = -1  # FreeSWITCH fills silence and short frames with memset(255): 0xffff
_GAIN = {1: 1.3, 2: 2.3, 3: 3.3, 4: 4.3, -1: 0.8, -2: 0.6, -3: 0.4, -4: 0.2}  # switch_change_sln_volume


def _atoi(text: str) -> int:
    """C's atoi: optional blanks and sign, then digits; 0 if none."""
    text = text.lstrip()
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in "+-" else text
    n = len(digits) - len(digits.lstrip("0123456789"))
    return sign * int(digits[:n]) if n else 0


def _step_or_set(current: int, value: str, default_step: int = 1) -> int:
    """``name:+N`` / ``name:-N`` step (0 steps by ``default_step``), ``name:N`` sets."""
    if value[:1] in "+-":
        return current + (_atoi(value) or default_step)
    return _atoi(value)


@dataclass
class Prompt:
    """One queued or playing file; sample counts are at PLAY_RATE unless named ``stored``."""

    path: str
    arrived: float  # virtual time the broadcast arrived
    pcm: np.ndarray | None = None  # the whole file at PLAY_RATE, None if it could not be read
    stored_rate: int = PLAY_RATE
    stored_samples: int = 0
    error: str | None = None
    started_vt: float | None = None
    status: str | None = None  # done | break once stopped
    callee_sent_audio: bool = False  # while the broadcast waited to start
    offset: int = 0  # next sample to play (FreeSWITCH's offset_pos)
    read_to: int = 0  # how far the file has been read into the play buffer
    samples_in: int = 0  # everything read, seeks included (FreeSWITCH's samples_in)
    eof: bool = False  # a read failed (end of file, or uuid_fileman stop): the buffer drains
    stop_requested: bool = False  # uuid_fileman stop (SWITCH_FILE_DONE)
    paused: bool = False
    volume: int = 0  # as set; clamped to -4..4 when applied
    speed: int = 0  # accepted, not emulated
    heard_samples: int = 0  # ground truth: prompt samples that went out
    _cache: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return 0 if self.pcm is None else len(self.pcm)

    @property
    def played_ms(self) -> int:
        """Ground truth: how much of the prompt went out, pauses excluded."""
        return self.heard_samples * 1000 // PLAY_RATE

    @property
    def read_stored_samples(self) -> int:
        """``variable_playback_samples``: samples read from the file, in the file's own rate."""
        return min(self.stored_samples, self.samples_in * self.stored_rate // PLAY_RATE)

    @property
    def reported_ms(self) -> int:
        """``variable_playback_ms``: the read-ahead, as FreeSWITCH reports it."""
        return self.read_stored_samples // (self.stored_rate // 1000)

    @property
    def exhausted(self) -> bool:
        """Nothing left to play: the buffer is empty and no more will be read."""
        return self.offset >= self.read_to and (self.eof or self.stop_requested or self.read_to >= self.total)

    def advance(self) -> tuple[int, int] | None:
        """One frame: ``(start, n)`` of the samples it plays, or None while paused (a silence frame)."""
        if self.paused:
            return None
        if self.read_to - self.offset <= FRAME and not self.eof:
            if self.stop_requested or self.read_to >= self.total:
                self.eof = True
            else:
                n = min(READ_CHUNK, self.total - self.read_to)
                self.read_to += n
                self.samples_in += n
        start, n = self.offset, min(FRAME, self.read_to - self.offset)
        self.offset += n
        self.heard_samples += n
        return start, n

    def seek(self, target: int) -> None:
        """The position moves and the play buffer is flushed: the next frame reads a new chunk."""
        self.offset = self.read_to = max(0, min(target, self.total))
        self.eof = False

    def apply(self, command: str) -> str | None:
        """``switch_ivr_process_fh``: ``paused``/``resumed`` when the pause state changed, else None."""
        low = command.lower()
        value = command.split(":", 1)[1] if ":" in command else None
        if low.startswith("speed") and value is not None:
            self.speed = _step_or_set(self.speed, value)
        elif low.startswith("volume"):
            self.volume = _step_or_set(self.volume, value) if value is not None else max(-4, min(4, self.volume))
        elif low == "pause":
            self.paused = not self.paused
            return "paused" if self.paused else "resumed"
        elif low == "stop":
            self.stop_requested = True
        elif low == "restart":
            self.speed = 0
            self.seek(0)
        elif low.startswith("seek") and value is not None:
            if value[:1] in "+-":
                self.seek(self.offset + (_atoi(value) or 1000) * PLAY_RATE // 1000)
            else:
                self.seek(_atoi(value) * PLAY_RATE // 1000)
        return None

    def frame(self, rate: int, span: tuple[int, int] | None) -> np.ndarray:
        """The audio of one frame at ``rate``: the samples of ``span`` at the volume, filled to 20 ms."""
        n = int(rate * MEDIA_TICK_S)
        out = np.full(n, FILL, np.int16)
        if span is None or span[1] == 0:
            return out
        pcm = self._cache.get(rate)
        if pcm is None:
            pcm = load_pcm(self.path, rate) if rate != PLAY_RATE else self.pcm
            assert pcm is not None
            self._cache[rate] = pcm
        start, count = span[0] * rate // PLAY_RATE, span[1] * rate // PLAY_RATE
        chunk = pcm[start:start + count]
        gain = _GAIN.get(max(-4, min(4, self.volume)))
        if gain is not None:
            chunk = np.clip(np.trunc(chunk * gain), -32768, 32767).astype(np.int16)
        out[:len(chunk)] = chunk
        return out


class PromptQueue:
    """Queued broadcasts, the one playing now, and the commands waiting to take effect."""

    def __init__(self, max_queue: int = 64, max_wav_s: float = 600.0, start_s: float = 0.100) -> None:
        self.queue: collections.deque[Prompt] = collections.deque()
        self.current: Prompt | None = None
        self.max_queue = max_queue
        self.max_wav_s = max_wav_s
        self.start_s = start_s  # broadcast to PLAYBACK_START while the callee sends audio
        self._break_at: float | None = None  # virtual time the uuid_break arrived
        self._fileman: list[tuple[float, str]] = []  # (effective virtual time, command)
        self._written: tuple[Prompt, tuple[int, int] | None] | None = None  # the last frame written

    def enqueue(self, path: str, arrived: float) -> bool:
        """Queue a file; False if the queue is full."""
        if len(self.queue) >= self.max_queue:
            return False
        self.queue.append(Prompt(path, arrived))
        return True

    def request_break(self, flush: bool, vt: float) -> Prompt | None:
        """Mark the current file to stop on the first tick after ``vt``; ``flush`` drops the queued ones.

        A tick that is processed late (catch-up) but is older than the break does not apply it."""
        if flush:
            self.queue.clear()
        if self.current is not None and self._break_at is None:
            self._break_at = vt
        return self.current

    def fileman(self, command: str, vt: float) -> Prompt | None:
        """``uuid_fileman``: the command takes effect ``FILEMAN_DELAY_S`` later; None if nothing plays."""
        if self.current is not None:
            self._fileman.append((vt + FILEMAN_DELAY_S, command))
        return self.current

    def _ready(self, prompt: Prompt, vt: float) -> bool:
        wait = self.start_s if prompt.callee_sent_audio else self.start_s + SILENT_START_EXTRA_S
        return prompt.arrived + wait <= vt + 1e-9

    def tick(self, vt: float, callee_sent_audio: bool) -> list[tuple[str, Prompt]]:
        """Advance to the tick at ``vt``: ("paused"|"resumed"|"stop"|"start"|"missing", prompt) transitions."""
        out: list[tuple[str, Prompt]] = []
        cur = self.current
        while self._fileman and self._fileman[0][0] <= vt + 1e-9:
            _, command = self._fileman.pop(0)
            change = cur.apply(command) if cur is not None else None
            if change is not None and cur is not None:
                out.append((change, cur))
        broken = self._break_at is not None and self._break_at <= vt + 1e-9
        if cur is not None and (broken or (cur.exhausted and not cur.paused)):
            cur.status = "break" if broken else "done"
            self._stopped()
            out.append(("stop", cur))
        if callee_sent_audio:
            for waiting in self.queue:
                waiting.callee_sent_audio = True
        if self.current is None and self.queue and self._ready(self.queue[0], vt):
            nxt = self.queue.popleft()
            try:
                nxt.pcm = load_pcm(nxt.path, PLAY_RATE, self.max_wav_s)
                nxt.stored_rate, nxt.stored_samples = stored_format(nxt.path)
            except WavError as exc:
                nxt.error = str(exc)
                out.append(("missing", nxt))
                return out
            nxt.started_vt = vt
            self.current = nxt
            out.append(("start", nxt))
        return out

    def _stopped(self) -> None:
        self.current = None
        self._break_at = None
        self._fileman.clear()

    def stop_for_hangup(self) -> Prompt | None:
        """The channel hung up: the current file ends ``done`` (as FreeSWITCH reports it)."""
        cur = self.current
        self._stopped()
        self.queue.clear()
        if cur is not None:
            cur.status = "done"
        return cur

    def write_frame(self, rate: int | None) -> np.ndarray | None:
        """Advance the playback by one tick; with a ``rate``, also return its audio at that rate.

        None when nothing plays (a parked channel writes nothing); silence while paused."""
        cur = self.current
        if cur is None:
            self._written = None
            return None
        span = cur.advance()
        self._written = (cur, span)
        return cur.frame(rate, span) if rate else None

    def written_frame(self, rate: int) -> np.ndarray | None:
        """The audio the last ``write_frame`` wrote, at ``rate`` (a line echo needs it); None if nothing."""
        written = self._written
        if written is None:
            return None
        prompt, span = written
        return prompt.frame(rate, span)
