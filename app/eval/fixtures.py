"""Labelled barge-in fixtures: a folder of WAV/FLAC files with sidecars, each expanded into its versions.

A sidecar is DESIGN section 5's (``speech``, ``expect.barge_in``) plus ``category`` (speech, music,
tone, echo, doubletalk, ...), optional ``playback`` markers ``[{"file", "start_s"}]`` (the robot's
prompt, relative to the prompts directory) and ``seed``. Only clean audio is stored; the ``hiss``
(white noise at -42 dBFS RMS) and ``quiet`` (-15 dB) versions are made here, from the seed.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

VERSIONS = ("clean", "hiss", "quiet")
HISS_DBFS = -42.0
QUIET_DB = -15.0
BRIDGE_S = 0.3
RECALL_MIN_S = 1.7


@dataclass(frozen=True)
class Fixture:
    """One version of one labelled recording, ready to stream."""

    name: str
    version: str
    category: str
    samples: np.ndarray  # int16 mono
    rate: int
    speech: list[list[float]]
    expect_barge_in: bool
    playback: list[dict]

    @property
    def utterances(self) -> list[tuple[float, float]]:
        """The sidecar's speech spans, bridged as the detector bridges them."""
        out: list[tuple[float, float]] = []
        for start, end in self.speech:
            if out and start - out[-1][1] <= BRIDGE_S:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
        return out

    @property
    def longest_s(self) -> float:
        return max((end - start for start, end in self.utterances), default=0.0)

    @property
    def in_recall_set(self) -> bool:
        """Counted for recall: a barge-in is expected and the speech lasts at least 1.7 s."""
        return self.expect_barge_in and self.longest_s >= RECALL_MIN_S - 1e-9


def version_of(samples: np.ndarray, version: str, seed: int) -> np.ndarray:
    """The clean int16 samples as ``version`` (clean, hiss or quiet)."""
    x = samples.astype(np.float64)
    if version == "hiss":
        rng = np.random.default_rng(seed)
        x = x + rng.standard_normal(len(x)) * 32768.0 * 10 ** (HISS_DBFS / 20)
    elif version == "quiet":
        x = x * 10 ** (QUIET_DB / 20)
    elif version != "clean":
        raise ValueError(f"unknown version {version!r}: use {', '.join(VERSIONS)}")
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def load(folder: Path, versions: tuple[str, ...] = VERSIONS) -> list[Fixture]:
    """Every fixture of ``folder`` with a sidecar, in each version; a sidecar without a category is ``speech``."""
    audio = sorted(p for p in folder.iterdir() if p.suffix in (".wav", ".flac") and p.with_suffix(".json").is_file())
    if not audio:
        raise FileNotFoundError(f"{folder}: no .wav or .flac fixture with a .json sidecar")
    out = []
    for path in audio:
        sidecar = json.loads(path.with_suffix(".json").read_text())
        data, rate = sf.read(path, dtype="int16", always_2d=True)
        clean = data[:, 0]  # mono, or L = callee
        seed = int(sidecar.get("seed", zlib.crc32(path.stem.encode())))
        expect = bool(sidecar.get("expect", {}).get("barge_in", False))
        for version in versions:
            out.append(Fixture(path.stem, version, sidecar.get("category", "speech"),
                               version_of(clean, version, seed), rate, sidecar.get("speech", []), expect,
                               sidecar.get("playback", [])))
    return out
