"""AmdDetector transitions on synthetic VAD verdicts (20 ms frames), transcript hints, and per-call params."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.audio_server.amd.detector import AmdDetector, AmdParams, normalise
from callbot.events import Amd, parse_event, to_json
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.segments import FrameDecision
from callbot.config import AmdSettings

RATE, STEP = 16000, 320  # 20 ms frames


class Feeder:
    """Drives an AmdDetector with voiced/silent runs and remembers every decision it returned."""

    def __init__(self, transcripts: bool = False, **settings: object) -> None:
        self.amd = AmdDetector(AmdParams(dataclasses.replace(AmdSettings(), **settings), transcripts=transcripts))
        self.start = 0
        self.out: list[Amd] = []

    @property
    def now(self) -> float:
        return self.start / RATE

    def run(self, ms: int, voiced: bool, stt_until: float | None = None) -> "Feeder":
        for _ in range(ms // 20):
            frame = Frame(np.zeros(STEP, np.int16), self.start, RATE)
            self.out += self.amd.feed(FrameDecision(frame, voiced, -20.0 if voiced else -70.0), stt_until)
            self.start += STEP
        return self

    def voice(self, ms: int) -> "Feeder":
        return self.run(ms, True)

    def silence(self, ms: int, stt_until: float | None = None) -> "Feeder":
        return self.run(ms, False, stt_until)

    def said(self, text: str, final: bool = True, at: float | None = None) -> "Feeder":
        """STT's words about the audio up to ``at`` (default: now), arriving now."""
        self.out += self.amd.on_transcript(text, self.now if at is None else at, final)
        return self

    @property
    def decided(self) -> tuple[str, str, float]:
        assert len(self.out) == 1, self.out
        (d,) = self.out
        assert d.t == d.decided_at_s
        return d.result, d.cause, d.decided_at_s


def test_initial_silence_is_notsure_by_default_and_machine_as_in_mod_amd() -> None:
    assert Feeder().silence(4000).decided == ("notsure", "INITIALSILENCE", 2.5)
    assert Feeder(initial_silence_result="machine").silence(4000).decided == ("machine", "INITIALSILENCE", 2.5)


def test_hello_then_silence_is_human_after_the_after_greeting_silence() -> None:
    f = Feeder().silence(400).voice(500).silence(2000)
    assert f.decided == ("human", "HUMAN", 1.7)  # 0.9 s end of "hello" + 0.8 s


def test_long_greeting_is_machine_when_voice_reaches_greeting_ms() -> None:
    # two long words with a pause: cumulative voice reaches 1500 ms inside the second one
    f = Feeder().silence(300).voice(1000).silence(400).voice(1000)
    assert f.decided == ("machine", "LONGGREETING", 0.3 + 1.0 + 0.4 + 0.5)


def test_third_word_is_machine_maxwords() -> None:
    f = Feeder().silence(200)
    for _ in range(3):
        f.voice(200).silence(100)
    assert f.decided == ("machine", "MAXWORDS", 0.2 + 0.3 + 0.3 + 0.1)  # a word counts at 100 ms of voice


def test_one_very_long_word_is_maxwordlength() -> None:
    f = Feeder(greeting=60000, total_analysis_time=60000).silence(100).voice(6000)
    assert f.decided == ("machine", "MAXWORDLENGTH", 5.1)


def test_undecided_at_total_analysis_time_is_toolong() -> None:
    f = Feeder(after_greeting_silence=3000, greeting=60000, maximum_number_of_words=100).silence(100)
    for _ in range(20):
        f.voice(200).silence(1000)
    assert f.decided == ("notsure", "TOOLONG", 5.0)


def test_blips_shorter_than_a_word_neither_count_nor_reset_initial_silence() -> None:
    f = Feeder().silence(1000).voice(60).silence(1000).voice(60).silence(1000)
    assert f.decided[:2] == ("notsure", "INITIALSILENCE")
    assert f.decided[2] == pytest.approx(2.62)  # the blips' 120 ms are not silence


def test_short_gaps_inside_a_word_do_not_make_new_words() -> None:
    f = Feeder(greeting=60000).silence(200)
    for _ in range(4):
        f.voice(200).silence(40)  # 40 ms < between_words_silence (50)
    f.silence(1000)
    assert f.decided[:2] == ("human", "HUMAN")


def test_late_talker_is_not_a_machine_for_talking_long() -> None:
    """A first word 1.2 s after answer is likely a reply to the robot's prompt (machines greet at once)."""
    f = Feeder().silence(1200)
    for _ in range(3):
        f.voice(700).silence(300)  # 3 words, 2.1 s of voice: MAXWORDS and LONGGREETING under mod_amd
    assert f.out == []
    f.silence(600)
    assert f.decided == ("human", "HUMAN", 1.2 + 2.7 + 0.8)  # 800 ms of silence after the last word


def test_late_talker_who_never_pauses_is_toolong_or_a_voicemail_phrase() -> None:
    assert Feeder().silence(1200).voice(5000).decided == ("notsure", "TOOLONG", 5.0)
    f = Feeder().silence(1200).voice(1500).said("the person you are calling is not available", final=False)
    assert f.decided == ("machine", "VOICEMAILPHRASE", 2.7)


