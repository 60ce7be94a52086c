"""Answering-machine detection: mod_amd's voice/silence state machine on VAD frames, refined by transcript hints.

Sans-I/O: :class:`AmdDetector` takes per-frame VAD verdicts and transcripts with their stream times
and returns at most one :class:`~audio_server.events.Amd` per call. It never reads a clock.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Mapping, Protocol

from callbot.events import Amd
from callbot.audio_server.pipeline.frames import Frame
from callbot.config import AmdSettings

RESULTS = ("human", "machine", "notsure")
QUERY_PREFIX = "amd_"
# Per-call URL query keys (``amd_<name>``, integer ms or a count) and their allowed ranges.
QUERY_LIMITS: dict[str, tuple[int, int]] = {
    "initial_silence": (100, 60000),
    "greeting": (100, 60000),
    "after_greeting_silence": (100, 60000),
    "total_analysis_time": (500, 120000),
    "min_word_length": (10, 5000),
    "between_words_silence": (10, 5000),
    "maximum_number_of_words": (1, 100),
    "maximum_word_length": (100, 120000),
}
QUERY_KEYS = ("amd", *(QUERY_PREFIX + name for name in QUERY_LIMITS))  # for the stream's query allow-list
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class VoicedFrame(Protocol):
    """What the AMD needs from a VAD verdict (audio_server.segments.FrameDecision has it)."""

    @property
    def frame(self) -> Frame: ...

    @property
    def voiced(self) -> bool: ...


@dataclass(frozen=True)
class AmdParams:
    """One call's AMD settings: the server's AmdSettings with the call's URL query applied."""

    settings: AmdSettings = field(default_factory=AmdSettings)

    def __post_init__(self) -> None:
        if self.settings.initial_silence_result not in RESULTS:
            raise ValueError(f"amd.initial_silence_result={self.settings.initial_silence_result!r}: "
                             f"use one of {', '.join(RESULTS)}")

    @classmethod
    def from_query(cls, query: Mapping[str, str], defaults: AmdSettings | None = None) -> "AmdParams":
        """Apply ``amd=on|off`` and ``amd_<timing>=<int>`` keys; ValueError names the bad key and the fix."""
        base = defaults or AmdSettings()
        updates: dict[str, object] = {}
        if "amd" in query:
            flag = str(query["amd"]).strip().lower()
            if flag not in _TRUE + _FALSE:
                raise ValueError(f"URL query amd={query['amd']!r}: use amd=on or amd=off")
            updates["enabled"] = flag in _TRUE
        for key, raw in query.items():
            if not key.startswith(QUERY_PREFIX):
                continue
            name = key[len(QUERY_PREFIX):]
            if name not in QUERY_LIMITS:
                known = ", ".join(QUERY_PREFIX + n for n in QUERY_LIMITS)
                raise ValueError(f"URL query {key}: unknown AMD parameter; known keys are {known}")
            low, high = QUERY_LIMITS[name]
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ValueError(f"URL query {key}={raw!r}: not an integer; give ms (or a count for words)") from None
            if not low <= value <= high:
                raise ValueError(f"URL query {key}={value}: out of range; use {low}..{high}")
            updates[name] = value
        return cls(dataclasses.replace(base, **updates))


