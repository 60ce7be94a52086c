"""Fault suite, parts killed with SIGKILL mid-call: the robot, the audio server, the switch (each then restarted).

Every part is a real process (`callbot simswitch`, `callbot audio-server`, `callbot call`) on
loopback; the test kills one with ``kill -9`` at a moment read from the robot's live timeline,
starts it again on the same port, and checks what the caller lived through and what was recorded.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from callbot.config import Settings
from callbot.resources import prompts_dir
from callbot.robot.report import describe
from callbot.robot.store import Store
from callbot.app.replay import load_sidecar
from faults_testkit import (
    FIXTURES, audio_server, channel_up, free_port, report_of, robot_call, robot_env, simswitch, wait_until,
)

pytestmark = pytest.mark.slow
ROBOT = Settings().robot
SCENARIO = """
[scenario]
name = "fault_reply"
language = "en"
start = "greeting"
audio_dir = "{audio_dir}"

[steps.greeting]
prompt = "greeting.wav"
barge_in = true
listen_s = {listen_s}
on = {{ default = "more" }}

[steps.more]
prompt = "repeat.wav"
barge_in = false
next = "bye"

[steps.bye]
prompt = "callback.wav"
barge_in = false
disposition = "callback"
"""
LISTEN_S = 4.0
TIMELINE_LINE = re.compile(r"^ +-?\d+\.\d{3}  ")  # the live timeline on stderr (log lines start with a clock)
LOSS_WINDOW_S = 0.25  # a robot killed with -9 may lose the rows it handled this long before (wall seconds)
# The caller's longest wait for the robot once the stream died mid-speech: the reply is judged final_wait_s
# after the caller's speech ends as far as the robot knows (at the loss, or when the restarted stream hears
# the end: up to ~0.8 s of segmenter hangover later), never max_reply_s; the next prompt starts ~0.2 s after.
# Without the fault the same call waits the same (--no-stt: no final ever shortens final_wait_s).
SILENCE_BOUND_S = ROBOT.final_wait_s + 1.5


def reply_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "fault_reply.toml"
    path.write_text(SCENARIO.format(audio_dir=prompts_dir() / "en", listen_s=LISTEN_S), encoding="utf-8")
    return path


def rows(report: dict[str, Any], source: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in report["events"] if e["source"] == source and e["type"] == type_]


def longest_silence(report: dict[str, Any], after_s: float, caller: list[list[float]]) -> float:
    """The longest time after ``after_s``, until the robot hangs up, in which neither a prompt played nor the
    caller (``caller``: the fixture's speech spans, call time) spoke: how long the caller waited for the robot."""
    spans = [(p["started_s"], p["stopped_s"]) for p in report["prompts"] if p["started_s"] is not None]
    spans += [(start, stop) for start, stop in caller]
    end = next(e["t"] for e in report["events"] if e["type"] == "state" and e["state"] == "hanging_up")
    gaps, heard_until = [], after_s
    for start, stop in sorted(spans):
        if start > heard_until:
            gaps.append(start - heard_until)
        heard_until = max(heard_until, stop if stop is not None else start)
    gaps.append(end - heard_until)
    return max(gaps)


def cdr_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_fault_robot_killed_mid_call_then_restarted_ends_the_orphan_and_loses_nothing(tmp_path):
    logs, speed = tmp_path / "logs", 5.0
    esl_port, audio_port, db = free_port(), free_port(), f"sqlite:///{tmp_path / 'calls.db'}"
    cdr = tmp_path / "cdr.jsonl"
    switch = simswitch(logs, esl_port, speed, cdr=cdr)
    audio = audio_server(logs, audio_port)
    try:
        env = robot_env(esl_port, audio_port, db, speed)
        robot = robot_call(logs, "fixture/long_reply", env, tmp_path)
        robot.wait_for("robot sends uuid_break", 60)
        robot.kill9()
        killed_at = time.monotonic()
        attempt = _only_attempt(db)
        uuid = attempt["call_uuid"]
        assert attempt["disposition"] is None  # still open: the run died before its result
        assert channel_up(esl_port, uuid), "the killed robot's call should still be up before the restart"
        # What the robot printed is what it had handled; the database holds the same rows in the same
        # order, missing at most those of the last LOSS_WINDOW_S (queued for the writer thread).
        printed = [(at, line) for at, line in robot.stamped if TIMELINE_LINE.match(line)]
        stored = [line for e in attempt["events"] if (line := describe(e)) is not None]
        assert stored == [line for _, line in printed[:len(stored)]]
        lost = [line for at, line in printed[len(stored):]]
        assert all(at > killed_at - LOSS_WINDOW_S for at, _ in printed[len(stored):]), lost
        assert any("answered" in line for line in stored) and any("robot plays" in line for line in stored)
        print(f"measured: {len(stored)} timeline lines stored, {len(lost)} printed in the last "
              f"{LOSS_WINDOW_S} s before the kill and not yet stored")

        restarted = robot_call(logs, "fixture/short_yes", env, tmp_path, name="robot2")
        assert restarted.exit_code(60) == 0, restarted.stderr[-3000:]
        assert f"an earlier run died during call {uuid}: hung it up" in restarted.stderr
        assert not channel_up(esl_port, uuid)
        closed = _attempt(db, uuid)
        assert closed["reconciled"] == "hung_up" and "reconciled_hung_up" in closed["flags"]
        assert closed["outcome"] == "interrupted" and closed["ended_at"] is not None
        wait_until(lambda: len(cdr_rows(cdr)) == 2, 10, "the switch's CDR of both calls")
        by_uuid = {r["uuid"]: r for r in cdr_rows(cdr) if "uuid" in r}
        assert set(by_uuid) == {uuid, report_of(restarted)["call_uuid"]}  # every call the switch saw is in the db
        for seen_uuid in by_uuid:
            assert _attempt(db, seen_uuid) is not None
    finally:
        switch.stop()
        audio.stop()


def test_fault_robot_killed_the_switch_hangs_up_at_max_call_s(tmp_path):
    logs, speed, max_call_s = tmp_path / "logs", 5.0, 6
    esl_port, db = free_port(), f"sqlite:///{tmp_path / 'calls.db'}"
    switch = simswitch(logs, esl_port, speed)
    try:
        env = robot_env(esl_port, free_port(), db, speed, ROBOT_MAX_CALL_S=max_call_s)
        robot = robot_call(logs, "fixture/silence", env, tmp_path)
        robot.wait_for("answered", 60)
        robot.kill9()
        uuid = _only_attempt(db)["call_uuid"]
        # the switch alone must end it at max_call_s of call time after the answer (+1 s of slack)
        wait_until(lambda: not channel_up(esl_port, uuid), (max_call_s + 1) / speed + 1.0,
                   f"the switch's own hang-up of {uuid} at max_call_s={max_call_s}")
    finally:
        switch.stop()


def test_fault_audio_server_killed_mid_speech_restarts_the_stream_and_the_caller_is_answered(tmp_path):
    logs = tmp_path / "logs"
    esl_port, audio_port, db = free_port(), free_port(), f"sqlite:///{tmp_path / 'calls.db'}"
    switch = simswitch(logs, esl_port)
    audio = audio_server(logs, audio_port)
    restarted = None
    try:
        robot = robot_call(logs, "fixture/long_reply", robot_env(esl_port, audio_port, db), tmp_path,
                           scenario=reply_scenario(tmp_path))
        robot.wait_for("state playing -> listening", 60)  # barged in: the caller is still talking (until 5.7 s)
        audio.kill9(group=True)  # the whole server, workers included
        restarted = audio_server(logs, audio_port, name="audio2")
        assert robot.exit_code(60) == 0, robot.stderr[-3000:]
        report = report_of(robot)
    finally:
        switch.stop()
        (restarted or audio).stop()
        audio.stop()
    assert "audio_stream_lost" in report["flags"] and "audio_unreachable" not in report["flags"]
    lost_at = rows(report, "robot", "audio_gap_start")[0]["t"]
    assert rows(report, "robot", "stream_restart"), "the robot never restarted the stream"
    assert [r for r in rows(report, "robot", "audio_gap_end") if r["t"] > lost_at], "the stream never came back"
    (reply,) = [r for r in rows(report, "robot", "reply") if r["step"] == "greeting"]
    assert reply["outcome"] == "unknown"  # the caller spoke (no transcript: --no-stt), not "silence"
    silence = longest_silence(report, lost_at, load_sidecar(FIXTURES / "long_reply.wav")["speech"])
    assert silence <= SILENCE_BOUND_S, (silence, report["prompts"])
    back = min(r["t"] for r in rows(report, "robot", "audio_gap_end") if r["t"] > lost_at)
    print(f"measured: caller's longest wait {silence:.2f} s (bound {SILENCE_BOUND_S:g} s); stream back "
          f"{back - lost_at:.2f} s after the loss, {len(rows(report, 'robot', 'stream_restart'))} restart(s)")
    assert report["disposition"] == "callback" and report["hangup"]["by"] == "robot"
    assert _attempt(db, report["call_uuid"])["flags"] == report["flags"]


def test_fault_audio_server_killed_for_good_with_on_audio_lost_hangup_ends_after_the_prompt(tmp_path):
    logs, speed = tmp_path / "logs", 5.0
    esl_port, audio_port, db = free_port(), free_port(), f"sqlite:///{tmp_path / 'calls.db'}"
    scenario = reply_scenario(tmp_path)
    scenario.write_text(scenario.read_text().replace('name = "fault_reply"', 'name = "fault_reply"\n'
                                                     'on_audio_lost = "hangup"'), encoding="utf-8")
    switch = simswitch(logs, esl_port, speed)
    audio = audio_server(logs, audio_port)
    try:
        robot = robot_call(logs, "fixture/silence", robot_env(esl_port, audio_port, db, speed), tmp_path,
                           scenario=scenario)
        robot.wait_for("robot plays", 60)
        audio.kill9(group=True)  # and it never comes back
        code = robot.exit_code(60)
    finally:
        switch.stop()
        audio.stop()
    report = report_of(robot)
    assert code == 3, robot.stderr[-3000:]  # the scenario did not run to its end
    assert {"audio_stream_lost", "audio_gone"} <= set(report["flags"]), report["flags"]
    assert len(rows(report, "robot", "stream_restart")) == ROBOT.stream_restarts
    gone = rows(report, "robot", "flag")
    gone_at = next(r["t"] for r in gone if r["flag"] == "audio_gone")
    ended = next(e for e in report["events"] if e["type"] == "state" and e["state"] == "hanging_up")
    assert ended["cause"] == "audio lost" and report["hangup"]["by"] == "robot"
    assert all(p["status"] == "done" for p in report["prompts"])  # never cut mid-sentence
    last_stop = max(p["stopped_s"] for p in report["prompts"])
    assert ended["t"] - max(gone_at, last_stop) < 0.5, (ended, gone_at, last_stop)
    print(f"measured: {ROBOT.stream_restarts} restarts, audio given up at {gone_at} s, the prompt then playing "
          f"ended at {last_stop} s, hang-up at {ended['t']} s")


def test_fault_switch_killed_mid_call_and_restarted_records_the_call_as_lost(tmp_path):
    logs, speed = tmp_path / "logs", 5.0
    esl_port, db = free_port(), f"sqlite:///{tmp_path / 'calls.db'}"
    switch = simswitch(logs, esl_port, speed)
    restarted = None
    try:
        env = robot_env(esl_port, free_port(), db, speed, ESL_RECONNECT_MIN_S=0.2, ESL_RECONNECT_MAX_S=1.0)
        robot = robot_call(logs, "fixture/silence", env, tmp_path)
        robot.wait_for("robot plays", 60)
        switch.kill9()
        killed_at = time.monotonic()
        restarted = simswitch(logs, esl_port, speed, name="simswitch2")
        code = robot.exit_code(60)
        took = time.monotonic() - killed_at
    finally:
        (restarted or switch).stop()
        switch.stop()
    report = report_of(robot)
    assert code == 3, robot.stderr[-3000:]  # did not complete: not 0, and not a crash
    assert {"esl_disconnected", "ended_during_esl_outage"} <= set(report["flags"]), report["flags"]
    assert "esl reconnected" in robot.stderr  # to the new switch, which knows nothing of the call
    assert report["hangup"]["by"] == "switch" and report["disposition"] == "incomplete"
    assert took < 10.0  # wall seconds from the kill to the robot's exit
    print(f"measured: the robot recorded the call and exited {took:.1f} s after the switch was killed")
    stored = _attempt(db, report["call_uuid"])
    assert stored["disposition"] == "incomplete" and "ended_during_esl_outage" in stored["flags"]


# ---- the database, read back ------------------------------------------------------------------

def _attempt(db: str, call_uuid: str) -> dict[str, Any]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from callbot.robot.store.models import CallAttempt

    store = Store(db)
    with Session(store.engine) as s:
        row = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call_uuid))
        extra = {} if row is None else {"reconciled": row.reconciled, "outcome": row.outcome, "ended_at": row.ended_at}
    found = store.attempt(call_uuid)
    return None if found is None else {**found, **extra}  # type: ignore[return-value]


def _only_attempt(db: str) -> dict[str, Any]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from callbot.robot.store.models import CallAttempt

    with Session(Store(db).engine) as s:
        (uuid,) = s.scalars(select(CallAttempt.call_uuid)).all()
    return _attempt(db, uuid)
