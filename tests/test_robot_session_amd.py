"""The call session's AMD step against a scripted fake switch: deadline, notsure per scenario, late verdicts."""

from __future__ import annotations

from pathlib import Path

import gevent

from callbot.events import Amd
from callbot.robot.call.session import CallSession
from callbot.robot.scenario.loader import bundled_scenario, load_scenario
from tests.test_robot_session_flow import SPEED, FakeSwitch, settings


def _scenario(tmp: Path, **voicemail: str):
    """survey_en with its [voicemail] keys replaced."""
    text = Path(bundled_scenario()).read_text(encoding="utf-8")
    for key, value in voicemail.items():
        old = next(ln for ln in text.splitlines() if ln.startswith(f"{key} ="))
        text = text.replace(old, f'{key} = "{value}"')
    path = tmp / "sc.toml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


def _run(sw: FakeSwitch, sc, **overrides):
    session = CallSession(sw, sc, settings().replace(**overrides), "fixture/x.wav", audio_url="ws://127.0.0.1:9/x")
    return gevent.spawn(session.run).get(timeout=30), session


def test_notsure_counts_as_machine_when_the_scenario_says_so(tmp_path):
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = lambda: sw.say(Amd(t=2.5, result="notsure", cause="INITIALSILENCE", decided_at_s=2.5))
    record, session = _run(sw, _scenario(tmp_path, on_notsure="machine", on_machine="hangup"))
    assert record.amd == "notsure" and record.disposition == "voicemail_left" and record.hangup_by == "robot"
    acted = [r for r in session.timeline.rows() if r["type"] == "amd_result"]
    assert [(r["result"], r["action"]) for r in acted] == [("notsure", "hangup")]
    assert len(sw.commands("uuid_break")) == 1  # the greeting was stopped


def test_no_verdict_by_the_deadline_is_notsure_and_the_call_goes_on(tmp_path):
    sw = FakeSwitch(prompt_s=3.0)
    record, session = _run(sw, load_scenario(bundled_scenario()), **{"robot.amd_wait_s": 1.0})
    assert "amd_timeout" in record.flags and record.amd is None
    (acted,) = [r for r in session.timeline.rows() if r["type"] == "amd_result"]
    assert (acted["result"], acted["cause"], acted["action"]) == ("notsure", "ROBOT_DEADLINE", "human")
    assert acted["t"] >= 1.0 - 2 / SPEED  # not before the deadline (call time)
    assert record.disposition == "no_reply"  # nobody spoke: the human path ran to its end


def test_a_machine_verdict_after_the_deadline_is_recorded_not_acted_on(tmp_path):
    sw = FakeSwitch(prompt_s=3.0)

    def late() -> None:
        gevent.sleep(2.0 / SPEED)
        sw.say(Amd(t=2.0, result="machine", cause="LONGGREETING", decided_at_s=2.0))

    sw.hooks["greeting.wav"] = late
    record, session = _run(sw, load_scenario(bundled_scenario()), **{"robot.amd_wait_s": 1.0})
    assert record.amd == "machine" and record.disposition == "no_reply" and sw.commands("uuid_break") == []
    actions = [r["action"] for r in session.timeline.rows() if r["type"] == "amd_result"]
    assert actions == ["human", "none"]


def test_the_verdict_its_cause_and_time_are_stored_with_the_call(tmp_path):
    from callbot.robot.report import build_report
    from callbot.robot.store import Store

    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = lambda: sw.say(Amd(t=1.7, result="human", cause="HUMAN", decided_at_s=1.7))
    record, _ = _run(sw, load_scenario(bundled_scenario()))
    report = build_report(record, fixture="x.wav", stream_start_s=0.02)
    assert (report["amd"], report["amd_cause"], report["amd_decided_at_s"], report["amd_action"]) == \
        ("human", "HUMAN", 1.72, "human")
    store = Store(f"sqlite:///{tmp_path / 'calls.db'}")
    store.record_call(report, "fixture/x.wav", "survey_en")
    stored = store.attempt(record.call_uuid)
    assert (stored["amd"], stored["amd_cause"], stored["amd_decided_at_s"]) == ("human", "HUMAN", 1.72)
    assert [e["type"] for e in stored["events"] if e["type"] in ("amd", "amd_result")] == ["amd", "amd_result"]
