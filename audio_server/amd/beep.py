"""Voicemail beep detection: a steady, pure tone of 0.2-1.5 s between about 400 Hz and 2 kHz.

Sans-I/O: :meth:`BeepDetector.feed` takes frames and returns a :class:`~audio_server.events.Beep`
when a tone ends. Each frame is screened cheaply (level, share of energy at the spectral peak);
a run of such frames at one frequency is then checked as a whole, at fine frequency resolution,
for what tells a beep from look-alikes: one spectral line (US ringback 440+480 Hz and DTMF pairs
have two), no harmonics (a sung vowel has many), a steady pitch (vibrato) and a steady level
(two close tones beat).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from callbot.events import Beep
from callbot.audio_server.pipeline.frames import Frame
from callbot.config import AmdSettings

_FULL_SCALE = 32768.0
# Where a voice whose strongest harmonic is at f has more energy: its overtones, or its fundamental
# and the harmonic above when f is itself the 2nd harmonic.
_RELATIVES = (2.0, 3.0, 0.5, 1.5, 1 / 3)


@dataclass(frozen=True)
class FrameTone:
    """The screening result of one frame: its peak frequency (None if not tonal) and its RMS."""

    freq_hz: float | None
    rms: float


@dataclass
class _Run:
    """Consecutive tonal frames at about one frequency."""

    start_t: float
    end_t: float
    rate: int
    chunks: list[np.ndarray] = field(default_factory=list)
    freqs: list[float] = field(default_factory=list)
    rms: list[float] = field(default_factory=list)
    too_long: bool = False


def _peak_hz(power: np.ndarray, k: int, hz_per_bin: float) -> float:
    """Frequency of bin ``k`` refined by a parabola through the log power of its neighbours."""
    if 0 < k < len(power) - 1:
        # np.log, not math.log: the two differ in the last bit on some values (numpy's SIMD log);
        # the rest is the same double arithmetic on Python floats as it was on np.float64.
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-12).tolist()
        den = a - 2 * b + c
        if den < 0:
            return (k + 0.5 * (a - c) / den) * hz_per_bin
    return k * hz_per_bin


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


@functools.lru_cache(maxsize=16)
def _fft_len(m: int) -> int:
    """FFT length for ``m`` samples: at least twice as long (and 2048) for a fine peak estimate."""
    return 1 << max(11, int(np.ceil(np.log2(m * 2))))


try:  # numpy >= 2: the FFT ufunc behind np.fft.rfft (see audio_server/echo/reference.py)
    from numpy.fft._pocketfft_umath import rfft_n_even as _rfft_n_even
except ImportError:  # pragma: no cover - another numpy: np.fft.rfft itself
    _rfft_n_even = None


def _rfft(x: np.ndarray, n: int) -> np.ndarray:
    """``np.fft.rfft(x, n)`` of a 1-D float64 ``x`` with ``len(x) <= n``, ``n`` even, without its argument
    handling: the very call np.fft.rfft makes (the ufunc zero-pads to the length of ``out``), same bits."""
    if _rfft_n_even is None or n % 2 or x.ndim != 1 or x.dtype != np.float64:
        return np.fft.rfft(x, n)
    return _rfft_n_even(x, 1, axes=[(0,), (), (0,)], out=np.empty(n // 2 + 1, dtype=np.complex128))


def _power(x: np.ndarray, window: np.ndarray, n: int) -> np.ndarray:
    """|rfft((x - mean) * window, n)|**2; ``x`` (float64, ours) is overwritten."""
    x -= np.add.reduce(x) / len(x)  # x.mean(): the same sum, the same division
    x *= window
    power = np.abs(_rfft(x, n))
    return np.square(power, out=power)  # what ``** 2`` calls


def _spectrum(x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Hann-windowed power spectrum, zero-padded for a fine peak estimate; returns (power, Hz per bin)."""
    n = _fft_len(len(x))
    return _power(np.array(x, dtype=np.float64), _hann(len(x)), n), rate / n


def _band_energy(power: np.ndarray, hz_per_bin: float, centre: float, half_width: float) -> float:
    lo = max(0, math.floor((centre - half_width) / hz_per_bin))
    hi = math.ceil((centre + half_width) / hz_per_bin) + 1
    return float(np.add.reduce(power[lo:hi]))


