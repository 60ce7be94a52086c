"""Pure unit tests of the robot's sans-I/O parts: state table, call queue, intents, scenario loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import gevent
import pytest

from callbot.events import BargeIn, Final, SpeechShort, SpeechStarted, SpeechStopped, to_json
from callbot.esl.protocol import EslEvent
from callbot.robot.call.events import AudioTextIgnored, HungUp, PlaybackStopped
from callbot.robot.call.inbound import translate
from callbot.robot.call.reply import ReplyCollector
from callbot.robot.call.timeline import Timeline
from callbot.robot.shell.queue import CallQueue, QueueFull
from callbot.robot.scenario.intents import IntentMatcher, normalize
from callbot.resources import prompts_dir
from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario

# ---- call queue ---------------------------------------------------------------------------


def test_barge_in_and_hangup_jump_ahead_of_waiting_transcripts():
    q = CallQueue(maxsize=10)
    for i in range(5):
        q.put(SpeechShort(t=i, duration_ms=100))
    q.put(BargeIn(t=3.0, onset_s=1.5, duration_ms=1500))
    q.put(HungUp("NORMAL_CLEARING"))
    kinds = [type(q.get(0)).__name__ for _ in range(7)]
    assert kinds == ["BargeIn", "HungUp"] + ["SpeechShort"] * 5
    assert q.get(0.01) is None


def test_full_normal_lane_drops_its_oldest_never_an_urgent_item():
    q = CallQueue(maxsize=3, urgent_max=2)
    for i in range(5):
        q.put(SpeechShort(t=i, duration_ms=100))
    q.put(BargeIn(t=9.0, onset_s=7.5, duration_ms=1500))
    assert q.dropped == 2 and len(q) == 4
    assert [q.get(0).t for _ in range(4)] == [9.0, 2, 3, 4]
    q.put(HungUp("NORMAL_CLEARING"))
    q.put(HungUp("NORMAL_CLEARING"))
    with pytest.raises(QueueFull):
        q.put(HungUp("NORMAL_CLEARING"))


def test_a_waiting_getter_wakes_when_an_item_arrives():
    q = CallQueue()
    gevent.spawn_later(0.02, q.put, HungUp("NORMAL_CLEARING"))
    item = q.get(timeout=2)
    assert isinstance(item, HungUp)


# ---- intents ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang,text,intent", [
    ("en", "Yes, that works.", "yes"),
    ("en", "YEAH sure", "yes"),
    ("en", "No thanks", "no"),
    ("en", "actually I am not interested right now so please call me back next week on tuesday", "later"),
    ("en", "Please stop calling me", "stop"),
    ("en", "I know the answer", None),  # "no" only as a whole word
    ("en", "hello there who is this", None),
    ("fr", "Oui, d'accord.", "yes"),
    ("fr", "NON merci", "no"),
    ("fr", "Rappelez-moi plus tard", "later"),
    ("fr", "Ne m'appelez plus jamais", "stop"),
    ("fr", "Je suis intéressé", None),
    ("fr", "Ça ne m'intéresse pas", "no"),
])
def test_intents_match_whole_words_without_case_or_accents(lang, text, intent):
    assert IntentMatcher.for_language(lang).match(text) == intent


@pytest.mark.parametrize("lang,text,elsewhere,where_waited_on", [
    ("en", "Hello? Hold on one second, please.", None, "hold"),
    ("en", "Hold on, yes, I can make it.", "yes", "hold"),  # hold comes before yes ...
    ("en", "Hang on, no, call me back next week.", "later", "later"),  # ... and after later
    ("en", "Just a moment.", None, "hold"),
    ("fr", "Un instant, s'il vous plaît.", None, "hold"),
    ("fr", "Ne quittez pas.", None, "hold"),
])
def test_hold_is_heard_only_where_the_step_waits_on_it(lang, text, elsewhere, where_waited_on):
    matcher = IntentMatcher.for_language(lang)
    assert matcher.match(text) == elsewhere
    assert matcher.match(text, optional=("hold",)) == where_waited_on


def test_normalize_strips_accents_case_and_punctuation():
    assert normalize("  D'ACCORD, très Bien!  ") == "d accord tres bien"


def test_unknown_language_or_intent_is_refused_clearly():
    with pytest.raises(ValueError, match="no built-in intent rules for language 'de'"):
        IntentMatcher.for_language("de")
    with pytest.raises(ValueError, match="unknown intent"):
        IntentMatcher({"maybe": ["perhaps"]})


# ---- scenarios ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,rate", [("survey_en", 16000), ("survey_en", 8000), ("survey_fr", 16000),
                                       ("survey_fr", 8000)])
def test_bundled_scenarios_load_with_every_prompt_present(name, rate):
    sc = load_scenario(bundled_scenario(name), rate=rate)
    assert sc.start == "greeting" and sc.steps["greeting"].barge_in
    for step in sc.steps.values():
        assert step.prompt is not None and step.prompt.is_file() and f"/{rate}/" in str(step.prompt)
    assert sc.step("greeting").branch("yes") == "confirmed"
    assert sc.step("greeting").branch("silence") == "repeat"  # via default


def test_greeting_prompt_is_long_enough_for_a_barge_in():
    import soundfile

    for lang in ("en", "fr"):
        assert soundfile.info(str(prompts_dir() / lang / "16000" / "greeting.wav")).duration >= 6.0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_and_every_other_error_are_reported_at_load_with_locations(tmp_path):
    audio = tmp_path / "audio"
    (audio / "16000").mkdir(parents=True)
    shutil.copy(prompts_dir() / "en" / "16000" / "greeting.wav", audio / "16000" / "hello.wav")
    path = _write(tmp_path, """
