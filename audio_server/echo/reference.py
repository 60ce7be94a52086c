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


try:  # numpy >= 2: the FFT ufunc behind np.fft.rfft, called as rfft calls it (norm "backward": factor 1)
    from numpy.fft._pocketfft_umath import rfft_n_even as _rfft_even, rfft_n_odd as _rfft_odd
except ImportError:  # pragma: no cover - another numpy: np.fft.rfft itself
    _rfft_even = _rfft_odd = None


def _rfft(x: np.ndarray) -> np.ndarray:
    """``np.fft.rfft(x, axis=-1)`` of float32 frames, without its argument handling: half the time of
    one 20 ms frame's FFT goes there, and the echo gate takes one per frame (tests check the bits)."""
    if _rfft_even is None or x.dtype != np.float32:
        return np.fft.rfft(x, axis=-1)
    n = x.shape[-1]
    out = np.empty(x.shape[:-1] + (n // 2 + 1,), dtype=np.complex64)
    axis = x.ndim - 1
    return (_rfft_even if n % 2 == 0 else _rfft_odd)(x, 1, axes=[(axis,), (), (axis,)], out=out)


def band_energies(frames: np.ndarray, rate: int) -> np.ndarray:
    """Band energies of (k, 20 ms) frames of int16-scaled samples: (k, bands)."""
    spectrum = _rfft(np.multiply(frames, _window(rate), dtype=np.float32))
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32, copy=False)
    return power @ band_matrix(rate)


@dataclass(frozen=True)
class PromptBands:
    """A prompt's band energies, one row every ``hop`` samples (the 20 ms frame starting there).

    What the echo gate derives from the prompt alone is derived once, on first use, and kept here
    (the ``functools.cached_property`` values), not once per frame or per path estimate.
    """

    bands: np.ndarray  # (rows, bands)
    hop: int
    samples: int
    coarse_log: np.ndarray  # (rows + 1, COARSE) log energies of a few wide bands; the last row is silence
    floor: float  # energy the logs are floored at

    @functools.cached_property
    def bands_by_band(self) -> np.ndarray:
        """``bands`` transposed, contiguous: (bands, rows)."""
        return np.ascontiguousarray(self.bands.T)

    @functools.cached_property
    def loud_floor(self) -> np.ndarray:
        """Per band, 20 dB below the prompt's loudest row there (at least 1e-2): (bands,)."""
        return 1e-2 * np.maximum(self.bands.max(axis=0), 1.0)

    @functools.cached_property
    def _window_maxima(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        return {}

    def window_maxima(self, stride: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Tables for the loudest of ``width`` rows ``stride`` apart: (rows, bands) each, ``(ahead, behind)``.

        For rows ``lo`` and ``hi = lo + stride * (width - 1)``, ``np.maximum(ahead[lo], behind[hi])`` is
        ``bands[lo:hi + 1:stride].max(axis=0)``: each row's class (``row % stride``) is cut in blocks of
        ``width``, ``ahead`` holds the max from a row to its block's end, ``behind`` from its block's
        start to the row, and such a run of rows spans at most two blocks (van Herk / Gil-Werman).
        """
        key = (stride, width)
        if key not in self._window_maxima:
            ahead, behind = np.empty_like(self.bands), np.empty_like(self.bands)
            for first in range(stride):
                rows = self.bands[first::stride]
                blocks = -(-len(rows) // width)
                padded = np.full((blocks * width, rows.shape[1]), -np.inf, dtype=self.bands.dtype)
                padded[:len(rows)] = rows
                padded = padded.reshape(blocks, width, -1)
                behind[first::stride] = np.maximum.accumulate(padded, axis=1).reshape(-1, rows.shape[1])[:len(rows)]
                ahead[first::stride] = np.maximum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].reshape(
                    -1, rows.shape[1])[:len(rows)]
            self._window_maxima[key] = (ahead, behind)
        return self._window_maxima[key]

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


@functools.lru_cache(maxsize=4)
def _coarse_groups(bands: int) -> tuple[tuple[int, int], ...]:
    """(first, end) of each wide band's run of neighbouring bands: ``np.array_split`` of the bands in ``COARSE``."""
    return tuple((int(g[0]), int(g[-1]) + 1) for g in np.array_split(np.arange(bands), COARSE))


def coarse_bands(bands: np.ndarray) -> np.ndarray:
    """A few wide bands (sums of neighbouring bands): enough to find the echo's delay, and cheap.

    Each sum adds its bands one by one, in order: what numpy's ``sum`` does below 8 terms (its
    pairwise summation starts there), in a third of the time, bit for bit (float band energies).
    """
    groups = _coarse_groups(bands.shape[-1])
    if bands.shape[-1] < COARSE or any(end - first >= 8 for first, end in groups):
        split = np.array_split(np.arange(bands.shape[-1]), COARSE)
        return np.stack([bands[..., g].sum(axis=-1) for g in split], axis=-1)
    out = np.empty(bands.shape[:-1] + (COARSE,), dtype=bands.dtype)
    for i, (first, end) in enumerate(groups):
        total = bands[..., first]
        for band in range(first + 1, end):
            total = total + bands[..., band]
        out[..., i] = total
    return out


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

    def in_order(self) -> bool:
        """Whether each span starts at or after the previous one's end (so no stream sample is in two)."""
        return len(self.spans) < 2 or all(prev[2] is not None and int(span[0]) >= int(prev[2])  # type: ignore[arg-type]
                                          for prev, span in zip(self.spans, self.spans[1:]))

    def last_end(self) -> int | None:
        """Stream sample where the last span ended (None while playing, or when nothing ever played)."""
        if not self.spans:
            return None
        return self.spans[-1][2]  # type: ignore[return-value]
