"""Answering-machine detection: mod_amd's voice/silence state machine on VAD frames, refined by transcript hints.

Sans-I/O: :class:`AmdDetector` takes per-frame VAD verdicts and transcripts with their stream times
and returns at most one :class:`~audio_server.events.Amd` per call. It never reads a clock.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from callbot.events import Amd
from callbot.audio_server.pipeline.frames import Frame
from callbot.config import AmdSettings

RESULTS = ("human", "machine", "notsure")


class VoicedFrame(Protocol):
    """What the AMD needs from a VAD verdict (audio_server.segments.FrameDecision has it)."""

    @property
    def frame(self) -> Frame: ...

    @property
    def voiced(self) -> bool: ...


@dataclass(frozen=True)
class AmdParams:
    """One call's AMD settings (the server's, with the call's URL query applied), and whether STT runs on it."""

    settings: AmdSettings = field(default_factory=AmdSettings)
    transcripts: bool = False  # STT hints will come: a verdict waits (amd.hint_wait_ms at most) for those of earlier speech
    answered_ago_ms: int = 0  # the call was answered this long before the stream's sample 0 (URL answered_ago_ms)

    def __post_init__(self) -> None:
        if self.settings.initial_silence_result not in RESULTS:
            raise ValueError(f"amd.initial_silence_result={self.settings.initial_silence_result!r}: "
                             f"use one of {', '.join(RESULTS)}")
        if self.answered_ago_ms < 0:
            raise ValueError(f"answered_ago_ms={self.answered_ago_ms}: the answer cannot come after the stream's start")


