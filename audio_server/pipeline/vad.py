"""Voice activity per frame: webrtcvad (or Silero), guarded by the stream's noise floor, level and modulation.

webrtcvad alone calls broadband noise, clicks and breaths speech. Three guards, all computed
from the stream's own samples, keep such frames unvoiced:
- the frame must stand ``noise_margin_db`` above the stream's noise-floor estimate and above
  ``min_level_dbfs`` (low breaths, line hiss);
- the frame level over the last ``modulation_window_ms`` must vary by ``min_modulation_db``:
  speech is modulated by syllables, steady noise is not (noise that appears mid-stream stops
  counting once the window is full of it, and the floor then rises to meet it).
Isolated clicks pass these guards but are rejected by the segmenter's voiced-ratio rule.

webrtcvad (and Silero) judge absolute levels: a quiet line (-15 dB) loses weak phonemes that the
same voice keeps at a normal level. With a ``LevelNormaliser`` (the speech cascade uses one) the
classifier sees each frame raised toward a normal speech level, by at most ``max_gain_db``; the
guards still judge the line's own levels.
"""

from __future__ import annotations

import collections
import math
from typing import Protocol

import numpy as np
import webrtcvad

from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.segments import FrameDecision
from callbot.config import VadSettings

SILENCE_DBFS = -100.0


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (``SILENCE_DBFS`` for zeros)."""
    if not len(samples):
        return SILENCE_DBFS
    power = float(np.add.reduce(np.square(samples, dtype=np.float64))) / len(samples)  # np.mean's sum and division
    if power <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(power / 32768.0**2))


class NoiseFloor:
    """A running noise-level estimate in dBFS: drops fast to quieter frames, rises slowly on unvoiced ones."""

    FALL = 0.3  # fraction of the way to a quieter frame per frame

    def __init__(self, frame_ms: int, adapt_ms: int) -> None:
        self._rise = min(1.0, frame_ms / max(adapt_ms, frame_ms))
        self.dbfs: float | None = None

    def update(self, level: float, voiced: bool) -> None:
        """Fold one frame in. Voiced frames never raise the floor, so long speech cannot mask itself."""
        if self.dbfs is None:
            self.dbfs = level
        elif level < self.dbfs:
            self.dbfs += (level - self.dbfs) * self.FALL
        elif not voiced:
            self.dbfs += (level - self.dbfs) * self._rise


class LevelNormaliser:
    """The gain (dB) that brings the line's recent speech peaks to ``target_dbfs``, never below 0 dB.

    The peak follows the loudest frames at once and falls ``fall_db_per_s`` while the line is
    quieter, so a quiet caller's words are heard as a normal caller's; frames the echo gate gave to
    the robot do not count (``update(..., counts=False)``).
    """

    def __init__(self, frame_ms: int, target_dbfs: float = -20.0, max_gain_db: float = 18.0,
                 fall_db_per_s: float = 1.0) -> None:
        self.target_dbfs, self.max_gain_db = target_dbfs, max_gain_db
        self._fall = fall_db_per_s * frame_ms / 1000
        self.peak_dbfs: float | None = None

    def update(self, level: float, counts: bool = True) -> float:
        """Fold one frame's level in; the gain to apply to that frame, in dB."""
        if counts:
            fallen = self.peak_dbfs - self._fall if self.peak_dbfs is not None else level
            self.peak_dbfs = max(level, fallen)
        peak = self.peak_dbfs if self.peak_dbfs is not None else level
        return min(self.max_gain_db, max(0.0, self.target_dbfs - max(peak, level)))


def amplified(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """int16 samples raised by ``gain_db`` (clipped); the same array when there is no gain."""
    if gain_db <= 0.0:
        return samples
    return np.clip(np.round(samples.astype(np.float32) * np.float32(10 ** (gain_db / 20))), -32768, 32767
                   ).astype(np.int16)


class SpeechClassifier(Protocol):
    """A backend's speech call on one frame; ``every_frame`` when it must see every frame (stateful)."""

    every_frame: bool

    def __call__(self, samples: np.ndarray) -> bool: ...


class WebRtcClassifier:
    """webrtcvad's speech/non-speech call on one frame (10, 20 or 30 ms at 8 or 16 kHz)."""

    every_frame = False  # may skip frames the guards already reject

    def __init__(self, rate: int, aggressiveness: int) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"vad.aggressiveness={aggressiveness}: must be 0..3")
        self._vad = webrtcvad.Vad(aggressiveness)
        self._rate = rate

    def __call__(self, samples: np.ndarray) -> bool:
        return self._vad.is_speech(samples.astype("<i2", copy=False).tobytes(), self._rate)


def speech_classifier(rate: int, settings: VadSettings) -> SpeechClassifier:
    """The configured backend: ``webrtc`` (default) or ``silero`` (the model faster-whisper ships)."""
    if settings.backend == "webrtc":
        return WebRtcClassifier(rate, settings.aggressiveness)
    if settings.backend == "silero":
        from callbot.audio_server.pipeline.vad_silero import SileroClassifier

        return SileroClassifier(rate, settings.silero_threshold)
    raise ValueError(f"vad.backend={settings.backend!r}: use webrtc or silero")


class Vad:
    """Decides voiced/unvoiced for each frame of one stream (one instance per stream)."""

    def __init__(self, rate: int, settings: VadSettings, normaliser: LevelNormaliser | None = None) -> None:
        self._classify = speech_classifier(rate, settings)
        self._settings = settings
        self.normaliser = normaliser
        self.gain_db = 0.0  # what the normaliser applied to the last frame
        self.noise = NoiseFloor(settings.frame_ms, settings.noise_adapt_ms)
        window = max(1, settings.modulation_window_ms // settings.frame_ms)
        self._levels: collections.deque[float] = collections.deque(maxlen=window)

    def speech_raw(self, frame: Frame) -> bool:
        """The backend's own call on a frame, without the guards (the cascade's rescue asks it)."""
        return self._classify(amplified(frame.samples, self.gain_db))

    def decide(self, frame: Frame, caller: bool = True, level: float | None = None) -> FrameDecision:
        """The verdict on one frame; updates the noise floor, the modulation window and the normaliser.

        ``caller``: False when the echo gate gave the frame to the robot (the normaliser skips it).
        ``level``: the frame's ``level_dbfs`` when the caller has it already (two gates on one frame)."""
        s = self._settings
        if level is None:
            level = level_dbfs(frame.samples)
        if self.normaliser is not None:
            self.gain_db = self.normaliser.update(level, caller)
        self._levels.append(level)
        floor = self.noise.dbfs if self.noise.dbfs is not None else level
        guards = (
            level >= s.min_level_dbfs
            and level >= floor + s.noise_margin_db
            and max(self._levels) - min(self._levels) >= s.min_modulation_db
        )
        # webrtcvad does better seeing only frames that pass the guards (its own noise model then
        # does not learn the line hiss: measured on breaths and noisy onsets); Silero needs them all.
        speech = (self._classify(amplified(frame.samples, self.gain_db)) if guards or self._classify.every_frame
                  else False)
        voiced = guards and speech
        self.noise.update(level, voiced)
        return FrameDecision(frame=frame, voiced=voiced, level_dbfs=level)
