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
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class EchoVerdict:
    """One frame: whether the prompt could be in it, the share of energy left over, and the path used."""

    reference: bool
    caller: bool
    caller_ratio: float
    delay_ms: float | None


NOISE_FRAME = 2.0  # a frame within 3 dB of the noise's energy is noise (the judge takes out twice the noise)
BOUND_FLOOR = 1e-4  # the bound never falls below -40 dB, so that it can rise again within seconds

NO_REFERENCE = EchoVerdict(reference=False, caller=True, caller_ratio=1.0, delay_ms=None)


class EchoGate:
    """One stream's echo gate (see the module docstring)."""

    DELAY_STEP_HOPS = 2  # 5 ms between candidate delays

    def __init__(self, rate: int, settings: EchoSettings | None = None) -> None:
        self.settings = s = settings or EchoSettings()
        self.rate = rate
        self.timeline = PlaybackTimeline(pause_latency=s.pause_latency_ms * rate // 1000)
        self.prompt: PromptBands | None = None
        self._n = frame_len(rate)
        self._history_frames = max(10, s.history_ms // 20)
        self._estimate_every = max(1, s.estimate_every_ms // 20)
        self._max_delay = s.max_delay_ms * rate // 1000
        self._noise: np.ndarray | None = None
        self.bound: np.ndarray | None = None  # per band: the most the line has shown it returns (see above)
        self._bound_at = 0  # stream sample of the last bound update
        self._reset_path()

    def _reset_path(self) -> None:
        self._hist_y: list[np.ndarray] = []
        self._hist_start: list[int] = []
        self._since_estimate = 0
        self.delay: int | None = None  # samples
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
        s = self.settings
        y = band_energies(samples[None, :], self.rate)[0]
        self._track_noise(y)
        noise = self._noise if self._noise is not None else np.zeros_like(y)
        self._remember(y, start)
        if self.delay is None or self.gains is None:
            gain = 10 ** (s.prelock_gain_db / 10)
            gain = gain if self.bound is None else np.minimum(gain, self.bound)
            echo = gain * self._reference(start, 0, self._max_delay).max(axis=0)
        else:
            slack = s.slack_ms * self.rate // 1000
            gains = self.gains if self.bound is None else np.minimum(self.gains, self.bound)
            echo = gains * self._reference(start, self.delay - slack, self.delay + slack).max(axis=0)
        left = np.maximum(0.0, y - 10 ** (s.margin_db / 10) * echo - 2.0 * noise)
        ratio = float(left.sum() / max(float(y.sum()), 1e-6))
        delay_ms = None if self.delay is None else 1000.0 * self.delay / self.rate
        return EchoVerdict(reference=True, caller=ratio >= s.caller_ratio, caller_ratio=ratio, delay_ms=delay_ms)

    def _track_noise(self, y: np.ndarray) -> None:
        """Per band: falls fast to quieter frames; rises about 5 dB per second, but only on frames that
        the judge itself would take for noise (their energy within ``NOISE_FRAME`` of the noise's).

        A frame that stands out (the caller, or the prompt's echo) never raises it, as voiced frames never
        raise the VAD's floor: otherwise it crept up 5 dB/s through a caller's words, and on a hissy line
        (-42 dBFS) the caller's weaker phonemes, a few dB over the hiss, were taken out as "noise" and
        the utterance split at the bridge (``overprompt_10`` in hiss).
        """
        if self._noise is None:
            self._noise = y.copy()
            return
        quieter = y < self._noise
        falls = self._noise + 0.3 * (y - self._noise)
        if float(y.sum()) <= NOISE_FRAME * float(self._noise.sum()):
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

    def _remember(self, y: np.ndarray, start: int) -> None:
        self._hist_y.append(y)
        self._hist_start.append(start)
        if len(self._hist_y) > self._history_frames:
            del self._hist_y[0], self._hist_start[0]
        self._since_estimate += 1
        every = self._estimate_every if self.delay is None else 5 * self._estimate_every  # re-check slower once locked
        if self._since_estimate >= every and len(self._hist_y) >= self._history_frames // 2:
            self._since_estimate = 0
            self._estimate()

    def _estimate(self) -> None:
        """Delay by log-energy correlation (a few wide bands) over the history, then per-band gains there."""
        assert self.prompt is not None
        prompt = self.prompt
        step = prompt.hop * self.DELAY_STEP_HOPS
        delays = np.arange(0, self._max_delay + 1, step)
        starts = np.array(self._hist_start)
        rows = self._rows(starts[:, None] - delays[None, :])  # (frames, delays)
        if not np.any(rows >= 0):
            return
        self._update_bound(rows[:, ::2], np.array(self._hist_y), int(starts[-1]))
        silence = len(prompt.coarse_log) - 1
        lr = prompt.coarse_log[np.where(rows >= 0, rows, silence)]  # (f, d, 4)
        y = np.array(self._hist_y)  # (f, b)
        ly = np.log(coarse_bands(y) + 1.0).astype(np.float64)
        ly_c = ly - ly.mean()
        lr = lr.astype(np.float64) - float(lr.mean())  # one shift for all delays keeps the sums small
        n = lr.shape[0] * lr.shape[2]
        lr_sum = lr.sum(axis=(0, 2))
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
        self.delay = int(delays[best])
        r = np.where((rows[:, best] >= 0)[:, None], prompt.bands[np.maximum(rows[:, best], 0)], 0.0)
        floor = 1e-3 * max(float(r.max()), 1.0)
        loud = r > np.percentile(r, 50, axis=0, keepdims=True)
        gains = _masked_percentile(y / np.maximum(r, 1e-6), loud & (r > floor), self.settings.gain_percentile)
        fallback = (float(np.median(gains[np.isfinite(gains)])) if np.any(np.isfinite(gains))
                    else 10 ** (self.settings.prelock_gain_db / 10))
        self.gains = np.where(np.isfinite(gains), gains, fallback).astype(np.float32)

    def _update_bound(self, rows: np.ndarray, y: np.ndarray, now: int) -> None:
        """Fold the history into ``bound``: per band, the largest over delays of the median line/prompt ratio.

        The line's energy is taken above its noise floor (a line carrying only hiss shows no echo; the
        judge takes the noise out on its own), over the frames where the prompt is within 20 dB of its
        loudest in that band. ``rows``: (frames, delays) prompt rows (-1: nothing played at that
        delay), ``y``: (frames, bands).
        """
        assert self.prompt is not None
        s = self.settings
        bands = self.prompt.bands
        ref = bands[np.maximum(rows, 0)]  # (frames, delays, bands)
        loud = (rows >= 0)[:, :, None] & (ref > 1e-2 * np.maximum(bands.max(axis=0), 1.0))
        count = loud.sum(axis=0)  # (delays, bands)
        above = np.maximum(y - (self._noise if self._noise is not None else 0.0), 0.0)
        ratio = np.where(loud, above[:, None, :] / np.maximum(ref, 1e-6), np.inf)
        ratio.sort(axis=0)  # the loud frames first, in order
        median = np.take_along_axis(ratio, (np.maximum(count, 1) - 1)[None] // 2, axis=0)[0]
        median = np.where(count >= s.bound_min_frames, median, np.inf)  # a delay not tested yet: no bound
        fresh = np.maximum(median.max(axis=0), BOUND_FLOOR).astype(np.float32)
        if self.bound is None:
            self.bound = fresh
        else:
            rise = 10 ** (s.bound_rise_db_per_s * max(0, now - self._bound_at) / self.rate / 10)
            self.bound = np.minimum(self.bound * np.float32(rise), fresh)
        self._bound_at = now


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
