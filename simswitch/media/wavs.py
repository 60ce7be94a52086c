"""WAV loading for callee voices and prompts: mono int16 at the rate asked for, cached per file."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import soundfile as sf


class WavError(ValueError):
    """A WAV file is missing, unreadable or too long; the message names the file."""


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Linear-interpolation resampling, with a box low-pass when decimating.

    Good enough for a speech emulator (FreeSWITCH itself uses speex); the audio server only needs
    speech at the right times, not studio quality.
    """
    if src_rate == dst_rate or len(samples) == 0:
        return samples.astype(np.int16, copy=False)
    x = samples.astype(np.float32)
    if dst_rate < src_rate:
        width = max(1, round(src_rate / dst_rate))
        x = np.convolve(x, np.ones(width, np.float32) / width, mode="same")
    n_out = int(len(x) * dst_rate // src_rate)
    pos = np.arange(n_out, dtype=np.float64) * (src_rate / dst_rate)
    y = np.interp(pos, np.arange(len(x)), x)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=64)
def _stored(path: str, mtime: float) -> tuple[int, int]:
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise WavError(f"{path}: not a readable audio file ({exc})") from None
    return int(info.samplerate), int(info.frames)


@functools.lru_cache(maxsize=64)
def _load(path: str, mtime: float, rate: int, max_s: float) -> np.ndarray:
    stored_rate, frames = _stored(path, mtime)
    if frames / stored_rate > max_s:
        raise WavError(f"{path}: {frames / stored_rate:.1f} s is longer than the {max_s:.0f} s limit "
                       "(raise simswitch.max_wav_s)")
    data, src_rate = sf.read(path, dtype="int16", always_2d=True)
    mono = data[:, 0]  # fixture contract: mono, or stereo with L = callee
    out = resample(np.ascontiguousarray(mono), int(src_rate), rate)
    out.setflags(write=False)
    return out


def _key(path: str | os.PathLike[str]) -> tuple[str, float]:
    """The cache key of a file: its resolved path and modification time."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as exc:
        raise WavError(f"{p}: cannot open ({exc.strerror})") from None
    return str(p.resolve()), mtime


def load_pcm(path: str | os.PathLike[str], rate: int, max_s: float = 600.0) -> np.ndarray:
    """The file's first channel as int16 at ``rate``; read-only array shared between calls."""
    return _load(*_key(path), rate, max_s)


def stored_format(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(sample rate, frames) of the file as stored: the units FreeSWITCH counts playback samples in."""
    return _stored(*_key(path))
