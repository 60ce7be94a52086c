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
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-12)
        den = a - 2 * b + c
        if den < 0:
            return (k + 0.5 * (a - c) / den) * hz_per_bin
    return k * hz_per_bin


@functools.lru_cache(maxsize=16)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n)


def _spectrum(x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Hann-windowed power spectrum, zero-padded for a fine peak estimate; returns (power, Hz per bin)."""
    n = 1 << max(11, int(np.ceil(np.log2(len(x) * 2))))
    power = np.abs(np.fft.rfft((x - x.mean()) * _hann(len(x)), n)) ** 2
    return power, rate / n


def _band_energy(power: np.ndarray, hz_per_bin: float, centre: float, half_width: float) -> float:
    lo = max(0, int(np.floor((centre - half_width) / hz_per_bin)))
    hi = int(np.ceil((centre + half_width) / hz_per_bin)) + 1
    return float(power[lo:hi].sum())


class BeepDetector:
    """Finds beeps in a stream of frames; one Beep per tone, dated to the tone's end."""

    def __init__(self, settings: AmdSettings) -> None:
        self.s = settings
        self._run: _Run | None = None
        self._next_start: int | None = None

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
        """Is this frame loud and dominated by one spectral peak in the beep band?"""
        x = frame.samples.astype(np.float64)
        rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
        if rms <= 0 or 20 * np.log10(rms / _FULL_SCALE) < self.s.beep_min_dbfs:
            return FrameTone(None, rms)
        power, hz = _spectrum(x, frame.rate)
        lo, hi = int(self.s.beep_min_hz / hz), min(len(power) - 1, int(self.s.beep_max_hz / hz) + 1)
        k = lo + int(np.argmax(power[lo:hi]))
        freq = _peak_hz(power, k, hz)
        lobe = 2.4 * frame.rate / len(x)  # a little over the Hann main lobe of one frame
        purity = _band_energy(power, hz, freq, lobe) / float(power.sum())
        ok = purity >= self.s.beep_frame_purity and self.s.beep_min_hz <= freq <= self.s.beep_max_hz
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
