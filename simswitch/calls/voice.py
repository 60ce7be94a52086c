"""The callee's voice: its fixture WAV frame by frame from the answer on, and its sidecar's speech times."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from callbot.simswitch.clock import MEDIA_TICK_S
from callbot.simswitch.media.wavs import WavError, load_pcm

log = logging.getLogger(__name__)


def sidecar_speech(wav: Path | None) -> list[list[float]]:
    """Speech intervals from the fixture's sidecar (call seconds), for the truth of breaks."""
    if wav is None:
        return []
    try:
        data = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
        return [[float(a), float(b)] for a, b in data.get("speech", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return []


class CalleeVoice:
    """Sample 0 of the WAV is call time 0; after the WAV the callee sends nothing (an unreadable WAV: silent)."""

    def __init__(self, wav: Path | None, max_wav_s: float, call: str) -> None:
        self.wav = wav
        self.max_wav_s = max_wav_s
        self.call = call  # for the log
        self.speech = sidecar_speech(wav)
        self._pcm: dict[int, np.ndarray] = {}

    def pcm(self, rate: int) -> np.ndarray:
        """The whole voice at ``rate`` (loaded once per call and rate)."""
        pcm = self._pcm.get(rate)
        if pcm is None:
            pcm = np.zeros(0, np.int16)
            if self.wav is not None:
                try:
                    pcm = load_pcm(self.wav, rate, self.max_wav_s)
                except WavError as exc:
                    log.warning("callee WAV unreadable: the callee is silent", extra={"call": self.call,
                                                                                     "error": str(exc)})
            self._pcm[rate] = pcm
        return pcm

    def sends(self, rate: int, k: int) -> bool:
        """Does the callee send a frame on call tick ``k``? Yes while its WAV lasts."""
        return k * int(rate * MEDIA_TICK_S) < len(self.pcm(rate))

    def frame(self, rate: int, k: int) -> np.ndarray:
        """Call tick ``k`` of the voice at ``rate`` (silence after the WAV ends)."""
        n = int(rate * MEDIA_TICK_S)
        chunk = self.pcm(rate)[k * n:(k + 1) * n]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.int16)])
        return chunk
