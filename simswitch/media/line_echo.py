"""Line echo: the robot's own playback coming back in the callee's audio, late, quieter and phone-band.

A callee option (``fixture/x.wav?echo_db=-12&echo_delay_ms=120``) asks for it. Every 20 ms tick
the channel writes a frame of the prompt toward the callee; the far end's hybrid sends it back
``delay_ms`` later, ``level_db`` (negative: the echo return loss) below it, band-limited to
300-3400 Hz as a telephone line carries it, summed into what the callee sends. Sans-I/O: frames
in, frames out; a linear-phase FIR (its group delay counted in the delay) keeps state across frames.
"""

from __future__ import annotations

import functools

import numpy as np

BAND_HZ = (300.0, 3400.0)
TAPS_MS = 8.0  # FIR length: 129 taps at 16 kHz, 65 at 8 kHz


@functools.lru_cache(maxsize=4)
def phone_band_taps(rate: int) -> np.ndarray:
    """A windowed-sinc band-pass for 300-3400 Hz at ``rate`` (odd length, linear phase, unity in band)."""
    n = int(rate * TAPS_MS / 1000) | 1
    t = np.arange(n) - (n - 1) / 2
    lo, hi = (f / rate for f in BAND_HZ)
    taps = (2 * hi * np.sinc(2 * hi * t) - 2 * lo * np.sinc(2 * lo * t)) * np.blackman(n)
    centre = np.exp(-2j * np.pi * np.sqrt(lo * hi) * t)  # normalise at the band's centre
    return (taps / abs(np.sum(taps * centre))).astype(np.float32)


class LineEcho:
    """One call's echo path: ``add(read, written)`` per tick returns the callee's frame with the echo in it."""

    def __init__(self, rate: int, level_db: float, delay_ms: float) -> None:
        if level_db > 0:
            raise ValueError(f"echo level {level_db} dB: an echo is quieter than the playback (use 0 or less)")
        self.rate = rate
        self.level_db, self.delay_ms = level_db, delay_ms
        self.gain = 10 ** (level_db / 20)
        self._taps = phone_band_taps(rate)
        self._history = np.zeros(len(self._taps) - 1, np.float32)  # the FIR's memory of written audio
        group_delay = (len(self._taps) - 1) // 2
        self._line = np.zeros(max(0, round(delay_ms * rate / 1000) - group_delay), np.float32)  # delay line

    def add(self, read: np.ndarray, written: np.ndarray | None) -> np.ndarray:
        """The callee's ``read`` frame plus the echo of what was written ``delay_ms`` ago (None: nothing)."""
        n = len(read)
        x = np.zeros(n, np.float32) if written is None else written.astype(np.float32)
        x[x == -1] = 0.0  # FreeSWITCH's silence fill (0xffff) is not sound
        padded = np.concatenate([self._history, x])
        self._history = padded[-len(self._history):] if len(self._history) else self._history
        filtered = np.convolve(padded, self._taps, mode="valid") * self.gain
        line = np.concatenate([self._line, filtered])
        echo, self._line = line[:n], line[n:]
        if not np.any(echo):
            return read
        return np.clip(np.round(read.astype(np.float32) + echo), -32768, 32767).astype(np.int16)