[scenario]
language = "en"
start = "hello"
audio_dir = "audio"
colour = "blue"

[voicemail]
on_machine = "shout"

[steps.hello]
prompt = "hello.wav"
listen_s = 5
on = { yes = "bye", maybe = "bye", no = "nowhere" }

[steps.bye]
prompt = "missing.wav"
disposition = "done"
next = "hello"
""")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    for expected in [
        "scenario.colour: unknown key",
        "voicemail.on_machine: 'shout' is not one of",
        "steps.hello.on.maybe: unknown outcome",
        "steps.hello.on.no: no step named 'nowhere'",
        "steps.hello.on: outcomes stop, later, unknown, silence go nowhere",
        f"steps.bye.prompt: file {audio / '16000' / 'missing.wav'} does not exist",
        "steps.bye: give exactly one of",
    ]:
        assert expected in text, (expected, text)
    assert str(path) in text and len(info.value.problems) == 7


def test_bad_toml_missing_file_and_wrong_types_are_clear(tmp_path):
    with pytest.raises(ScenarioError, match="file does not exist"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(_write(tmp_path, "[scenario\n"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, '[scenario]\nlanguage = "en"\nstart = 3\n[steps.a]\nprompt = 1\n'
                                       'barge_in = "yes"\nlisten_s = true\ndisposition = "x"\n'))
    text = str(info.value)
    assert "scenario.start: expected str, got 3" in text
    assert "steps.a.prompt: expected str, got 1" in text
    assert "steps.a.barge_in: expected bool" in text
    assert "steps.a.listen_s: expected a number, got True" in text


# ---- reply collector and event classification ----------------------------------------------


def test_reply_waits_for_the_final_after_speech_then_judges_it():
    r = ReplyCollector(final_wait_s=2.0)
    match = IntentMatcher.for_language("en").match
    assert not r.complete(now=1.0, started=0.0, window_s=5.0, max_reply_s=30.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    assert not r.complete(now=40.0, started=20.0, window_s=5.0, max_reply_s=30.0)  # still talking
    assert r.complete(now=50.0, started=20.0, window_s=5.0, max_reply_s=30.0)  # talking too long
    r.feed(SpeechShort(t=1.4, duration_ms=400), now=1.5)
    assert not r.complete(now=3.0, started=0.0, window_s=5.0, max_reply_s=30.0)  # a final may come
    assert r.next_check(started=0.0, window_s=5.0, max_reply_s=30.0) == 3.5
    r.feed(Final(t=1.6, text=" Yes. ", start_s=1.0, end_s=1.4, avg_logprob=0, no_speech_prob=0), now=1.7)
    assert r.complete(now=1.7, started=0.0, window_s=5.0, max_reply_s=30.0)
    assert r.outcome(match) == ("yes", "Yes.")
    r.reset()
    assert r.outcome(match) == ("silence", "") and not r.complete(now=4.0, started=0.0, window_s=5.0,
                                                                    max_reply_s=30.0)
    assert r.complete(now=5.0, started=0.0, window_s=5.0, max_reply_s=30.0)


def test_max_reply_counts_from_the_start_of_the_reply_not_of_a_long_listening_window() -> None:
    """A hold step listens 45 s: a reply that starts 40 s in is not cut at once by the 30 s cap."""
    r = ReplyCollector(final_wait_s=2.0)
    r.feed(SpeechStarted(t=50.0), now=50.0)
    assert not r.complete(now=50.2, started=8.0, window_s=45.0, max_reply_s=30.0)
    assert r.next_check(started=8.0, window_s=45.0, max_reply_s=30.0) == 80.0


def test_after_an_early_final_the_reply_ends_with_its_segment_and_waits_for_nothing_more() -> None:
    """stt.early_final_ms: the final comes before SpeechStopped. The reply is not over until the segment
    closes (the caller, or a machine's greeting, may go on), and then it is over at once."""
    r = ReplyCollector(final_wait_s=2.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    r.feed(Final(t=2.0, text="Call me back.", start_s=1.0, end_s=2.0, avg_logprob=0, no_speech_prob=0), now=2.25)
    assert r.speaking and not r.complete(now=2.25, started=0.0, window_s=5.0, max_reply_s=30.0)
    r.feed(SpeechStopped(t=2.0, duration_ms=1000), now=2.3)
    assert r.complete(now=2.3, started=0.0, window_s=5.0, max_reply_s=30.0) and r.texts == ["Call me back."]


def test_the_caller_stopped_when_the_segment_closed_even_if_its_final_came_first() -> None:
    """The wait for a voicemail beep counts quiet from here: an early final must not make it look older."""
    r = ReplyCollector(final_wait_s=2.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    r.feed(Final(t=2.0, text="Please leave a message.", start_s=1.0, end_s=2.0, avg_logprob=0, no_speech_prob=0),
           now=2.25)
    assert r.stopped_at is None
    r.feed(SpeechStopped(t=2.0, duration_ms=1000), now=2.3)
    assert r.stopped_at == 2.3 and r.speech_ended_at is None


def test_speech_that_goes_on_after_an_early_final_waits_for_its_own_final() -> None:
    r = ReplyCollector(final_wait_s=2.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    r.feed(Final(t=2.0, text="Call me.", start_s=1.0, end_s=2.0, avg_logprob=0, no_speech_prob=0), now=2.25)
    r.feed(SpeechStopped(t=3.5, duration_ms=2500), now=3.8)  # the same segment, closing later
    assert not r.complete(now=4.0, started=0.0, window_s=5.0, max_reply_s=30.0)
    assert r.next_check(started=0.0, window_s=5.0, max_reply_s=30.0) == 5.8
    r.feed(Final(t=3.5, text="Tomorrow.", start_s=2.0, end_s=3.5, avg_logprob=0, no_speech_prob=0), now=4.1)
    assert r.complete(now=4.1, started=0.0, window_s=5.0, max_reply_s=30.0)
    assert r.texts == ["Call me.", "Tomorrow."]


def test_a_late_final_of_earlier_speech_does_not_end_new_speech() -> None:
    r = ReplyCollector(final_wait_s=2.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    r.feed(SpeechShort(t=1.4, duration_ms=400), now=1.7)
    r.feed(SpeechStarted(t=1.9), now=1.9)  # talking again before the first final came
    r.feed(Final(t=1.4, text="Yes.", start_s=1.0, end_s=1.4, avg_logprob=0, no_speech_prob=0), now=2.0)
    assert r.speaking and not r.complete(now=2.0, started=0.0, window_s=5.0, max_reply_s=30.0)


def test_speech_without_any_transcript_is_unknown_after_the_final_wait():
    r = ReplyCollector(final_wait_s=1.5)
    r.feed(SpeechStarted(t=1.0), now=0.1)
    r.feed(SpeechShort(t=1.4, duration_ms=400), now=0.15)
    assert not r.complete(now=1.6, started=0.0, window_s=6.0, max_reply_s=30.0)
    assert r.complete(now=1.66, started=0.0, window_s=6.0, max_reply_s=30.0)
    assert r.outcome(IntentMatcher.for_language("en").match) == ("unknown", "")


def test_a_lost_stream_ends_the_speech_in_progress():
    r = ReplyCollector(final_wait_s=1.0)
    r.feed(SpeechStarted(t=1.0), now=1.0)
    r.audio_lost(now=2.0)
    assert not r.speaking and r.complete(now=3.0, started=0.0, window_s=6.0, max_reply_s=30.0)


def test_translate_gives_each_esl_event_its_class_and_rejects_foreign_audio():
    me, other = "0f8fad5b-d9cb-469f-a165-70867728950e", "1f8fad5b-d9cb-469f-a165-70867728950e"

    def custom(body: str) -> EslEvent:
        return EslEvent([("Event-Subclass", "mod_audio_stream::json"), ("Event-Name", "CUSTOM"),
                         ("Unique-ID", me)], body)

    barge = translate(custom(to_json(BargeIn(t=3.0, onset_s=1.5, duration_ms=1500), me)), me)
    assert isinstance(barge, BargeIn) and barge.onset_s == 1.5
    assert isinstance(translate(custom(to_json(BargeIn(t=3.0, onset_s=1.5, duration_ms=1500), other)), me),
                      AudioTextIgnored)
    assert isinstance(translate(custom('{"type": "transcript"}'), me), AudioTextIgnored)
    hang = translate(EslEvent([("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", me), ("Hangup-Cause", "USER_BUSY"),
                               ("Event-Date-Timestamp", "1700000000000000")]), me)
    assert hang == HungUp("USER_BUSY", gone=False, switch_us=1_700_000_000_000_000)
    stop = translate(EslEvent([("Event-Name", "PLAYBACK_STOP"), ("Unique-ID", me), ("Playback-File-Path", "/p/a.wav"),
                               ("Playback-Status", "break"), ("variable_playback_ms", "4096")]), me)
    assert stop == PlaybackStopped("/p/a.wav", "break", 4096, None)


def test_a_prompt_that_is_not_a_mono_wav_at_the_rate_is_refused_at_load(tmp_path):
    audio = tmp_path / "audio" / "16000"
    audio.mkdir(parents=True)
    shutil.copy(prompts_dir() / "en" / "8000" / "greeting.wav", audio / "hello.wav")
    (audio / "junk.wav").write_bytes(b"not audio at all")
    path = _write(tmp_path, '[scenario]\nlanguage = "en"\nstart = "a"\naudio_dir = "audio"\n'
                            '[steps.a]\nprompt = "hello.wav"\nnext = "b"\n'
                            '[steps.b]\nprompt = "junk.wav"\ndisposition = "done"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert "steps.a.prompt: " in text
    assert "is 8000 Hz with 1 channel(s); prompts under 16000/ must be mono 16000 Hz" in text
    assert "steps.b.prompt: " in text and "is not a readable audio file" in text


def test_timeline_dates_each_clock_in_call_seconds():
    tl = Timeline()
    answer_us = 1_700_000_000_000_000
    tl.add("robot", "originate", 99.0)
    assert tl.rows()[0]["t"] is None  # nothing to date it by before the answer
    tl.mark_answer(100.0, answer_us)
    tl.add("switch", "CHANNEL_ANSWER", 100.001, switch_us=answer_us)
    tl.add("switch", "PLAYBACK_START", 100.31, switch_us=answer_us + 300_000)  # the switch's own stamp wins
    tl.stream_offset_s = 0.05
    tl.add("audio", "barge_in", 103.01, stream_t=2.95)
    tl.add("robot", "uuid_break", 103.011)
    rows = tl.rows()
    assert [r["t"] for r in rows] == [-1.0, 0.0, 0.3, 3.0, 3.011]
    assert rows[3]["stream_t"] == 2.95 and rows[0]["source"] == "robot"
    tl.stream_offset_s = 0.1  # re-based later (simswitch truth): audio rows move
    assert [r["t"] for r in tl.rows()][3] == 3.05
    with pytest.raises(ValueError, match="timeline source"):
        tl.add("elsewhere", "x", 0.0)
