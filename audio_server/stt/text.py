"""Transcript text rules: LocalAgreement-2 for flicker-free partials, and the hallucination filter for finals."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
_NON_WORD = re.compile(r"[^\w']+")
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+")


def clean_text(text: str) -> str:
    """Whisper's text without sound annotations (``[Music]``, ``(laughs)``, ``♪``) and extra spaces."""
    return " ".join(_ANNOTATION.sub(" ", text).split())


def trails_off(text: str) -> bool:
    """Whisper heard the speaker stop mid-thought: the text ends in an ellipsis, comma, dash, colon or semicolon.

    Empty text trails off too: there is nothing to end on.
    """
    text = clean_text(text).rstrip("\"' ")
    return not text or text.endswith(("..", "\u2026", ",", "-", ":", ";"))


def normalise_word(word: str) -> str:
    """A word as compared between hypotheses: lower case, punctuation and ellipses stripped."""
    return _NON_WORD.sub("", word.lower())


def normalise(text: str) -> str:
    """A phrase as compared with the hallucination list."""
    return " ".join(w for w in (normalise_word(w) for w in text.split()) if w)


def repeats_sentence(text: str) -> bool:
    """Two sentences in a row say the same thing ("Yes. Yes. Yes.", case and punctuation aside).

    The shape of Whisper's decoding loop: given the robot's prompt as context ("... Please say yes or
    no."), tiny.en turned one short "yes" into "Yes. Yes." or a dozen of them (the last one cut off
    by the token cap, hence "punctuation aside").
    """
    sentences = [normalise(s) for s in _SENTENCE_END.split(clean_text(text))]
    return any(a and a == b for a, b in zip(sentences, sentences[1:]))


class LocalAgreement:
    """LocalAgreement-2 (Macháček et al., 2023): a word is confirmed once two consecutive decodes agree on it.

    Each re-decode of the growing audio gives a hypothesis. The longest common prefix of the
    latest two (compared case- and punctuation-blind) is confirmed, and the confirmed prefix only
    ever grows: words once confirmed are never taken back, so a partial built from it cannot
    flicker. Spelling comes from the newer hypothesis, which has heard more audio.
    """

    def __init__(self) -> None:
        self._previous: list[str] = []
        self.confirmed: list[str] = []

    def update(self, text: str) -> bool:
        """Take a new hypothesis; True when the confirmed prefix grew."""
        words = clean_text(text).split()
        agreed = 0
        for old, new in zip(self._previous, words):
            if normalise_word(old) != normalise_word(new):
                break
            agreed += 1
        self._previous = words
        if agreed <= len(self.confirmed):
            return False
        # The new agreement must extend what is confirmed, not rewrite it.
        if [normalise_word(w) for w in words[: len(self.confirmed)]] != [
            normalise_word(w) for w in self.confirmed
        ]:
            return False
        self.confirmed = self.confirmed + words[len(self.confirmed) : agreed]
        return True

    @property
    def text(self) -> str:
        return " ".join(self.confirmed)


@dataclass(frozen=True)
class TextFilter:
    """Decides whether a decode is speech worth reporting, from Whisper's own confidence and known phrases.

    A decode is rejected when Whisper thinks it is not speech (``no_speech_prob`` above its
    threshold while ``avg_logprob`` is low, as in Whisper's own rule), when ``avg_logprob`` is very
    low on its own, when nothing but annotations is left, or when the whole text is one of the
    phrases Whisper invents on silence ("Thank you.", "you", "Thanks for watching!").
    """

    no_speech_threshold: float
    logprob_threshold: float
    min_avg_logprob: float
    hallucinations: frozenset[str]

    @classmethod
    def from_phrases(
        cls, no_speech_threshold: float, logprob_threshold: float, min_avg_logprob: float, phrases: tuple[str, ...]
    ) -> "TextFilter":
        return cls(no_speech_threshold, logprob_threshold, min_avg_logprob, frozenset(normalise(p) for p in phrases))

    def reject_reason(self, text: str, avg_logprob: float, no_speech_prob: float) -> str | None:
        """Why this decode must not be reported (a metric label), or None when it is speech."""
        if not normalise(clean_text(text)):
            return "empty"
        if no_speech_prob > self.no_speech_threshold and avg_logprob < self.logprob_threshold:
            return "no_speech"
        if avg_logprob < self.min_avg_logprob:
            return "low_logprob"
        if normalise(clean_text(text)) in self.hallucinations:
            return "hallucination"
        return None
