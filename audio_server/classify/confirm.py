"""Speech confirmation: the classifier's evidence that an open segment is speech, and its settings.

webrtcvad (with its guards) is the cheap frame gate: it opens segments and dates onsets. The
Silero classifier runs only while that gate hears something, and a segment counts as speech
(``speech_started``, ``barge_in``) once it has ``strong_windows`` windows at or above
``strong_probability``, or ``weak_windows`` at or above ``weak_probability`` (real voices that
Silero scores modestly). Music, tones and alerts score near zero and are never confirmed.
Evidence is counted only from windows that end inside the segment and by the current frame, so
a decision never depends on how the audio was cut into messages.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from callbot.audio_server.echo.gate import EchoSettings


@dataclass(frozen=True)
class SpeechSettings:
    """The speech-confirmation cascade and echo rejection. Flat, so that it can be a settings section."""

    confirm: bool = True  # Silero must confirm a segment before speech_started and barge_in
    active_ms: int = 500  # the classifier runs while the gate voiced a frame this recently
    strong_probability: float = 0.5
    strong_windows: int = 3  # 3 windows of 32 ms: about 100 ms of clear speech
    weak_probability: float = 0.2
    weak_windows: int = 10
    rescue_probability: float = 0.3  # inside speech, a webrtcvad frame the guards refused counts when
    # the classifier is this sure (hiss and quiet lines lose weak phonemes to the guards)
    hold_probability: float = 0.5  # inside speech, a frame counts on the classifier alone at this probability
    hold_margin_db: float = 0.5  # ... and stands this far above the noise floor (weak phonemes in hiss)
    # The cheap gate may be more sensitive when the classifier confirms every segment (None: [vad]'s value):
    gate_min_level_dbfs: float | None = -65.0  # a -15 dB line still opens segments ([vad] -50)
    gate_noise_margin_db: float | None = 6.0  # hiss at -42 dBFS still leaves weak phonemes ([vad] 9)
    level_max_gain_db: float = 18.0  # webrtcvad hears quiet callers raised by up to this (0: off; Silero
    # hears the line as it is: raised, DTMF in hiss scored as weak speech)
    level_target_dbfs: float = -20.0  # ... toward speech peaks at this level
    echo: bool = True  # use the robot's prompt (playback markers) to reject its echo
    echo_max_delay_ms: int = 600
    echo_caller_ratio: float = 0.15
    echo_margin_db: float = 3.0
    echo_pause_latency_ms: int = 45

    def echo_settings(self) -> EchoSettings:
        return EchoSettings(max_delay_ms=self.echo_max_delay_ms, caller_ratio=self.echo_caller_ratio,
                            margin_db=self.echo_margin_db, pause_latency_ms=self.echo_pause_latency_ms)


def speech_settings(settings: object) -> SpeechSettings:
    """The ``speech`` section when the settings object has one, else the defaults."""
    found = getattr(settings, "speech", None)
    return found if isinstance(found, SpeechSettings) else SpeechSettings(
        **{k: getattr(found, k) for k in SpeechSettings.__dataclass_fields__ if hasattr(found, k)})


class SpeechConfirmer:
    """Counts classifier windows for the open segment; ``confirmed`` once the evidence is enough."""

    def __init__(self, settings: SpeechSettings) -> None:
        self._settings = settings
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=64)
        self._from = 0  # first stream sample of the open segment
        self._strong = 0
        self._weak = 0
        self._counted_to = 0  # windows ending at or before this sample were counted
        self.confirmed = False
        self.max_probability = 0.0

    def add_results(self, results: list[tuple[int, float]]) -> None:
        """Classifier outputs of this stream, (window end sample, probability), in order (ends rising)."""
        self._recent.extend(results)

    def open(self, onset_sample: int) -> None:
        """A segment opened with its onset at this stream sample."""
        self._from = onset_sample
        self._strong = self._weak = 0
        self._counted_to = onset_sample
        self.confirmed = False
        self.max_probability = 0.0

    def advance(self, frame_end: int) -> bool:
        """Count the windows that ended by ``frame_end``; the segment's verdict so far."""
        s = self._settings
        for end, p in reversed(self._recent):  # newest first: the windows not counted yet are at the end
            if end <= self._counted_to:
                break
            if end <= frame_end:
                self._strong += p >= s.strong_probability
                self._weak += p >= s.weak_probability
                self.max_probability = max(self.max_probability, p)
        self._counted_to = max(self._counted_to, frame_end)
        if self._strong >= s.strong_windows or self._weak >= s.weak_windows:
            self.confirmed = True
        return self.confirmed

    def short_word(self) -> bool:
        """A segment that closes before the evidence was counted up ("oui", "yes": 200-400 ms) is speech
        when one window was clearly speech; music and tones never score that high."""
        return self._strong >= 1

    def latest(self, frame_end: int) -> float:
        """The newest probability of a window that ended by ``frame_end`` (0 when none is recent)."""
        for end, p in reversed(self._recent):
            if end <= frame_end:
                return p if frame_end - end < 1024 else 0.0
        return 0.0