def test_late_onset_rule_can_be_turned_off() -> None:
    f = Feeder(late_onset_ms=0).silence(1200)
    for _ in range(3):
        f.voice(300).silence(100)
    assert f.decided == ("machine", "MAXWORDS", 1.2 + 0.4 + 0.4 + 0.1)


def test_greeting_just_before_the_late_onset_is_judged_as_mod_amd_does() -> None:
    f = Feeder().silence(980).voice(1600)  # the first word began at 0.98 s
    assert f.decided == ("machine", "LONGGREETING", 0.98 + 1.5)


def test_exactly_one_decision_whatever_follows() -> None:
    f = Feeder().silence(400).voice(400).silence(900).voice(3000).silence(3000)
    f.said("please leave a message after the tone")
    assert f.decided[:2] == ("human", "HUMAN")


@pytest.mark.parametrize("text", ["Please leave a message after the tone.", "He is not available right now",
                                  "Laissez un message après le bip.", "Votre correspondant n’est pas disponible",
                                  "VOICEMAIL"])
def test_voicemail_phrases_decide_machine_at_once(text: str) -> None:
    f = Feeder().silence(300).voice(600).silence(200).said(text, final=False)
    assert f.decided == ("machine", "VOICEMAILPHRASE", 1.1)


@pytest.mark.parametrize("text", ["Hello?", "Allô ?", "oui ?", "Yes, hello?", "Allo allo"])
def test_short_greeting_heard_by_stt_decides_human_after_a_short_silence(text: str) -> None:
    f = Feeder().silence(300).voice(500).silence(200).said(text)
    assert f.out == []  # only 200 ms of silence so far
    f.silence(400)
    assert f.decided == ("human", "HUMAN", 0.8 + 0.3)  # hint_silence_ms 300, not 800


def test_final_arriving_after_the_silence_decides_at_once() -> None:
    f = Feeder().silence(300).voice(500).silence(500).said("Hello?")
    assert f.decided == ("human", "HUMAN", 1.3)


@pytest.mark.parametrize("text,final", [("Hello, this is Mark", True), ("hello", False),
                                        ("bonjour vous êtes bien chez Marc", True), ("", True)])
def test_other_text_or_a_partial_greeting_is_no_hint(text: str, final: bool) -> None:
    f = Feeder().silence(300).voice(500).silence(200).said(text, final).silence(400)
    assert f.out == []
    f.silence(200)
    assert f.decided == ("human", "HUMAN", 1.6)  # the plain 800 ms rule


def test_greeting_hint_is_cancelled_when_talk_resumes() -> None:
    f = Feeder(greeting=60000).silence(300).voice(500).silence(100).said("Hello?").voice(300).silence(500)
    assert f.out == []
    f.silence(300)
    assert f.decided[:2] == ("human", "HUMAN")
    assert f.decided[2] == pytest.approx(2.0)


def test_greeting_final_arriving_while_talk_resumed_is_no_hint() -> None:
    # "Hello?" ended at 0.8; its final arrives at 1.3, while the caller talks again: that talk cancels it
    f = Feeder(greeting=60000).silence(300).voice(500).silence(200).voice(300).said("Hello?", at=0.8).silence(600)
    assert f.out == []
    f.silence(200)
    assert f.decided == ("human", "HUMAN", 2.1)


def _late_voicemail(latency_s: float) -> Feeder:
    """A voicemail that starts late and never pauses (so no frame rule calls it a machine); STT hears
    "not available" in the audio up to 2.7 s and its decode comes back ``latency_s`` later."""
    f = Feeder(transcripts=True).silence(1200).voice(1500)
    heard = f.now
    f.voice(round(latency_s * 1000))
    f.said("the person you are calling is not available", final=False, at=heard)
    return f.voice(6000)


@pytest.mark.parametrize("latency_s", [0.0, 0.3, 1.0, 2.3, 3.1])
def test_a_voicemail_phrase_verdict_does_not_depend_on_decode_latency(latency_s: float) -> None:
    """Issue 9: the hint is dated by its audio (2.7 s); a decode back after TOOLONG (5.0 s) still decides,
    because with STT on the verdict waits up to amd.hint_wait_ms (1 s) for the words of earlier speech."""
    assert _late_voicemail(latency_s).decided == ("machine", "VOICEMAILPHRASE", 2.7)


def test_a_hint_later_than_hint_wait_ms_no_longer_counts() -> None:
    assert _late_voicemail(3.5).decided == ("notsure", "TOOLONG", 5.0)


@pytest.mark.parametrize("latency_s", [0.1, 0.5, 1.0])
def test_a_short_greeting_decides_at_the_same_time_whatever_the_decode_latency(latency_s: float) -> None:
    f = Feeder(transcripts=True).silence(300).voice(500)  # "Hello?" ends at 0.8
    f.silence(round(latency_s * 1000)).said("Hello?", at=0.8).silence(2000)
    assert f.decided == ("human", "HUMAN", 0.8 + 0.3)  # hint_silence_ms after the end of "Hello?"


