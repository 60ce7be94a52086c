"""The sans-I/O call: every path as a plain function test with a fake clock (no gevent, no sockets, no sleeps)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from callbot.config import Settings
from callbot.events import Amd, BargeIn, Beep, Final, SpeechShort, SpeechStarted, SpeechStopped
from callbot.robot.call.events import (
    Answered, Deadline, EslUp, HungUp, Parked, PlaybackStarted, PlaybackStopped, StreamConnected, StreamLost,
)
from callbot.robot.call.states import TRANSITIONS, CallState, CallStateMachine, IllegalTransition, allowed
from call_harness import CallHarness

ROBOT_CALL = Path(__file__).resolve().parents[1] / "robot" / "call"


def barge(h: CallHarness, onset: float = 1.5) -> None:
    """The caller talks over the prompt from ``onset`` (stream time); the detector fires 1.5 s later."""
    h.audio(SpeechStarted(t=onset))
    h.advance(1.5)
    h.audio(BargeIn(t=onset + 1.5, onset_s=onset, duration_ms=1500))


def playing_call(**kw) -> CallHarness:
    h = CallHarness(**kw).start()
    h.answer_and_park()
    h.play_started()
    return h


# ---- the call never touches a clock, a socket or a greenlet ------------------------------------

def test_call_logic_imports_no_clock_socket_or_greenlet() -> None:
    banned = {"time", "gevent", "socket", "threading", "asyncio", "select", "datetime"}
    for path in sorted(ROBOT_CALL.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & banned, f"{path.name} imports {names & banned}"


# ---- barge-in --------------------------------------------------------------------------------

def test_barge_in_sends_uuid_break_at_once_and_only_once() -> None:
    h = playing_call()
    barge(h)
    breaks = [(t, cmd) for t, what, cmd in h.sent if what == "break"]
    assert len(breaks) == 1 and breaks[0][1] == f"uuid_break {h.call.uuid} all"
    assert breaks[0][0] == pytest.approx(h.now)  # no call time passes between the event and the command
    h.audio(BargeIn(t=3.5, onset_s=1.5, duration_ms=2000))  # a second report of the same utterance
    assert h.whats().count("break") == 1
    assert h.rows("barge_in_ignored")[-1]["reason"] == "already breaking"


def test_barge_in_then_listen_then_branch_on_the_reply() -> None:
    h = playing_call()
    barge(h)
    h.play_stopped("break")
    assert h.call.sm.state is CallState.LISTENING
    h.advance(1.0)
    h.audio(SpeechStopped(t=5.7, duration_ms=4200))
    h.advance(0.3)
    h.audio(Final(t=6.0, text="please call me back next week", start_s=1.5, end_s=5.7,
                  avg_logprob=-0.2, no_speech_prob=0.01))
    assert h.call.record.replies == [{"step": "greeting", "outcome": "later", "text": "please call me back next week"}]
    assert h.call.step is not None and h.call.step.name == "callback"
    assert h.whats()[-1] == "broadcast"


def test_barge_in_on_a_prompt_that_forbids_it_is_ignored() -> None:
    h = playing_call()
    barge(h)
    h.play_stopped("break")
    h.advance(0.5)
    h.audio(SpeechStopped(t=5.0, duration_ms=3500))
    h.audio(Final(t=5.1, text="yes", start_s=1.5, end_s=5.0, avg_logprob=-0.1, no_speech_prob=0.0))
    assert h.call.step.name == "confirmed" and not h.call.step.barge_in
    h.play_started()
    barge(h, onset=9.0)
    assert h.whats().count("break") == 1
    assert h.rows("barge_in_ignored")[-1]["reason"] == "barge-in off for this prompt"


def test_short_reply_over_the_greeting_is_not_taken_as_the_answer() -> None:
    """A "Hello?" said over the greeting (no barge-in) does not answer the question the greeting then asks."""
    h = playing_call()
    h.audio(SpeechStarted(t=0.5))
    h.advance(0.6)
    h.audio(SpeechShort(t=1.1, duration_ms=600))
    h.audio(Final(t=1.4, text="hello", start_s=0.5, end_s=1.1, avg_logprob=-0.3, no_speech_prob=0.1))
    h.advance(5.0)
    h.play_stopped("done")
    assert h.call.sm.state is CallState.LISTENING
    assert h.call.record.replies == []
    h.advance(5.9)
    assert h.call.record.replies == []  # the window stays open for the answer to the question
    h.advance(0.2)  # ... and passes in silence: what was said over the greeting stands
    assert h.call.record.replies == [{"step": "greeting", "outcome": "unknown", "text": "hello"}]


def test_a_reply_in_the_window_wins_over_words_said_over_the_prompt() -> None:
    h = playing_call()
    h.audio(SpeechStarted(t=0.5))
    h.audio(SpeechShort(t=1.1, duration_ms=600))
    h.audio(Final(t=1.4, text="hello", start_s=0.5, end_s=1.1, avg_logprob=-0.3, no_speech_prob=0.1))
    h.advance(9.0)
    h.play_stopped("done")
    h.advance(1.0)
    h.audio(SpeechStarted(t=11.0))
    h.audio(SpeechShort(t=11.4, duration_ms=400))
    h.audio(Final(t=11.5, text="yes", start_s=11.0, end_s=11.4, avg_logprob=-0.1, no_speech_prob=0.0))
    assert h.call.record.replies == [{"step": "greeting", "outcome": "yes", "text": "yes"}]


# ---- the first prompt waits for CHANNEL_PARK ---------------------------------------------------

def test_first_broadcast_waits_for_channel_park() -> None:
    h = CallHarness().start()
    h.feed(Answered(h.stamp()))
    h.feed(StreamConnected(h.stamp()))
    assert "broadcast" not in h.whats()
    h.advance(0.05)
    h.feed(Parked(h.stamp()))
    assert h.whats()[-1] == "broadcast"


def test_no_park_event_starts_the_script_after_the_park_wait_and_flags_it() -> None:
    h = CallHarness().start()
    h.feed(Answered(h.stamp()))
    h.advance(h.settings.robot.park_wait_s - 0.01)
    assert "broadcast" not in h.whats()
    h.advance(0.02)
    assert "broadcast" in h.whats() and "no_park_event" in h.call.record.flags


# ---- playback markers ----------------------------------------------------------------------------

def test_playback_markers_follow_playback_start_and_stop() -> None:
    h = playing_call()
    markers = [cmd for _, what, cmd in h.sent if what == "marker"]
    assert len(markers) == 1
    body = json.loads(markers[0].split(" send_text ", 1)[1].strip("'"))
    assert body["type"] == "playback" and body["state"] == "start" and body["file"] == "en/16000/greeting.wav"
    assert "'" not in body["text"] and body["text"].startswith("Hello, this is the Acme clinic")
    h.play_stopped()
    last = json.loads([cmd for _, what, cmd in h.sent if what == "marker"][-1].split(" send_text ", 1)[1].strip("'"))
    assert last == {"type": "playback", "state": "stop"}


def test_played_ms_is_the_switch_span_not_the_read_ahead() -> None:
    h = playing_call()
    h.advance(3.1)
    h.play_stopped("break", reported_ms=4096)  # what a real switch reports after 3.1 s
    row = h.rows("PLAYBACK_STOP")[-1]
    assert row["played_ms"] == 3100 and row["reported_ms"] == 4096


# ---- AMD and the voicemail ----------------------------------------------------------------------

def test_machine_during_the_greeting_breaks_once_waits_for_the_beep_then_leaves_the_message() -> None:
    h = playing_call()
    h.audio(SpeechStarted(t=0.5))  # the machine's greeting
    h.advance(2.0)
    h.audio(Amd(t=2.0, result="machine", cause="LONGGREETING", decided_at_s=2.0))
    h.audio(BargeIn(t=2.0, onset_s=0.5, duration_ms=1500))  # the greeting also counts as a barge-in
    assert h.whats().count("break") == 1
    h.play_stopped("break")
    assert h.call.sm.state is CallState.WAIT_BEEP
    h.advance(3.0)  # the greeting goes on: no quiet, no beep yet
    assert h.whats()[-1] == "marker"
    h.audio(SpeechStopped(t=5.0, duration_ms=4500))
    h.audio(Beep(t=5.0, freq_hz=1000.0, duration_ms=400))
    assert h.call.sm.state is CallState.PLAYING and h.call.step.name == "voicemail"
    h.play_started()
    h.advance(7.0)
    h.play_stopped("done")
    assert h.whats()[-1] == "kill" and h.call.record.disposition == "voicemail_left"
    h.hangup()
    assert h.call.done and h.call.record.hangup_by == "robot" and h.call.record.scenario_completed


def test_a_machine_verdict_just_after_a_broadcast_flushes_it_and_goes_on_at_once() -> None:
    # uuid_break all before the prompt's PLAYBACK_START flushes the queued broadcast: no START or STOP comes
    h = CallHarness().start()
    h.answer_and_park()
    assert h.whats()[-1] == "broadcast"
    h.audio(Amd(t=0.1, result="machine", cause="MAXWORDS", decided_at_s=0.1))
    assert h.whats()[-1] == "break" and h.call.sm.state is CallState.PLAYING
    h.advance(h.settings.robot.flushed_prompt_wait_s + 0.02)
    assert h.call.sm.state is CallState.WAIT_BEEP and h.rows("prompt_flushed")
    assert "playback_timeout" not in h.call.record.flags


def test_a_barge_in_before_the_prompt_started_flushes_it_too() -> None:
    h = CallHarness().start()
    h.answer_and_park()
    barge(h, onset=0.0)  # the caller was already talking when the broadcast went out
    assert h.whats()[-1] == "break"
    h.advance(h.settings.robot.flushed_prompt_wait_s + 0.02)
    assert h.rows("prompt_flushed") and h.call.sm.state is CallState.LISTENING
    assert "playback_timeout" not in h.call.record.flags


def test_a_prompt_broken_as_it_started_still_waits_for_its_stop() -> None:
    h = CallHarness().start()
    h.answer_and_park()
    h.audio(Amd(t=0.1, result="machine", cause="MAXWORDS", decided_at_s=0.1))
    h.play_started(delay_s=0.05)  # its START was already on its way when the break went out
    h.advance(h.settings.robot.flushed_prompt_wait_s + 0.5)
    assert h.call.sm.state is CallState.PLAYING and not h.rows("prompt_flushed")
    h.play_stopped("break")
    assert h.call.sm.state is CallState.WAIT_BEEP and "playback_timeout" not in h.call.record.flags


def test_no_beep_after_quiet_greeting_follows_on_no_beep() -> None:
    h = playing_call()
    h.audio(Amd(t=1.0, result="machine", cause="MAXWORDS", decided_at_s=1.0))
    h.play_stopped("break")
    quiet = h.settings.robot.no_beep_silence_s
    h.advance(quiet - 0.05)
    assert h.call.sm.state is CallState.WAIT_BEEP
    h.advance(0.1)
    assert h.rows("no_beep") and h.call.step.name == "voicemail"


def test_amd_deadline_settles_on_notsure() -> None:
    h = playing_call()
    h.advance(h.settings.robot.amd_wait_s + 0.1)
    assert "amd_timeout" in h.call.record.flags
    assert h.rows("amd_result")[-1]["cause"] == "ROBOT_DEADLINE"


# ---- hang-ups and failures ----------------------------------------------------------------------

def test_callee_hangs_up_mid_prompt() -> None:
    h = playing_call()
    h.advance(1.0)
    h.hangup("NORMAL_CLEARING")
    rec = h.call.record
    assert h.call.done and rec.hangup_by == "callee" and rec.disposition == "hung_up"
    assert h.rows("prompt_cut_by_hangup")


def test_switch_shutdown_is_not_blamed_on_the_callee() -> None:
    h = playing_call()
    h.hangup("SYSTEM_SHUTDOWN")
    assert h.call.record.hangup_by == "switch"


def test_busy_originate_ends_the_call_with_its_cause() -> None:
    h = CallHarness().start()
    h.originate_result("-ERR USER_BUSY\n")
    assert h.call.done and h.call.record.disposition == "user_busy"


def test_no_answer_in_time_ends_the_call_and_kills_the_channel() -> None:
    h = CallHarness().start()
    s = h.settings.robot
    h.advance(s.dial_timeout_s + s.dial_grace_s + 0.1)
    assert h.call.done and h.call.record.disposition == "no_answer_timeout" and "kill" in h.whats()


def test_no_hangup_event_after_uuid_kill_is_flagged_and_the_call_ends() -> None:
    h = playing_call()
    h.call.handle(Deadline(), h.now)  # nothing due: no effect
    h.advance(30.0)  # greeting, listening window, repeat... until the scenario ends and uuid_kill goes out
    while not h.call.done and h.call.sm.state is not CallState.HANGING_UP:
        if h.call.playing is not None and h.call.playing.started_at is None:
            h.play_started()
        h.advance(10.0)
    h.advance(h.settings.robot.hangup_wait_s + 0.1)
    assert h.call.done and "no_hangup_event" in h.call.record.flags


def test_playback_that_never_reports_its_stop_is_flagged() -> None:
    h = playing_call()
    h.advance(h.call.step.duration_s + h.settings.robot.playback_margin_s + 0.2)
    assert "playback_timeout" in h.call.record.flags and h.call.sm.state is CallState.LISTENING


def test_max_call_length_hangs_up() -> None:
    h = playing_call(settings=Settings().replace(**{"robot.max_call_s": 3.0}))
    h.advance(3.1)
    assert "max_call_length" in h.call.record.flags and h.whats()[-1] == "kill"


def test_refused_broadcast_fails_the_call_and_hangs_up() -> None:
    h = CallHarness(replies={"broadcast": "-ERR No such channel!\n"}).start()
    h.answer_and_park()
    assert "error" in h.call.record.flags and h.whats()[-1] == "kill"


def test_esl_outage_defers_the_break_until_the_link_is_back() -> None:
    h = playing_call(replies={"break": "DOWN connection lost"})
    barge(h)
    assert h.rows("api_failed")[-1]["link_down"]
    h.replies.clear()
    h.feed(EslUp(outage_s=0.4))
    assert h.whats()[-2:] == ["break", "break"]


# ---- a lost audio stream -------------------------------------------------------------------------

def test_stream_lost_mid_speech_clears_speaking_and_restarts_the_stream() -> None:
    h = playing_call()
    barge(h)
    h.play_stopped("break")
    h.feed(StreamLost("mod_audio_stream::disconnect", "server closed", h.stamp()))
    assert "audio_stream_lost" in h.call.record.flags and not h.call.reply.speaking
    backoff = h.settings.robot.stream_restart_backoff_s
    h.advance(backoff + 0.01)
    assert h.whats()[-2:] == ["stream_stop", "stream_restart"]
    h.advance(h.settings.robot.final_wait_s + 0.1)  # no final will come: the window closes on time
    assert h.call.record.replies[0]["outcome"] == "unknown"
    h.feed(StreamConnected(h.stamp()))
    assert h.rows("audio_gap_end")


def test_stream_that_never_connected_is_unreachable_not_lost() -> None:
    h = playing_call(replies={"stream_start": "-ERR connect failed\n"})
    assert "audio_unreachable" in h.call.record.flags and "audio_stream_lost" not in h.call.record.flags


# ---- the transition table ------------------------------------------------------------------------

def test_the_table_covers_every_state_and_names_both_states_when_it_refuses() -> None:
    assert set(TRANSITIONS) == set(CallState)
    sm = CallStateMachine("c")
    with pytest.raises(IllegalTransition, match="dialing -> playing on BargeIn"):
        sm.go(CallState.PLAYING, BargeIn, "test")
    assert allowed(CallState.LISTENING, Final) == allowed(CallState.LISTENING, SpeechStopped)  # via AudioEvent
    assert allowed(CallState.DONE, HungUp) == frozenset()


def test_every_move_of_a_full_call_is_in_the_table() -> None:
    h = playing_call()
    barge(h)
    h.play_stopped("break")
    h.audio(SpeechStopped(t=5.7, duration_ms=4200))
    h.audio(Final(t=5.8, text="no thanks", start_s=1.5, end_s=5.7, avg_logprob=-0.2, no_speech_prob=0.0))
    h.play_started()
    h.advance(4.0)
    h.play_stopped()
    h.hangup()
    moves = [(m.source.value, m.target.value, m.event) for m in h.call.sm.history]
    assert moves == [
        ("dialing", "answered", "Answered"), ("answered", "amd", "ApiReply"), ("amd", "playing", "Parked"),
        ("playing", "listening", "PlaybackStopped"), ("listening", "playing", "Final"),
        ("playing", "hanging_up", "PlaybackStopped"), ("hanging_up", "hangup", "HungUp"),
        ("hangup", "done", "HangupComplete")]
    assert h.call.record.disposition == "declined"


def test_a_verdict_after_the_deadline_is_recorded_not_acted_on() -> None:
    h = playing_call()
    h.advance(h.settings.robot.amd_wait_s + 0.1)
    h.audio(Amd(t=7.0, result="machine", cause="LONGGREETING", decided_at_s=7.0))
    assert h.call.record.amd == "machine" and h.rows("amd_result")[-1]["action"] == "none"
    assert h.call.sm.state is not CallState.WAIT_BEEP


# ---- pause, confirm, resume ----------------------------------------------------------------------

def pause_mode_scenario(tmp_path: Path, backchannel: bool = False):
    from callbot.resources import prompts_dir
    from callbot.robot.scenario.loader import bundled_scenario, load_scenario

    text = bundled_scenario("survey_en").read_text().replace(
        "[steps.greeting]\n", "[steps.greeting]\nbarge_in_mode = \"pause\"\n"
        + ("backchannel = true\n" if backchannel else ""), 1)
    path = tmp_path / "pause.toml"
    path.write_text(text)
    return load_scenario(path, prompts_dir=prompts_dir())


def test_pause_mode_pauses_at_the_onset_and_resumes_a_short_reply(tmp_path: Path) -> None:
    h = playing_call(scenario=pause_mode_scenario(tmp_path))
    h.advance(1.0)
    h.audio(SpeechStarted(t=1.0))
    assert h.sent[-2][2] == f"uuid_fileman {h.call.uuid} pause" and '"state":"pause"' in h.sent[-1][2]
    h.advance(0.8)
    h.audio(SpeechShort(t=1.8, duration_ms=800))
    assert [w for w in h.whats() if w == "pause"] == ["pause", "pause"] and "break" not in h.whats()
    assert '"state":"resume"' in h.sent[-1][2] and h.rows("prompt_resumed")
    assert h.call.sm.state is CallState.PLAYING


def test_pause_mode_breaks_a_long_reply_at_the_mark(tmp_path: Path) -> None:
    h = playing_call(scenario=pause_mode_scenario(tmp_path))
    barge(h, onset=1.0)
    assert h.whats().count("pause") == 1 and h.whats().count("break") == 1


def test_backchannel_partial_at_the_mark_resumes_instead_of_breaking(tmp_path: Path) -> None:
    from callbot.events import Partial

    h = playing_call(scenario=pause_mode_scenario(tmp_path, backchannel=True))
    h.audio(SpeechStarted(t=1.0))
    h.advance(1.0)
    h.audio(Partial(t=2.0, text="uh-huh, yeah", start_s=1.0))
    h.advance(0.5)
    h.audio(BargeIn(t=2.5, onset_s=1.0, duration_ms=1500))
    assert "break" not in h.whats() and h.rows("prompt_resumed")[-1]["why"] == "backchannel"
    h2 = playing_call(scenario=pause_mode_scenario(tmp_path, backchannel=True))
    h2.audio(SpeechStarted(t=1.0))
    h2.advance(1.5)
    h2.audio(Partial(t=2.3, text="yeah but I want to cancel", start_s=1.0))
    h2.audio(BargeIn(t=2.5, onset_s=1.0, duration_ms=1500))
    assert "break" in h2.whats()


def test_audio_lost_for_good_ends_the_call_after_the_prompt_when_the_scenario_says_so(tmp_path: Path) -> None:
    import dataclasses

    from callbot.robot.scenario.loader import bundled_scenario, load_scenario

    scenario = dataclasses.replace(load_scenario(bundled_scenario("survey_en")), on_audio_lost="hangup")
    h = playing_call(scenario=scenario, settings=Settings().replace(**{"robot.stream_restarts": 1}),
                     replies={"stream_restart": "-ERR connect failed\n"})
    h.feed(StreamLost("mod_audio_stream::disconnect", "server gone", h.stamp()))
    h.advance(h.settings.robot.stream_restart_backoff_s * 3)
    assert "audio_gone" in h.call.record.flags and h.call.sm.state is CallState.PLAYING  # not cut mid-prompt
    h.play_stopped("done")
    assert h.whats()[-1] == "kill" and h.call.sm.state is CallState.HANGING_UP


def test_the_scenario_max_call_length_is_the_switch_side_limit_too() -> None:
    import dataclasses

    from callbot.robot.scenario.loader import bundled_scenario, load_scenario

    scenario = dataclasses.replace(load_scenario(bundled_scenario("survey_en")), max_call_s=90.0)
    h = CallHarness(scenario=scenario).start()
    assert "execute_on_answer_max_call=sched_hangup:+90" in h.sent[0][2]


# ---- the answer's true offset: a start command the switch ran late ----------------------------------------

@pytest.mark.parametrize("bug_after_s, told", [(0.3, 300), (0.005, None)])
def test_a_stream_started_late_by_the_switch_gets_its_answer_offset_from_the_switch_stamps(bug_after_s, told) -> None:
    """The URL says 0 ms (the start command went out at the answer); MEDIA_BUG_START's stamp says when the switch
    ran it. A frame or more apart, the robot sends the switch's figure as an ``answered`` marker; less, nothing."""
    from callbot.robot.call.events import MediaBugStarted

    h = CallHarness().start()
    answered_us = h.stamp()
    h.feed(Answered(answered_us))
    (start,) = [line for _, what, line in h.sent if "uuid_audio_stream" in line and " start " in line]
    assert "answered_ago_ms=0" in start
    h.feed(MediaBugStarted(answered_us + round(bug_after_s * 1e6)))
    markers = [line for _, what, line in h.sent if '"type":"answered"' in line]
    if told is None:
        assert markers == [] and h.rows("answer_offset") == []
    else:
        assert markers == [f"uuid_audio_stream {h.call.uuid} send_text '{{\"type\":\"answered\",\"ago_ms\":{told}}}'"]
        assert [(r["said_ms"], r["switch_ms"]) for r in h.rows("answer_offset")] == [(0, told)]