def normalise(text: str) -> str:
    """Lower case, accents and punctuation dropped (apostrophes kept), single spaces: what hints match on."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^\w']+", " ", text).split())


class AmdDetector:
    """mod_amd's decision rules (Asterisk app_amd semantics) over VAD frames, plus transcript hints.

    Durations count frame lengths, so stream gaps (a paused stream) neither add silence nor voice.
    The first rule that fires decides; after that every input returns ``[]``. Where we differ from
    mod_amd, each by a setting: INITIALSILENCE gives ``initial_silence_result`` (notsure, not
    machine: people who pick up and wait are common), and a first word after ``late_onset_ms`` is
    taken as a possible reply to the robot's first prompt, so MAXWORDS and LONGGREETING do not
    apply to it (a greeting machine starts at once; a person answering our prompt talks at length).
    """

    def __init__(self, params: AmdParams) -> None:
        self.p = params.settings
        self.decision: Amd | None = None
        self._now = 0.0  # stream time of the end of the last frame seen
        self._elapsed_ms = 0.0
        self._silence_ms = 0.0
        self._voice_ms = 0.0  # all voice so far (the greeting rule)
        self._word_ms = 0.0  # consecutive voice (the word rules)
        self._in_word = False
        self._words = 0
        self._in_initial_silence = True
        self._in_greeting = False
        self._late_talker = False  # the first word came after late_onset_ms: maybe a reply to our prompt
        self._greeting_heard = False  # STT heard a short greeting and no word followed it
        self._phrases = tuple(normalise(p) for p in self.p.voicemail_phrases)
        self._greeting_words = frozenset(normalise(w) for w in self.p.greeting_words)

    def feed(self, verdict: VoicedFrame) -> list[Amd]:
        """Advance by one frame's verdict; returns ``[Amd]`` when this frame decides."""
        if self.decision is not None or not self.p.enabled:
            return []
        frame = verdict.frame
        step = frame.duration_ms
        self._now = frame.end_t
        self._elapsed_ms += step
        decided = self._voiced(step) if verdict.voiced else self._silent(step)
        if decided is None and self._elapsed_ms >= self.p.total_analysis_time:
            decided = ("notsure", "TOOLONG")
        return self._decide(decided, self._now)

    def on_transcript(self, text: str, t: float, final: bool) -> list[Amd]:
        """A partial or final from STT at stream time ``t``: voicemail phrases decide MACHINE at once;
        a short greeting ("hello?", "allô ?") lets a shorter silence (hint_silence_ms) decide HUMAN."""
        if self.decision is not None or not self.p.enabled:
            return []
        words = normalise(text[: self.p.max_hint_chars])
        padded = f" {words} "
        if any(f" {phrase} " in padded for phrase in self._phrases):
            return self._decide(("machine", "VOICEMAILPHRASE"), max(t, self._now))
        tokens = words.split()
        short_greeting = tokens and len(tokens) <= self.p.hint_max_words and set(tokens) <= self._greeting_words
        if final and short_greeting and self._in_greeting and not self._in_word:  # talking again: no hint
            self._greeting_heard = True
            if self._silence_ms >= self.p.hint_silence_ms:
                return self._decide(("human", "HUMAN"), max(t, self._now))
        return []

    def _silent(self, step: float) -> tuple[str, str] | None:
        p = self.p
        self._silence_ms += step
        if self._silence_ms >= p.between_words_silence:
            self._in_word = False
            self._word_ms = 0.0
        if self._in_initial_silence and self._silence_ms >= p.initial_silence:
            return p.initial_silence_result, "INITIALSILENCE"
        if self._in_greeting and self._silence_ms >= p.after_greeting_silence:
            return "human", "HUMAN"
        if self._in_greeting and self._greeting_heard and self._silence_ms >= p.hint_silence_ms:
            return "human", "HUMAN"
        return None

    def _voiced(self, step: float) -> tuple[str, str] | None:
        p = self.p
        self._word_ms += step
        self._voice_ms += step
        if self._word_ms >= p.min_word_length and not self._in_word:
            self._words += 1
            self._in_word = True
            self._greeting_heard = False  # more talk: the greeting was not followed by silence
            if self._words == 1:
                onset_ms = self._elapsed_ms - self._word_ms
                self._late_talker = 0 < p.late_onset_ms <= onset_ms
        if self._word_ms >= p.maximum_word_length:
            return "machine", "MAXWORDLENGTH"
        if self._late_talker:
            pass  # talk or length alone does not make a late talker a machine: pauses, phrases, TOOLONG decide
        elif self._words >= p.maximum_number_of_words:
            return "machine", "MAXWORDS"
        elif self._in_greeting and self._voice_ms >= p.greeting:
            return "machine", "LONGGREETING"
        if self._word_ms >= p.min_word_length:
            self._silence_ms = 0.0
            self._in_initial_silence = False
            self._in_greeting = True
        return None

    def _decide(self, decided: tuple[str, str] | None, t: float) -> list[Amd]:
        if decided is None:
            return []
        result, cause = decided
        self.decision = Amd(t=round(t, 3), result=result, cause=cause, decided_at_s=round(t, 3))
        return [self.decision]
