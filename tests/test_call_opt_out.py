"""Opting out during a call, with a fake clock: an opt-out key (campaign.opt_out_dtmf) or the spoken stop intent
writes its row at once (the campaign puts the number on DNC from it), stops the prompt, plays the scenario's
opt-out step and hangs up; nothing else is asked."""

from __future__ import annotations

import pytest

from callbot.config import Settings
from callbot.events import Amd, Final, SpeechStarted, SpeechStopped
from callbot.robot.call.events import Answered, Dtmf, StreamConnected
from callbot.robot.call.states import CallState
from callbot.robot.campaign.rules import opt_out_row, outcome_of, summarize
from callbot.robot.report import build_report
from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario
from call_harness import CallHarness


def playing_call(**kw) -> CallHarness:
    h = CallHarness(**kw).start()
    h.answer_and_park()
    h.play_started()
    return h


def press(h: CallHarness, digit: str) -> None:
    h.feed(Dtmf(digit, h.stamp()))


def finish(h: CallHarness) -> None:
    """The goodbye plays to its end; the robot hangs up; the switch confirms."""
    h.play_started()
    h.advance(1.0)
    h.play_stopped()
    assert h.call.sm.state is CallState.HANGING_UP and h.whats()[-1] == "kill"
    h.hangup()
    h.advance(h.settings.robot.drain_s)
    assert h.call.done


def test_an_opt_out_key_during_the_greeting_breaks_it_plays_the_goodbye_and_hangs_up():
    h = playing_call()
    h.advance(1.0)
    press(h, "9")
    assert h.rows("opt_out")[0]["via"] == "dtmf" and h.rows("opt_out")[0]["t"] == pytest.approx(h.now)
    assert h.whats()[-1] == "break" and h.sent[-1][0] == pytest.approx(h.now)  # no call time passes
    h.play_stopped("break")
    assert h.call.step is not None and h.call.step.name == "removed" and h.whats()[-1] == "broadcast"
    assert h.call.record.disposition == "do_not_call"
    press(h, "9")  # again, during the goodbye: nothing more happens
    assert h.whats()[-1] == "broadcast" and len(h.rows("opt_out")) == 1
    finish(h)
    report = build_report(h.call.record)
    assert outcome_of(summarize(report, "9")) == "opted_out"
    assert any(opt_out_row(r) for r in report["events"])  # the row the campaign writes DNC from


def test_an_opt_out_key_while_listening_goes_to_the_goodbye_at_once():
    h = playing_call()
    h.advance(2.0)
    h.play_stopped()
    assert h.call.sm.state is CallState.LISTENING
    h.advance(1.0)
    press(h, "9")
    assert h.call.step.name == "removed" and h.whats()[-1] == "broadcast" and "break" not in h.whats()
    finish(h)
    assert h.call.record.replies == []  # the reply window closed without a judgement


def test_other_keys_and_no_opt_out_keys_change_nothing():
    h = playing_call()
    press(h, "5")
    assert h.call.step.name == "greeting" and not h.rows("opt_out") and "break" not in h.whats()
    quiet = playing_call(settings=Settings().replace(**{"campaign.opt_out_dtmf": ""}))
    press(quiet, "9")
    assert not quiet.rows("opt_out") and "break" not in quiet.whats()


def test_an_opt_out_key_settles_amd_as_a_person_so_a_late_machine_verdict_does_not_act():
    h = playing_call()
    press(h, "9")
    h.play_stopped("break")
    h.audio(Amd(t=3.0, result="machine", cause="LONGGREETING", decided_at_s=3.0))
    assert h.call.step.name == "removed" and h.call.sm.state is CallState.PLAYING
    assert h.rows("amd_result")[-1]["note"] == "AMD already settled"


def test_an_opt_out_key_before_the_first_prompt_plays_only_the_goodbye():
    h = CallHarness().start()
    h.feed(Answered(h.stamp()))
    h.feed(StreamConnected(h.stamp()))
    press(h, "9")
    h.advance(h.settings.robot.park_wait_s)  # no CHANNEL_PARK: the script starts, with the goodbye
    assert [r["step"] for r in h.rows("broadcast")] == ["removed"]


def reply_to_the_greeting(h: CallHarness, text: str) -> None:
    """The greeting plays to its end; the callee says ``text`` from 2.5 s to 4 s."""
    h.advance(2.0)
    h.play_stopped()
    h.audio(SpeechStarted(t=2.5))
    h.advance(1.5)
    h.audio(SpeechStopped(t=4.0, duration_ms=1500))
    h.audio(Final(t=4.2, text=text, start_s=2.5, end_s=4.0, avg_logprob=-0.2, no_speech_prob=0.01))


def test_the_spoken_stop_intent_writes_its_row_and_follows_the_scenario():
    h = playing_call()
    reply_to_the_greeting(h, "please stop calling me")
    assert h.rows("opt_out")[0]["via"] == "intent" and h.call.step.name == "removed"
    finish(h)
    assert outcome_of(summarize(build_report(h.call.record))) == "opted_out"


def test_the_stop_intent_at_a_step_that_does_not_branch_on_it_goes_to_the_opt_out_step(tmp_path):
    text = bundled_scenario("survey_en").read_text()
    path = tmp_path / "s.toml"
    path.write_text(text.replace('stop = "removed", default = "repeat"', 'default = "repeat"'))
    scenario = load_scenario(path, prompts_dir=Settings().prompts.path())
    assert "stop" not in scenario.step("greeting").branches and scenario.opt_out == "removed"
    h = playing_call(scenario=scenario)
    reply_to_the_greeting(h, "remove me from your list")
    assert h.rows("opt_out")[0]["via"] == "intent" and h.call.step.name == "removed"


def test_a_scenario_opt_out_step_must_be_final(tmp_path):
    text = bundled_scenario("survey_en").read_text().replace('opt_out = "removed"', 'opt_out = "repeat"')
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match="scenario.opt_out: step 'repeat' must be a final step"):
        load_scenario(path, prompts_dir=Settings().prompts.path())
    path.write_text(text.replace('opt_out = "repeat"', 'opt_out = "nowhere"'))
    with pytest.raises(ScenarioError, match="scenario.opt_out: no step named 'nowhere'"):
        load_scenario(path, prompts_dir=Settings().prompts.path())
