"""LocalAgreement-2 and the hallucination filter: pure text rules, no model."""

from __future__ import annotations

import pytest

from callbot.audio_server.stt.text import LocalAgreement, TextFilter, clean_text, repeats_sentence, trails_off
from callbot.config import SttSettings


def test_local_agreement_confirms_only_what_two_decodes_agree_on() -> None:
    la = LocalAgreement()
    assert la.update("Actually, I am...") is False  # one hypothesis confirms nothing
    assert la.text == ""
    assert la.update("Actually, I am not interested") is True
    assert la.text == "Actually, I am"  # "am..." and "am" agree once punctuation is ignored
    assert la.update("Actually, I am not interested right now") is True
    assert la.text == "Actually, I am not interested"


def test_local_agreement_never_takes_back_a_confirmed_word() -> None:
    la = LocalAgreement()
    la.update("please call me back")
    la.update("please call me back next")
    assert la.text == "please call me back"
    # Whisper rewrites an early word: the confirmed prefix stays as it was, with no flicker.
    assert la.update("please call him back next week") is False
    assert la.update("please call him back next week on") is False
    assert la.text == "please call me back"


def test_local_agreement_prefixes_grow_monotonically_over_a_sequence() -> None:
    hypotheses = ["I", "I would", "I would like to", "I would like two", "I would like to move it", "I would like to move it to"]
    la = LocalAgreement()
    seen = []
    for h in hypotheses:
        if la.update(h):
            seen.append(la.text)
    assert seen == ["I", "I would", "I would like", "I would like to move it"]
    for earlier, later in zip(seen, seen[1:]):
        assert later.startswith(earlier)


@pytest.mark.parametrize("text, trailing", [
    ("Hello there", False), ("Who is this?", False), ("Yes.", False), ("Okay, right!", False),
    ("Well I think...", True), ("Well I think\u2026", True), ("so please call me,", True), ("that could be -", True),
    ("the reason is:", True), ('he said "wait..."', True), ("", True), ("[Music]", True),
])
def test_a_text_trails_off_when_whisper_ends_it_mid_thought(text: str, trailing: bool) -> None:
    assert trails_off(text) is trailing


def test_clean_text_drops_annotations() -> None:
    assert clean_text(" [Music]  hello (laughs) there ♪♪ ") == "hello there"


@pytest.fixture
def text_filter() -> TextFilter:
    s = SttSettings()
    return TextFilter.from_phrases(s.no_speech_threshold, s.logprob_threshold, s.min_avg_logprob, s.hallucinations)


@pytest.mark.parametrize("text", ["Thank you.", "you", "  You  ", "Thanks for watching!", "THANK YOU", "[BLANK_AUDIO]", "."])
def test_classic_silence_hallucinations_are_rejected_even_when_confident(text_filter: TextFilter, text: str) -> None:
    assert text_filter.reject_reason(text, avg_logprob=-0.1, no_speech_prob=0.05) is not None


def test_noise_is_rejected_by_whisper_confidence(text_filter: TextFilter) -> None:
    assert text_filter.reject_reason("We went", avg_logprob=-1.2, no_speech_prob=0.9) == "no_speech"
    assert text_filter.reject_reason("We went", avg_logprob=-2.5, no_speech_prob=0.1) == "low_logprob"


def test_real_speech_passes(text_filter: TextFilter) -> None:
    assert text_filter.reject_reason("Yes.", avg_logprob=-0.45, no_speech_prob=0.3) is None
    assert text_filter.reject_reason("Thank you, call me Tuesday.", avg_logprob=-0.3, no_speech_prob=0.1) is None
    # Whisper's rule needs both: a high no_speech_prob alone with a good logprob is speech.
    assert text_filter.reject_reason("Okay, right.", avg_logprob=-0.5, no_speech_prob=0.7) is None


@pytest.mark.parametrize("text, looped", [
    ("Yes. Yes.", True),
    ("Yes? Yes? Yes? Yes? Yes", True),  # a loop cut off by the token cap: its last one has no "?"
    ("Who is this? who is this!", True),  # case and punctuation aside
    ("Hello there. Who is this? Who is this?", True),  # anywhere in the text
    ("Yes.", False),
    ("Yes, yes, yes, yes.", False),  # said four times in one breath: one sentence
    ("No, no, I said no.", False),
    ("Hello there. Who is this?", False),
    ("[Music] Yes. (laughs) Yes.", True),  # annotations are not words
    ("", False),
])
def test_a_sentence_said_twice_in_a_row_is_whispers_loop(text: str, looped: bool) -> None:
    assert repeats_sentence(text) is looped
