"""The robot's prompt as an echo reference: its band energies every 2.5 ms, and where it is in stream time.

``PromptBands`` is computed once per prompt file and rate (cached): the echo gate only ever
compares band energies, so the prompt's samples are not kept. ``PlaybackTimeline`` maps stream
samples to prompt positions through start, pause, resume and stop markers; it never reads a clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOP_MS = 2.5
BAND_EDGES_HZ = (200, 400, 600, 800, 1000, 1250, 1500, 1750, 2000, 2300, 2600, 2900, 3200, 3600)


def frame_len(rate: int) -> int:
    return rate // 50  # 20 ms: the pipeline's frame, and the window every band energy is measured over


@functools.lru_cache(maxsize=4)
def band_matrix(rate: int) -> np.ndarray:
    """(FFT bins, bands) 0/1 matrix: which rfft bin of a 20 ms frame falls in which band."""
    n = frame_len(rate)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    edges = [e for e in BAND_EDGES_HZ if e < rate / 2]
    m = np.zeros((len(freqs), len(edges) - 1), dtype=np.float32)
    for b in range(len(edges) - 1):
        m[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
    return m


@functools.lru_cache(maxsize=4)
def _window(rate: int) -> np.ndarray:
    return np.hanning(frame_len(rate)).astype(np.float32)


def band_energies(frames: np.ndarray, rate: int) -> np.ndarray:
    """Band energies of (k, 20 ms) frames of int16-scaled samples: (k, bands)."""
    spectrum = np.fft.rfft(frames.astype(np.float32) * _window(rate), axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    return power @ band_matrix(rate)


@dataclass(frozen=True)
class PromptBands:
    """A prompt's band energies, one row every ``hop`` samples (the 20 ms frame starting there)."""

    bands: np.ndarray  # (rows, bands)
    hop: int
    samples: int
    coarse_log: np.ndarray  # (rows + 1, COARSE) log energies of a few wide bands; the last row is silence
    floor: float  # energy the logs are floored at

    @classmethod
    def of(cls, samples: np.ndarray, rate: int) -> "PromptBands":
        n = frame_len(rate)
        hop = int(rate * HOP_MS / 1000)
        x = np.concatenate([samples.astype(np.float32), np.zeros(n, np.float32)])
        rows = max(1, (len(samples) + hop - 1) // hop)
        idx = np.arange(rows)[:, None] * hop + np.arange(n)[None, :]
        bands = band_energies(x[idx], rate)
        coarse = coarse_bands(bands)
        floor = 1e-3 * max(float(coarse.max()), 1.0)
        coarse_log = np.log(np.vstack([coarse, np.zeros((1, coarse.shape[1]), np.float32)]) + floor)
        return cls(bands=bands, hop=hop, samples=len(samples), coarse_log=coarse_log.astype(np.float32), floor=floor)


COARSE = 4


def coarse_bands(bands: np.ndarray) -> np.ndarray:
    """A few wide bands (sums of neighbouring bands): enough to find the echo's delay, and cheap."""
    groups = np.array_split(np.arange(bands.shape[-1]), COARSE)
    return np.stack([bands[..., g].sum(axis=-1) for g in groups], axis=-1)


@functools.lru_cache(maxsize=64)
def load_prompt_bands(path: str, rate: int) -> PromptBands:
    """Read a prompt WAV (mono or the first channel), resample to ``rate`` if needed; cached per file and rate.

    This is the one file read of the echo path, done when the playback marker arrives (the shell
    may call it ahead of time to warm the cache).
    """
    import soundfile as sf

    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    x = data[:, 0] * 32768.0
    if file_rate != rate:
        t = np.arange(int(len(x) * rate / file_rate)) * (file_rate / rate)
        x = np.interp(t, np.arange(len(x)), x).astype(np.float32)
    return PromptBands.of(x, rate)


def resolve_prompt(prompts_dir: str | Path, file: str) -> Path:
    """The prompt file of a playback marker; ``..`` and absolute paths are refused (DESIGN section 2)."""
    rel = Path(file)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"playback file {file!r}: must be a relative path inside the prompts directory")
    return Path(prompts_dir) / rel


class PromptLoadError(ValueError):
    """A playback marker's file cannot serve as the echo reference; ``code`` goes in the ``error`` event."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def load_prompt_reference(prompts_dir: str | Path, file: str, rate: int) -> PromptBands:
    """The echo reference of a playback marker's ``file`` under ``prompts_dir`` (cached per file and rate).

    Raises PromptLoadError: ``prompt_not_found`` (outside the directory, or no such file) or
    ``prompt_unreadable`` (not audio that soundfile reads).
    """
    try:
        path = resolve_prompt(prompts_dir, file)
    except ValueError as exc:
        raise PromptLoadError("prompt_not_found", str(exc)) from None
    if not path.is_file():
        raise PromptLoadError("prompt_not_found", f"playback file {file!r}: no such file under the prompts "
                              f"directory {prompts_dir} ([prompts] dir); the echo of this prompt is not rejected")
    try:
        return load_prompt_bands(str(path), rate)
    except Exception as exc:  # soundfile raises its own error types for a bad or truncated file
        raise PromptLoadError("prompt_unreadable", f"playback file {file!r}: cannot read it as audio ({exc}); "
                              "the echo of this prompt is not rejected") from None


@dataclass
class PlaybackTimeline:
    """Which prompt sample plays at each stream sample: spans of (stream start, prompt start, stream end)."""

    pause_latency: int = 0  # samples between a pause/resume marker and the prompt going silent/on again
    spans: list[list[int | None]] = field(default_factory=list)

    def start(self, at: int) -> None:
        self.spans = [[at, 0, None]]

    def stop(self, at: int) -> None:
        if self.spans and self.spans[-1][2] is None:
            self.spans[-1][2] = max(at, int(self.spans[-1][0]))  # type: ignore[arg-type]

    def pause(self, at: int) -> None:
        self.stop(at + self.pause_latency)

    def resume(self, at: int) -> None:
        if not self.spans or self.spans[-1][2] is None:
            return
        start, pos, end = self.spans[-1]
        played = int(pos) + int(end) - int(start)  # type: ignore[arg-type]
        self.spans.append([at + self.pause_latency, played, None])

    def positions(self, stream_samples: np.ndarray) -> np.ndarray:
        """Prompt sample playing at each stream sample, -1 where nothing plays."""
        out = np.full(stream_samples.shape, -1, dtype=np.int64)
        for start, pos, end in self.spans:
            inside = stream_samples >= start
            if end is not None:
                inside &= stream_samples < end
            out = np.where(inside, stream_samples - int(start) + int(pos), out)  # type: ignore[arg-type]
        return out

    def last_end(self) -> int | None:
        """Stream sample where the last span ended (None while playing, or when nothing ever played)."""
        if not self.spans:
            return None
        return self.spans[-1][2]  # type: ignore[return-value]