class _Geometry:
    """What screening a frame of one length at one rate needs, computed once."""

    __slots__ = ("n", "window", "hz", "lo", "hi", "lobe")

    def __init__(self, s: AmdSettings, rate: int, m: int) -> None:
        self.n = n = _fft_len(m)
        self.window = _hann(m)
        self.hz = hz = rate / n
        self.lo, self.hi = int(s.beep_min_hz / hz), min(n // 2, int(s.beep_max_hz / hz) + 1)  # len(power) - 1
        self.lobe = 2.4 * rate / m  # a little over the Hann main lobe of one frame


class BeepDetector:
    """Finds beeps in a stream of frames; one Beep per tone, dated to the tone's end."""

    def __init__(self, settings: AmdSettings) -> None:
        self.s = settings
        self._run: _Run | None = None
        self._next_start: int | None = None
        self._geometry: dict[tuple[int, int], _Geometry] = {}  # per (rate, frame length)
        # The level test ``20 * log10(rms / full scale) < beep_min_dbfs`` as RMS bounds, 1e-6 (9e-6 dB)
        # either side of the threshold: only between them is the logarithm taken, as before, so its
        # verdict is the same even where np.log10 and the threshold's rounding differ in the last bit.
        threshold = _FULL_SCALE * 10.0 ** (settings.beep_min_dbfs / 20)
        self._quiet, self._loud = threshold * (1 - 1e-6), threshold * (1 + 1e-6)

    def feed(self, frame: Frame) -> list[Beep]:
        """Screen one frame; returns a Beep when the tone in progress ended just before it."""
        out: list[Beep] = []
        if self._next_start is not None and frame.start != self._next_start:
            out += self._close()  # a stream gap ends any tone
        self._next_start = frame.start + len(frame.samples)
        tone = self.screen(frame)
        run = self._run
        if run is not None and (tone.freq_hz is None or abs(tone.freq_hz - float(np.median(run.freqs)))
                                > self.s.beep_freq_tolerance_hz):
            out += self._close()
            run = None
        if tone.freq_hz is None:
            return out
        if run is None:
            run = self._run = _Run(start_t=frame.t, end_t=frame.t, rate=frame.rate)
        run.end_t = frame.end_t
        if (run.end_t - run.start_t) * 1000 > self.s.beep_max_ms + frame.duration_ms:
            run.too_long = True
            run.chunks.clear()  # never a beep now: keep nothing but its frequency
            return out
        run.chunks.append(frame.samples.astype(np.float64))
        run.freqs.append(tone.freq_hz)
        run.rms.append(tone.rms)
        return out

    def flush(self) -> list[Beep]:
        """End of stream: a tone still in progress ends here."""
        return self._close()

    def screen(self, frame: Frame) -> FrameTone:
        """Is this frame loud and dominated by one spectral peak in the beep band?

        It runs on every frame until the line is a person, so it is the plain numpy version (kept as
        ``reference_screen`` in tests/test_beep_detector.py, which checks the bits) made cheap without
        changing a bit of its FrameTone: the constants of a frame length are cached, the level test
        compares the RMS with precomputed bounds (taking the logarithm only right at the threshold),
        and the ufuncs are called without numpy's Python wrappers (mean, sum, rfft).
        """
        s = self.s
        samples = frame.samples
        m = len(samples)
        if not m:
            return FrameTone(None, 0.0)
        rms = math.sqrt(np.add.reduce(np.square(samples, dtype=np.float64)) / m)  # sqrt(mean(x * x))
        if not rms > self._loud and (rms < self._quiet or rms <= 0
                                     or 20 * np.log10(rms / _FULL_SCALE) < s.beep_min_dbfs):
            return FrameTone(None, rms)
        g = self._geometry.get((frame.rate, m))
        if g is None:
            g = self._geometry[frame.rate, m] = _Geometry(s, frame.rate, m)
        power = _power(samples.astype(np.float64), g.window, g.n)
        k = g.lo + int(power[g.lo:g.hi].argmax())
        freq = _peak_hz(power, k, g.hz)
        total = float(np.add.reduce(power))
        if not total:  # a constant frame (or one sample): nothing but DC, which the mean removal took
            return FrameTone(None, rms)  # (the screen used to raise ZeroDivisionError here)
        purity = _band_energy(power, g.hz, freq, g.lobe) / total
        ok = purity >= s.beep_frame_purity and s.beep_min_hz <= freq <= s.beep_max_hz
        return FrameTone(freq if ok else None, rms)

    def _close(self) -> list[Beep]:
        run, self._run = self._run, None
        if run is None or run.too_long:
            return []
        duration_ms = round((run.end_t - run.start_t) * 1000)
        if duration_ms < self.s.beep_min_ms:
            return []
        freq = self._verify(run)
        if freq is None:
            return []
        return [Beep(t=round(run.end_t, 3), freq_hz=round(float(freq), 1), duration_ms=duration_ms)]

    def _verify(self, run: _Run) -> float | None:
        """The whole-tone checks; returns the tone's frequency, or None when it is not a beep."""
        s = self.s
        inner = run.rms[1:-1] or run.rms  # the edge frames are partly silence
        if np.std(inner) > s.beep_max_level_cv * np.mean(inner):
            return None  # beating or a changing level: two close tones, or a voice
        if np.std(run.freqs[1:-1] or run.freqs) > s.beep_max_freq_std_hz:
            return None  # vibrato or a glide
        x = np.concatenate(run.chunks)
        power, hz = _spectrum(x, run.rate)
        lo, hi = int(s.beep_min_hz / hz), int(s.beep_max_hz / hz) + 1
        k = lo + int(np.argmax(power[lo:hi]))
        freq = _peak_hz(power, k, hz)
        line = _band_energy(power, hz, freq, s.beep_bandwidth_hz)
        if line / float(power.sum()) < s.beep_purity:
            return None  # energy elsewhere: a second tone or a broad sound
        family = sum(_band_energy(power, hz, m * freq, s.beep_bandwidth_hz) for m in _RELATIVES)
        if family > s.beep_max_harmonic_ratio * line:
            return None  # a voice: the peak has harmonics, or is itself a harmonic of a lower pitch
        return freq