def normalise(text: str) -> str:
    """Lower case, accents and punctuation dropped (apostrophes kept), single spaces: what hints match on."""
    text = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[^\w']+", " ", text).split())


Verdict = tuple[str, str, float, float]  # result, cause, stream time, end of the last word heard before it


class _Rules:
    """mod_amd's rules plus transcript hints, fed in stream order (frames and hints by their audio time).

    Durations count frame lengths, so stream gaps (a paused stream) neither add silence nor voice.
    The first rule that fires decides. The rules' clock starts at the answer: ``unheard_ms`` (the
    call's answer before the stream's sample 0) counts as silence that already happened.
    """

    def __init__(self, settings: AmdSettings, phrases: tuple[str, ...], greeting_words: frozenset[str],
                 unheard_ms: float = 0.0) -> None:
        self.p = settings
        self.phrases = phrases
        self.greeting_words = greeting_words
        self.unheard_ms = unheard_ms
        self.now = 0.0  # stream time of the end of the last frame seen
        self.elapsed_ms = unheard_ms  # since the answer
        self.silence_ms = unheard_ms
        self.voice_ms = 0.0  # all voice so far (the greeting rule)
        self.word_ms = 0.0  # consecutive voice (the word rules)
        self.word_end = float("-inf")  # end of the last frame that was part of a word
        self.in_word = False
        self.words = 0
        self.in_initial_silence = True
        self.in_greeting = False
        self.late_talker = False  # the first word came after late_onset_ms: maybe a reply to our prompt
        self.greeting_heard = False  # STT heard a short greeting and no word followed it

    def frame(self, end_t: float, step: float, voiced: bool) -> Verdict | None:
        self.now = end_t
        self.elapsed_ms += step
        decided = self._voiced(step) if voiced else self._silent(step)
        if decided is None and self.elapsed_ms >= self.p.total_analysis_time:
            decided = ("notsure", "TOOLONG")
        return self._verdict(decided, end_t)

    def hint(self, text: str, t: float, final: bool) -> Verdict | None:
        """Words STT heard in the audio up to ``t``: a voicemail phrase decides MACHINE there; a final that is a
        short greeting ("hello?", "allô ?") lets a shorter silence (hint_silence_ms) decide HUMAN."""
        words = normalise(text[: self.p.max_hint_chars])
        padded = f" {words} "
        if any(f" {phrase} " in padded for phrase in self.phrases):
            return self._verdict(("machine", "VOICEMAILPHRASE"), t)
        tokens = words.split()
        short_greeting = tokens and len(tokens) <= self.p.hint_max_words and set(tokens) <= self.greeting_words
        if final and short_greeting and self.in_greeting:  # voice after t cancels it (_voiced)
            self.greeting_heard = True
            if self.silence_ms >= self.p.hint_silence_ms:
                return self._verdict(("human", "HUMAN"), t)
        return None

    def _silent(self, step: float) -> tuple[str, str] | None:
        p = self.p
        self.silence_ms += step
        if self.silence_ms >= p.between_words_silence:
            self.in_word = False
            self.word_ms = 0.0
        if self.in_initial_silence and self.silence_ms >= p.initial_silence:
            return p.initial_silence_result, "INITIALSILENCE"
        if self.in_greeting and self.silence_ms >= p.after_greeting_silence:
            return "human", "HUMAN"
        if self.in_greeting and self.greeting_heard and self.silence_ms >= p.hint_silence_ms:
            return "human", "HUMAN"
        return None

    def _voiced(self, step: float) -> tuple[str, str] | None:
        p = self.p
        self.word_ms += step
        self.voice_ms += step
        if self.word_ms >= p.min_word_length:
            self.word_end = self.now
            self.greeting_heard = False  # more talk: the greeting was not followed by silence
            if not self.in_word:
                self.words += 1
                self.in_word = True
                if self.words == 1:
                    onset_ms = self.elapsed_ms - self.word_ms
                    # a word already under way at sample 0 of a late stream began before we listened: not late
                    began_unheard = self.unheard_ms > 0 and onset_ms <= self.unheard_ms + 1e-6
                    self.late_talker = 0 < p.late_onset_ms <= onset_ms and not began_unheard
        if self.word_ms >= p.maximum_word_length:
            return "machine", "MAXWORDLENGTH"
        if self.late_talker:
            pass  # talk or length alone does not make a late talker a machine: pauses, phrases, TOOLONG decide
        elif self.words >= p.maximum_number_of_words:
            return "machine", "MAXWORDS"
        elif self.in_greeting and self.voice_ms >= p.greeting:
            return "machine", "LONGGREETING"
        if self.word_ms >= p.min_word_length:
            self.silence_ms = 0.0
            self.in_initial_silence = False
            self.in_greeting = True
        return None

    def _verdict(self, decided: tuple[str, str] | None, t: float) -> Verdict | None:
        return None if decided is None else (*decided, t, min(self.word_end, t))


class AmdDetector:
    """mod_amd's decision rules (Asterisk app_amd semantics) over VAD frames, plus transcript hints.

    The first rule that fires decides, and the verdict is sent once; after that every input
    returns ``[]``. Where we differ from mod_amd, each by a setting: INITIALSILENCE gives
    ``initial_silence_result`` (notsure, not machine: people who pick up and wait are common), and
    a first word after ``late_onset_ms`` is taken as a possible reply to the robot's first prompt,
    so MAXWORDS and LONGGREETING do not apply to it (a greeting machine starts at once; a person
    answering our prompt talks at length).

    Transcript hints are dated by the audio they describe (the transcript's ``t``: a final's end
    of speech, a partial's end of audio), never by when the decode came back: a hint about audio
    already behind us is applied where that audio was, replaying the rules over the frames since
    (they are kept until the verdict, at most ``total_analysis_time`` plus ``hint_wait_ms``). When
    STT runs on the stream (``AmdParams.transcripts``), a verdict is held until a transcript covers
    the last word before it, or ``hint_wait_ms`` of stream time has passed, so the result and its
    time do not depend on how long decoding took.

    Every rule is timed from the answer, not from the stream's start: with ``answered_ago_ms`` (the
    stream started that long after the answer) the stream's first frame finds that much silence
    and analysis time already spent (INITIALSILENCE, TOOLONG and the late-talker onset count it),
    while verdicts stay dated in stream time, as every audio event is.
    """

    def __init__(self, params: AmdParams) -> None:
        self.p = params.settings
        self._unheard_ms = float(params.answered_ago_ms)
        self.decision: Amd | None = None
        self._wait_s = self.p.hint_wait_ms / 1000 if params.transcripts else 0.0
        self._phrases = tuple(normalise(p) for p in self.p.voicemail_phrases)
        self._greeting_words = frozenset(normalise(w) for w in self.p.greeting_words)
        self._rules = self._new_rules()
        self._frames: list[tuple[float, float, bool]] = []  # (end_t, ms, voiced) until the verdict is sent
        self._hints: list[tuple[float, int, str, bool]] = []  # (t, arrival, text, final), in stream order
        self._verdict: Verdict | None = None  # decided, not sent yet
        self._heard_until = float("-inf")  # the audio the transcripts so far have covered
        self._stt_until: float | None = None  # see feed

    def _new_rules(self) -> _Rules:
        return _Rules(self.p, self._phrases, self._greeting_words, self._unheard_ms)

    def feed(self, verdict: VoicedFrame, stt_until: float | None = None) -> list[Amd]:
        """Advance by one frame's verdict; returns ``[Amd]`` when the verdict is due.

        ``stt_until`` (from the pipeline, which knows the segments): speech recognition has been given all
        the speech before this frame, and it ended there; None when it may still be given some (a segment
        is open or starting). A held verdict waits only for transcripts up to it: voice the line gate heard
        after it (an echo's tail, a sound the speech classifier refused) never gets a transcript.
        """
        self._stt_until = stt_until
        if self.decision is not None or not self.p.enabled:
            return []
        frame = verdict.frame
        self._frames.append((frame.end_t, frame.duration_ms, verdict.voiced))
        if self._verdict is None:
            self._verdict = self._rules.frame(frame.end_t, frame.duration_ms, verdict.voiced)
        return self._release()

    def answered(self, ago_ms: int) -> list[Amd]:
        """The switch's own figure for how long before sample 0 the call was answered (the robot's ``answered``
        marker): the rules are timed from it over every frame and hint so far. Too late once a verdict is sent."""
        if self.decision is not None or not self.p.enabled or ago_ms == self._unheard_ms:
            return []
        self._unheard_ms = float(ago_ms)
        self._verdict = self._replay()
        return self._release()

    def on_transcript(self, text: str, t: float, final: bool) -> list[Amd]:
        """A partial or final from STT about the audio up to stream time ``t`` (the event's own ``t``)."""
        if self.decision is not None or not self.p.enabled:
            return []
        now = self._frames[-1][0] if self._frames else 0.0
        t = min(t, now)  # a transcript cannot describe audio the AMD has not seen
        self._heard_until = max(self._heard_until, t)
        hint = (t, len(self._hints), text, final)
        if t >= now or not self._frames:
            self._hints.append(hint)
            if self._verdict is None:
                self._verdict = self._rules.hint(text, t, final)
        else:
            bisect.insort(self._hints, hint)
            self._verdict = self._replay()
        return self._release()

    def heard(self, t: float) -> list[Amd]:
        """Speech recognition is done with the audio up to stream time ``t`` and has no words for it (a final
        it suppressed: a cough, a language the model does not know): no transcript of it will come."""
        if self.decision is not None or not self.p.enabled:
            return []
        now = self._frames[-1][0] if self._frames else 0.0
        self._heard_until = max(self._heard_until, min(t, now))
        return self._release()

    def flush(self) -> list[Amd]:
        """End of stream: a verdict still waiting for transcripts is due now."""
        if self.decision is not None or self._verdict is None:
            return []
        return self._send(self._verdict)

    def _replay(self) -> Verdict | None:
        """The rules over every frame and hint so far, in stream order (a hint after the frames that end by its t)."""
        rules = self._new_rules()
        self._rules = rules
        hints = iter(self._hints)
        pending = next(hints, None)
        for end_t, step, voiced in self._frames:
            while pending is not None and pending[0] < end_t:
                if (out := rules.hint(pending[2], pending[0], pending[3])) is not None:
                    return out
                pending = next(hints, None)
            if (out := rules.frame(end_t, step, voiced)) is not None:
                return out
        while pending is not None:
            if (out := rules.hint(pending[2], pending[0], pending[3])) is not None:
                return out
            pending = next(hints, None)
        return None

    def _release(self) -> list[Amd]:
        if self._verdict is None:
            return []
        _result, _cause, at, last_word = self._verdict
        now = self._frames[-1][0] if self._frames else at
        if self._stt_until is not None:
            last_word = min(last_word, self._stt_until)
        unheard = self._heard_until < last_word - 1e-6
        if self._wait_s and unheard and now < at + self._wait_s - 1e-6:
            return []  # a transcript of the speech before the verdict may still change it
        return self._send(self._verdict)

    def _send(self, verdict: Verdict) -> list[Amd]:
        result, cause, at, _ = verdict
        self.decision = Amd(t=round(at, 3), result=result, cause=cause, decided_at_s=round(at, 3))
        self._frames.clear()
        self._hints.clear()
        return [self.decision]
