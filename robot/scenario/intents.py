"""Intent matching: keyword and phrase rules per language, case- and accent-insensitive."""

from __future__ import annotations

import re
import unicodedata
from typing import Collection, Mapping, Sequence

# Every intent, in the order they win when several match: asking to be taken off the list beats
# "later", which beats a plain no or yes ("no, call me later" is later).
_ORDER: tuple[str, ...] = ("stop", "later", "hold", "no", "yes")
# Intents a step hears only when its ``on`` names them ("hold on a second" is a reply elsewhere, but
# no scenario written before them has to name them).
OPTIONAL_INTENTS: tuple[str, ...] = ("hold",)
# The intents every scenario may branch on.
INTENTS: tuple[str, ...] = tuple(name for name in _ORDER if name not in OPTIONAL_INTENTS)
OPT_OUT_INTENT = "stop"  # the callee asks not to be called again: DNC, then the scenario's opt-out step

DEFAULT_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "stop": ("stop calling", "do not call", "don't call", "dont call", "remove me", "take me off",
                 "unsubscribe", "never call"),
        "later": ("later", "call me back", "call back", "another time", "not now", "next week", "tomorrow",
                  "busy right now", "bad time"),
        "hold": ("hold on", "hang on", "one moment", "one second", "just a second", "just a moment", "one sec",
                 "wait a second", "wait a minute", "give me a second", "give me a minute", "bear with me"),
        "no": ("no", "nope", "not interested", "no thanks", "no thank you", "nah"),
        "yes": ("yes", "yeah", "yep", "sure", "of course", "okay", "ok", "absolutely", "correct",
                "that's right", "sounds good", "fine"),
    },
    "fr": {
        "stop": ("arretez d appeler", "arretez de m appeler", "ne m appelez plus", "ne plus m appeler",
                 "retirez moi", "desinscrire", "plus jamais"),
        "later": ("plus tard", "rappelez moi", "rappeler", "un autre moment", "pas maintenant", "demain",
                  "la semaine prochaine", "occupe"),
        "hold": ("un instant", "un moment", "une seconde", "une minute", "ne quittez pas", "attendez",
                 "patientez"),
        "no": ("non", "pas interesse", "pas interessee", "non merci", "ca ne m interesse pas"),
        "yes": ("oui", "ouais", "d accord", "bien sur", "absolument", "ok", "okay", "exactement",
                "tout a fait", "volontiers"),
    },
}

_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces: "D'accord, OUI!" -> "d accord oui"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", bare).strip()


def _contains_phrase(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(words[i:i + n]) == list(phrase) for i in range(len(words) - n + 1))


class IntentMatcher:
    """Whole-word matching of normalised phrases; the first intent that matches wins (stop, later, hold, no, yes)."""

    def __init__(self, rules: Mapping[str, Sequence[str]]) -> None:
        unknown = set(rules) - set(_ORDER)
        if unknown:
            raise ValueError(f"unknown intent(s) {sorted(unknown)}; intents are {', '.join(_ORDER)}")
        self._rules = {name: [normalize(p).split() for p in rules.get(name, ())] for name in _ORDER}

    @classmethod
    def for_language(cls, language: str, extra: Mapping[str, Sequence[str]] | None = None) -> "IntentMatcher":
        """The built-in rules for ``language`` (en, fr), with ``extra`` phrases added per intent."""
        if language not in DEFAULT_RULES:
            raise ValueError(f"no built-in intent rules for language {language!r}; have {', '.join(DEFAULT_RULES)}")
        merged = {k: list(v) for k, v in DEFAULT_RULES[language].items()}
        for name, phrases in (extra or {}).items():
            merged.setdefault(name, []).extend(phrases)
        return cls(merged)

    def match(self, text: str, optional: Collection[str] = ()) -> str | None:
        """The intent ``text`` expresses, or None; of OPTIONAL_INTENTS only those in ``optional``."""
        words = normalize(text).split()
        for name in _ORDER:
            if name in OPTIONAL_INTENTS and name not in optional:
                continue
            if any(_contains_phrase(words, phrase) for phrase in self._rules[name]):
                return name
        return None
