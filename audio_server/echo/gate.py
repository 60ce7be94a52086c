"""Echo gate: a frame counts as the caller only where its sound is not explained by the robot's prompt.

While a prompt plays (and for ``max_delay_ms`` after), each 20 ms frame's band energies (13 bands,
200-3600 Hz) are compared with the prompt's band energies at the echo path's delay. The path is
learnt while the prompt plays, from the last second of frames:
- **delay**: the lag (0 to ``max_delay_ms``, 5 ms steps) at which the log band energies of the
  line and of the prompt correlate best; taken when the correlation reaches ``lock_correlation``;
- **gain and short filter**: per band, a low percentile of line/prompt energy ratios (a band's
  gain is the magnitude of the path's filter there); the caller's voice only ever adds energy, so
  a low percentile ignores double talk.
Before the path is known the gate assumes the worst echo (``prelock_gain_db``, any delay), capped
by what the line has shown it can return at most:
- **bound**: per band, whatever the delay, the echo's gain is at most the median ratio of the
  line's energy above its noise floor to the prompt's, at that delay, over frames where the prompt
  is loud in that band; the largest of those over all delays bounds it. A line with no echo (digital, or cancelled upstream) shows a bound
  far below the prompt within about a second, and a caller talking over the prompt then counts
  from their first frame instead of being taken for an echo that was never heard. The bound
  holds for the call (it may rise ``bound_rise_db_per_s``, so a caller's own speech barely moves
  it) and also caps a locked path's gains. Delays the history cannot test yet leave it open.
The predicted echo takes the prompt's loudest row within ``slack_ms`` of the delay, so a marker one
frame off, or a pause that lands a few ms late, is still covered. The frame is the caller's when
at least ``caller_ratio`` of its energy is left once the predicted echo (times ``margin_db``) and the
line's noise are taken out. Double talk therefore counts from the caller's own first frame.
Sans-I/O: frames and marker times (stream samples) in, verdicts out.

Cost: the gate runs on every frame of every stream while a prompt plays, so the per-frame and
per-estimate work skips what cannot change the result: a frame's predicted echo is two rows of
the prompt's window maxima, or the max of a strided slice of its rows (not a gather per candidate
delay); the history's prompt rows come from one row per lattice point (frames 20 ms apart, delays
5 ms apart); gathers use ``np.take``; the bound counts loud frames with one matrix product and
sorts only the bands every delay has tested. Every sum, product and einsum still runs on the same
values in the same order as the plain formulation (``_reference`` is kept; the fast-path tests
checks each fast path against it), so no verdict changes by a bit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from callbot.audio_server.echo.reference import PlaybackTimeline, PromptBands, band_energies, coarse_bands, frame_len


@dataclass(frozen=True)
class EchoSettings:
    """Echo rejection with the robot's own prompt as the reference (section ``speech`` of the settings)."""

    max_delay_ms: int = 600  # longest echo path searched
    slack_ms: int = 10  # predicted echo = the loudest prompt row within this much of the delay
    history_ms: int = 1000  # frames the path is estimated from
    estimate_every_ms: int = 200
    lock_correlation: float = 0.5
    prelock_gain_db: float = -3.0  # before the path is known: echo assumed at most this far below the prompt
    margin_db: float = 3.0  # the predicted echo is scaled up this much before it is taken out
    caller_ratio: float = 0.15  # share of the frame's energy left over that makes it the caller's
    gain_percentile: float = 30.0
    pause_latency_ms: int = 45  # a pause or resume marker takes effect this late (41-52 ms measured)
    bound_min_frames: int = 10  # loud prompt frames a delay needs before the bound counts it
    bound_rise_db_per_s: float = 6.0  # the bound may rise this fast (it falls at once)
    confirm_checks: int = 5  # after a lock, estimates stay at the quick pace until the delay is found again, this
    # many at most (a line with no echo locks by chance on and off: it must not keep the quick pace's cost)
    confirm_correlation: float = 0.8  # a path is trusted when two estimates in a row this sure find its delay (a
    # real path: 0.92-0.94 each time; chance locks on a line without echo reach that once, seldom twice at one delay)


@dataclass(frozen=True)
class EchoVerdict:
    """One frame: whether the prompt could be in it, the share of energy left over, and the path used."""

    reference: bool
    caller: bool
    caller_ratio: float
    delay_ms: float | None
    trusted: bool = False  # the path is confirmed by two sure estimates (see EchoGate.trusted): AMD may rely on it


NOISE_FRAME = 2.0  # a frame within 3 dB of the noise's energy is noise (the judge takes out twice the noise)
BOUND_FLOOR = 1e-4  # the bound never falls below -40 dB, so that it can rise again within seconds

