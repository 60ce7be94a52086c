"""Backchannel words: what a caller says to keep the robot talking ("uh-huh", "d'accord"), per language."""

from __future__ import annotations

from typing import Iterable

from callbot.robot.scenario.intents import normalize

DEFAULT_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset({"yeah", "yes", "yep", "uh huh", "uh-huh", "mhm", "mm hmm", "hm", "hmm", "okay", "ok", "right",
                     "sure", "i see", "alright", "all right"}),
    "fr": frozenset({"oui", "ouais", "d accord", "hm", "hmm", "mhm", "ok", "okay", "je vois", "voila", "bien sur"}),
}


class BackchannelFilter:
    """Is a partial transcript nothing but backchannel words? (Language defaults, or the words given.)"""

    def __init__(self, language: str, words: Iterable[str] = ()) -> None:
        chosen = [normalize(w) for w in words] or sorted(DEFAULT_WORDS.get(language, frozenset()))
        self._phrases = sorted({tuple(w.split()) for w in chosen if w}, key=len, reverse=True)

    def only_backchannel(self, text: str) -> bool:
        """True when ``text`` is made only of backchannel phrases (and is not empty)."""
        words = normalize(text).split()
        if not words:
            return False
        i = 0
        while i < len(words):
            match = next((p for p in self._phrases if tuple(words[i:i + len(p)]) == p), None)
            if match is None:
                return False
            i += len(match)
        return True