def test_with_stt_a_verdict_waits_for_the_words_before_it_at_most_hint_wait_ms() -> None:
    f = Feeder(transcripts=True).silence(300).voice(500).silence(1780)  # HUMAN at 1.6, nothing heard yet
    assert f.out == []
    f.silence(20)  # 1.6 + hint_wait_ms
    assert f.decided == ("human", "HUMAN", 1.6)
    g = Feeder(transcripts=True).silence(300).voice(500).silence(1000)
    assert g.out == []
    g.said("Hello, this is Mark", at=0.8)  # a transcript of the word before it: no need to wait longer
    assert g.decided == ("human", "HUMAN", 1.6)
    silent = Feeder(transcripts=True).silence(2500)  # no word: nothing to wait for
    assert silent.decided == ("notsure", "INITIALSILENCE", 2.5)


def test_a_held_verdict_waits_only_for_transcripts_of_the_speech_stt_was_given() -> None:
    """The line gate heard voice until 0.8 s, but the segment speech recognition got ended at 0.7 (the rest was
    the prompt's echo tail, or a sound the speech classifier refused): no transcript will ever cover 0.8."""
    given = Feeder(transcripts=True).silence(300).voice(500).silence(1000, stt_until=0.7)  # HUMAN at 1.6, held
    assert given.out == []
    given.said("Yes.", at=0.7)  # the final of that segment: all the speech STT had
    assert given.decided == ("human", "HUMAN", 1.6) and given.now == 1.8
    untold = Feeder(transcripts=True).silence(300).voice(500).silence(1000)  # not told: waits for a transcript of 0.8
    assert untold.said("Yes.", at=0.7).out == []
    assert untold.silence(800).decided == ("human", "HUMAN", 1.6) and untold.now == 2.6  # hint_wait_ms after


def test_a_held_verdict_waits_while_a_segment_may_still_bring_words() -> None:
    """``stt_until`` None: a segment is open or starting, its words are still to come."""
    f = Feeder(transcripts=True).silence(300).voice(500).silence(1000, stt_until=None)
    assert f.said("Yes.", at=0.7).out == []


def test_a_final_stt_suppressed_releases_a_held_verdict() -> None:
    """No words for the speech (a cough, a language the model does not know): ``heard`` says STT is done with it."""
    f = Feeder(transcripts=True).silence(300).voice(500).silence(1000, stt_until=0.8)
    assert f.out == []
    f.out += f.amd.heard(0.8)
    assert f.decided == ("human", "HUMAN", 1.6) and f.now == 1.8
    g = Feeder(transcripts=True).silence(300).voice(500).silence(1000, stt_until=0.8)
    assert g.amd.heard(0.5) == []  # an earlier segment's: the speech up to 0.8 is still to be transcribed


def test_flush_sends_a_verdict_still_waiting_at_the_end_of_the_stream() -> None:
    f = Feeder(transcripts=True).silence(300).voice(500).silence(1000)
    assert f.out == [] and f.amd.decision is None
    (verdict,) = f.amd.flush()
    assert (verdict.result, verdict.cause, verdict.decided_at_s) == ("human", "HUMAN", 1.6)
    assert f.amd.flush() == []


def test_hint_text_is_capped() -> None:
    f = Feeder(max_hint_chars=20).silence(300).voice(300).said("x" * 30 + " leave a message", final=False)
    assert f.out == []


def test_disabled_amd_decides_nothing() -> None:
    f = Feeder(enabled=False).silence(6000).said("leave a message")
    assert f.out == []


def test_amd_event_round_trips_through_the_schema() -> None:
    (event,) = Feeder().silence(400).voice(500).silence(900).out
    text = to_json(event, "c0ffee00-0000-4000-8000-000000000000")
    assert text == ('{"v":1,"type":"amd","call":"c0ffee00-0000-4000-8000-000000000000","t":1.7,'
                    '"result":"human","cause":"HUMAN","decided_at_s":1.7}')
    assert parse_event(text)[1] == event


def test_normalise_drops_case_accents_and_punctuation() -> None:
    assert normalise("  Allô ?  N’est-ce PAS… Après le BIP!") == "allo n'est ce pas apres le bip"


def test_initial_silence_result_must_be_a_result() -> None:
    with pytest.raises(ValueError, match="initial_silence_result='robot'"):
        AmdParams(AmdSettings(initial_silence_result="robot"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 60), st.sampled_from(["", "hello?", "oui", "leave a message"])),
                min_size=1, max_size=40))
def test_one_decision_by_total_analysis_time_whatever_the_input(runs: list[tuple[bool, int, str]]) -> None:
    f = Feeder()
    for voiced, frames, text in runs:
        f.run(20 * frames, voiced)
        if text:
            f.said(text, final=True)
    f.silence(5000)
    result, cause, at = f.decided
    assert result in ("human", "machine", "notsure") and 0 < at <= 5.0 + 1e-9