NO_REFERENCE = EchoVerdict(reference=False, caller=True, caller_ratio=1.0, delay_ms=None)


class EchoGate:
    """One stream's echo gate (see the module docstring)."""

    DELAY_STEP_HOPS = 2  # 5 ms between candidate delays
    TABLE_ROWS = 16  # a frame's predicted echo over at least this many delays comes from the prompt's window maxima

    def __init__(self, rate: int, settings: EchoSettings | None = None) -> None:
        self.settings = s = settings or EchoSettings()
        self.rate = rate
        self.timeline = PlaybackTimeline(pause_latency=s.pause_latency_ms * rate // 1000)
        self.prompt: PromptBands | None = None
        self._n = frame_len(rate)
        self._history_frames = max(10, s.history_ms // 20)
        self._estimate_every = max(1, s.estimate_every_ms // 20)
        self._max_delay = s.max_delay_ms * rate // 1000
        self._slack = s.slack_ms * rate // 1000
        self._prelock_gain = 10 ** (s.prelock_gain_db / 10)
        self._margin = 10 ** (s.margin_db / 10)
        self._noise: np.ndarray | None = None
        self.bound: np.ndarray | None = None  # per band: the most the line has shown it returns (see above)
        self._bound_at = 0  # stream sample of the last bound update
        self._reset_path()

    def _reset_path(self) -> None:
        self._hist_y: list[np.ndarray] = []
        self._hist_start: list[int] = []
        self._since_estimate = 0
        self.delay: int | None = None  # samples
        # the same delay (within the slack) found by two estimates in a row: a path that is really there. A lock
        # on the first second can be chance (a machine's greeting over the prompt, on an echo-free line, once
        # correlated 0.93 at a delay the next estimate did not find again); a real path's delay stays put.
        self.confirmed = False
        # ... by two sure estimates in a row (``confirm_correlation``): what AMD may rely on
        self.trusted = False
        self._unconfirmed_locks = 0  # locks since the last confirmation that found another delay
        self._sure_lock = False  # the last lock was sure (confirm_correlation)
        self.gains: np.ndarray | None = None
        self.correlation = 0.0

    # --- markers (stream samples) ---------------------------------------------------------------

    def start(self, prompt: PromptBands, at: int) -> None:
        """A prompt starts at stream sample ``at``; the path learnt on the last prompt is kept as a prior."""
        self.prompt = prompt
        self.timeline.start(at)
        self._hist_y, self._hist_start = [], []

    def stop(self, at: int) -> None:
        self.timeline.stop(at)

    def pause(self, at: int) -> None:
        self.timeline.pause(at)

    def resume(self, at: int) -> None:
        self.timeline.resume(at)

    # --- frames ---------------------------------------------------------------------------------

    def active(self, start: int) -> bool:
        """Whether the prompt can be heard in a frame starting at ``start`` (played, or still echoing)."""
        if self.prompt is None or not self.timeline.spans:
            return False
        end = self.timeline.last_end()
        return end is None or start < end + self._max_delay + self._n

    def judge(self, samples: np.ndarray, start: int) -> EchoVerdict:
        """The verdict on one frame of the line starting at stream sample ``start``."""
        if not self.active(start):
            return NO_REFERENCE
        y = band_energies(samples[None, :], self.rate)[0]
        energy = float(np.add.reduce(y))  # y.sum() without its Python wrapper (so below)
        self._track_noise(y, energy)
        noise = self._noise if self._noise is not None else np.zeros_like(y)
        self._remember(y, start)
        if self.delay is None or self.gains is None:
            gain = self._prelock_gain if self.bound is None else np.minimum(self._prelock_gain, self.bound)
            echo = gain * self._loudest_reference(start, 0, self._max_delay)
        else:
            gains = self.gains if self.bound is None else np.minimum(self.gains, self.bound)
            echo = gains * self._loudest_reference(start, self.delay - self._slack, self.delay + self._slack)
        left = np.maximum(0.0, y - self._margin * echo - 2.0 * noise)
        ratio = float(np.add.reduce(left) / max(energy, 1e-6))
        delay_ms = None if self.delay is None else 1000.0 * self.delay / self.rate
        return EchoVerdict(reference=True, caller=ratio >= self.settings.caller_ratio, caller_ratio=ratio,
                           delay_ms=delay_ms, trusted=self.trusted)

    def _track_noise(self, y: np.ndarray, energy: float | None = None) -> None:
        """Per band: falls fast to quieter frames; rises about 5 dB per second, but only on frames that
        the judge itself would take for noise (their energy within ``NOISE_FRAME`` of the noise's).

        A frame that stands out (the caller, or the prompt's echo) never raises it, as voiced frames never
        raise the VAD's floor: otherwise it crept up 5 dB/s through a caller's words, and on a hissy line
        (-42 dBFS) the caller's weaker phonemes, a few dB over the hiss, were taken out as "noise" and
        the utterance split at the bridge (``overprompt_10`` in hiss). ``energy``: ``float(y.sum())``.
        """
        if self._noise is None:
            self._noise = y.copy()
            return
        quieter = y < self._noise
        falls = self._noise + 0.3 * (y - self._noise)
        if (float(y.sum()) if energy is None else energy) <= NOISE_FRAME * float(np.add.reduce(self._noise)):
            self._noise = np.where(quieter, falls, self._noise * 1.023)
        else:
            self._noise = np.where(quieter, falls, self._noise)

    def _rows(self, starts: np.ndarray) -> np.ndarray:
        """Prompt band rows for frames starting at these stream samples; -1 where nothing played."""
        assert self.prompt is not None
        pos = self.timeline.positions(starts)
        rows = np.where(pos >= 0, pos // self.prompt.hop, -1)
        return np.where(rows < len(self.prompt.bands), rows, -1)

    def _reference(self, start: int, lo: int, hi: int) -> np.ndarray:
        """Prompt band energies for this frame at every candidate delay in [lo, hi] samples: (delays, bands)."""
        assert self.prompt is not None
        step = self.prompt.hop * self.DELAY_STEP_HOPS
        delays = np.arange(max(0, lo), max(0, hi) + 1, step)
        rows = self._rows(start - delays)
        bands = self.prompt.bands[np.maximum(rows, 0)]
        return np.where((rows >= 0)[:, None], bands, 0.0)

    def _loudest_reference(self, start: int, lo: int, hi: int) -> np.ndarray:
        """``_reference(start, lo, hi).max(axis=0)``: per band, the loudest prompt row over the candidate delays.

        Within one span of the timeline the delays' rows step back ``DELAY_STEP_HOPS`` rows at a
        time, so each span adds the max of one strided slice of the prompt's rows; delays where
        nothing played add zeros, which band energies (never negative) cannot exceed. Spans that
        overlap (markers out of order) take the plain way, where the later span wins.
        """
        prompt = self.prompt
        assert prompt is not None
        if not self.timeline.in_order():
            return self._reference(start, lo, hi).max(axis=0)
        hops = self.DELAY_STEP_HOPS
        step = prompt.hop * hops
        first = max(0, lo)  # the smallest candidate delay
        count = (max(0, hi) - first) // step + 1  # candidates: first + k * step, k < count
        loudest = None
        for span_start, pos, span_end in self.timeline.spans:
            back = start - first - int(span_start)  # the stream sample at candidate k is span_start + back - k * step
            if back < 0:
                continue
            k_hi = min(count - 1, back // step)  # still at or after the span's start
            k_lo = 0 if span_end is None else max(0, (start - first - int(span_end)) // step + 1)  # before its end
            row0 = (back + int(pos)) // prompt.hop  # prompt row at k = 0; row0 - hops * k at candidate k
            k_lo = max(k_lo, (row0 - len(prompt.bands)) // hops + 1)  # within the prompt
            if k_lo > k_hi:
                continue
            if k_lo == 0 and k_hi == count - 1 and count >= self.TABLE_ROWS:  # the whole run: two table rows
                ahead, behind = prompt.window_maxima(hops, count)
                peak = np.maximum(ahead[row0 - hops * k_hi], behind[row0])
            else:
                peak = np.maximum.reduce(prompt.bands[row0 - hops * k_hi:row0 - hops * k_lo + 1:hops], axis=0)
            loudest = peak if loudest is None else np.maximum(loudest, peak)
        return loudest if loudest is not None else np.zeros(prompt.bands.shape[1], prompt.bands.dtype)

    def _remember(self, y: np.ndarray, start: int) -> None:
        self._hist_y.append(y)
        self._hist_start.append(start)
        if len(self._hist_y) > self._history_frames:
            del self._hist_y[0], self._hist_start[0]
        self._since_estimate += 1
        quick = self.delay is None or (not self.confirmed and self._unconfirmed_locks <= self.settings.confirm_checks)
        every = self._estimate_every if quick else 5 * self._estimate_every  # re-check slower once confirmed
        if self._since_estimate >= every and len(self._hist_y) >= self._history_frames // 2:
            self._since_estimate = 0
            self._estimate()

    def _estimate(self) -> None:
        """Delay by log-energy correlation (a few wide bands) over the history, then per-band gains there."""
        assert self.prompt is not None
        prompt = self.prompt
        step = prompt.hop * self.DELAY_STEP_HOPS
        delays = np.arange(0, self._max_delay + 1, step)
        points, lattice = self._history_rows(step, len(delays))  # rows[f, d] = points[lattice.at[f, d]]
        if not np.any(points >= 0):
            return
        at = lattice.at
        y = np.array(self._hist_y)  # (f, b)
        self._update_bound(points, lattice, y, int(self._hist_start[-1]))
        silence = len(prompt.coarse_log) - 1
        point_log = np.take(prompt.coarse_log, np.where(points >= 0, points, silence), axis=0)  # (points, 4)
        ly = np.log(coarse_bands(y) + 1.0).astype(np.float64)
        ly_c = ly - ly.mean()
        # one shift for all delays keeps the sums small; the mean is over (f, d, 4), as the sums below
        point_log = point_log.astype(np.float64) - float(np.take(point_log, at, axis=0).mean())
        lr = np.take(point_log, at, axis=0)  # (f, d, 4)
        n = lr.shape[0] * lr.shape[2]
        lr_sum = np.take(_sum_bands(point_log), at).sum(axis=0)  # lr.sum(axis=(0, 2)), bit for bit
        # Pearson correlation per delay over (frames, bands), as sums: ly_c has zero mean, so the
        # prompt's own mean drops out of the numerator; a delay where the prompt is constant scores 0
        num = np.einsum("fb,fdb->d", ly_c, lr)
        lr_var = np.einsum("fdb,fdb->d", lr, lr) - lr_sum ** 2 / n
        flat = lr_var <= 1e-9 * n
        den = np.sqrt(float(np.sum(ly_c ** 2)) * np.where(flat, 1.0, lr_var)) + 1e-9
        corr = np.where(flat, 0.0, num / den)
        best = int(np.argmax(corr))
        self.correlation = float(corr[best])
        if self.correlation < self.settings.lock_correlation:
            return
        sure = self.correlation >= self.settings.confirm_correlation
        self.confirmed = self.delay is not None and abs(int(delays[best]) - self.delay) <= self._slack
        self.trusted = self.confirmed and sure and self._sure_lock
        self._sure_lock = sure
        self._unconfirmed_locks = 0 if self.confirmed else self._unconfirmed_locks + 1
        self.delay = int(delays[best])
        rows = np.take(points, at[:, best])
        r = np.where((rows >= 0)[:, None], prompt.bands[np.maximum(rows, 0)], 0.0)
        floor = 1e-3 * max(float(r.max()), 1.0)
        loud = r > np.percentile(r, 50, axis=0, keepdims=True)
        gains = _masked_percentile(y / np.maximum(r, 1e-6), loud & (r > floor), self.settings.gain_percentile)
        fallback = (float(np.median(gains[np.isfinite(gains)])) if np.any(np.isfinite(gains))
                    else 10 ** (self.settings.prelock_gain_db / 10))
        self.gains = np.where(np.isfinite(gains), gains, fallback).astype(np.float32)

    def _history_rows(self, step: int, delays: int) -> tuple[np.ndarray, _Lattice]:
        """Prompt rows of the history's frames at candidate delays ``k * step``, k < ``delays``, as
        ``(points, lattice)``: frame f's row at delay k is ``points[lattice.at[f, k]]`` (-1 where nothing played).

        Frames 20 ms apart and delays a whole fraction of that apart meet on a lattice of stream
        samples (frame f at delay k is lattice point ``q * f - k``): about 300 points, each looked
        up, gathered and compared once, for 6000 (frame, delay) pairs.
        """
        starts, n = self._hist_start, self._n
        if n % step == 0 and delays >= n // step and all(b - a == n for a, b in zip(starts, starts[1:])):
            q = n // step
            lattice = starts[0] + step * np.arange(1 - delays, q * (len(starts) - 1) + 1)
            return self._rows(lattice), _frame_lattice(len(starts), delays, q)
        first = np.array(starts)
        rows = self._rows(first[:, None] - step * np.arange(delays)[None, :])
        return rows.ravel(), _Lattice.of(np.arange(rows.size).reshape(rows.shape))

    def _update_bound(self, points: np.ndarray, lattice: _Lattice, y: np.ndarray, now: int) -> None:
        """Fold the history into ``bound``: per band, the largest over delays of the median line/prompt ratio.

        The line's energy is taken above its noise floor (a line carrying only hiss shows no echo; the
        judge takes the noise out on its own), over the frames where the prompt is within 20 dB of its
        loudest in that band. The prompt's rows at every other candidate delay are
        ``points[lattice.bound_at.T]`` (frames, delays), -1 where nothing played (see
        ``_history_rows``); ``y``: (frames, bands).

        Worked band-major, (bands, delays, frames), so that the sort runs along contiguous frames;
        only bands that every delay has tested are sorted (one delay not tested yet leaves a band open).
        """
        assert self.prompt is not None
        s = self.settings
        prompt = self.prompt
        at = lattice.bound_at  # (delays, frames)
        energy = np.take(prompt.bands_by_band, np.maximum(points, 0), axis=1)  # (bands, points)
        loud = (points >= 0) & (energy > prompt.loud_floor[:, None])  # (bands, points)
        # loud frames per (band, delay): whole numbers, exact in float32 whatever the order of the sum
        count = (loud.astype(np.float32) @ lattice.bound_count).astype(np.intp)  # (bands, delays)
        fresh = np.full(len(count), np.inf, dtype=np.float32)  # a delay not tested yet: no bound
        tested = np.flatnonzero(count.min(axis=1) >= s.bound_min_frames)
        if len(tested):
            above = np.maximum(y - (self._noise if self._noise is not None else 0.0), 0.0).T[tested]  # (tested, frames)
            ref = np.take(np.maximum(energy[tested], 1e-6), at, axis=1)  # (tested, delays, frames)
            ratio = np.full(ref.shape, np.inf, dtype=np.float32)
            np.divide(above[:, None, :], ref, out=ratio, where=np.take(loud[tested], at, axis=1))
            ratio.sort(axis=-1)  # the loud frames first, in order
            middle = (np.maximum(count[tested], 1) - 1) // 2  # (tested, delays): the median's place in each row
            rows = ratio.reshape(-1, ratio.shape[-1])
            fresh[tested] = rows[np.arange(len(rows)), middle.ravel()].reshape(middle.shape).max(axis=1)
        fresh = np.maximum(fresh, BOUND_FLOOR).astype(np.float32)
        if self.bound is None:
            self.bound = fresh
        else:
            rise = 10 ** (s.bound_rise_db_per_s * max(0, now - self._bound_at) / self.rate / 10)
            self.bound = np.minimum(self.bound * np.float32(rise), fresh)
        self._bound_at = now


class _Lattice(NamedTuple):
    """Where each (frame, delay) of the history finds its prompt row among the looked-up points."""

    at: np.ndarray  # (frames, delays) point of each pair
    bound_at: np.ndarray  # (delays / 2, frames): every other delay (the bound's), delay-major, contiguous
    bound_count: np.ndarray  # (points, delays / 2) float32: how many frames meet at a point, per delay of the bound

    @classmethod
    def of(cls, at: np.ndarray) -> "_Lattice":
        bound_at = np.ascontiguousarray(at[:, ::2].T)
        count = np.zeros((int(at.max()) + 1, len(bound_at)), dtype=np.float32)
        np.add.at(count, (bound_at, np.arange(len(bound_at))[:, None]), 1.0)
        return cls(at, bound_at, count)


@functools.lru_cache(maxsize=128)
def _frame_lattice(frames: int, delays: int, q: int) -> _Lattice:
    """Frames ``q`` delay steps apart: frame f at delay k is lattice point ``q * f - k``, counted from the
    first (f = 0, k = delays - 1)."""
    return _Lattice.of(q * np.arange(frames)[:, None] - np.arange(delays)[None, :] + (delays - 1))


def _sum_bands(x: np.ndarray) -> np.ndarray:
    """``x``'s last axis (a few bands) summed one by one, in order: so numpy's ``x.sum(axis=(0, 2))`` of
    (frames, delays, bands) adds each (frame, delay)'s bands, then the frames in order (``lr_sum``)."""
    total = x[..., 0]
    for band in range(1, x.shape[-1]):
        total = total + x[..., band]
    return total


def _masked_percentile(values: np.ndarray, mask: np.ndarray, q: float) -> np.ndarray:
    """Per column, the ``q`` percentile (linear, as numpy's) of ``values`` where ``mask``; NaN for an empty column.

    np.nanpercentile gives the same, at about 3 ms for 50 x 13 values: too much once per second per stream.
    """
    ordered = np.sort(np.where(mask, values, np.inf), axis=0)
    count = mask.sum(axis=0)
    pos = q / 100.0 * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    low = np.take_along_axis(ordered, lo[None], axis=0)[0]
    high = np.take_along_axis(ordered, hi[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        out = low + (high - low) * (pos - lo)
    return np.where(count > 0, out, np.nan)
