"""The readable timeline (`callbot replay`, `callbot call` without --json) reads in call order."""

from __future__ import annotations

from callbot.robot.report import in_call_order, render_text


def _report(events: list[dict]) -> dict:
    return {"call_uuid": "c0ffee00-0000-4000-8000-000000000000", "fixture": "long_reply.wav", "events": events,
            "disposition": "callback", "amd": "notsure", "amd_cause": "TOOLONG", "amd_decided_at_s": 5.02,
            "amd_action": "human", "hangup": {"by": "robot", "cause": "NORMAL_CLEARING"}, "barge_ins": [],
            "intents": [], "flags": []}


# long_reply's rows in arrival order: the final is dated by the end of its speech (5.72) and arrives with the
# decode, after the robot acted on the AMD verdict at 6.02
ARRIVED = [
    {"t": 5.02, "source": "audio", "type": "amd", "result": "notsure", "cause": "TOOLONG", "decided_at_s": 5.0},
    {"t": 6.02, "source": "robot", "type": "amd_result", "result": "notsure", "cause": "TOOLONG", "action": "human"},
    {"t": 5.72, "source": "audio", "type": "speech_stopped", "duration_ms": 4220},
    {"t": 5.72, "source": "audio", "type": "final", "text": "Call me back next week."},
    {"t": 6.04, "source": "robot", "type": "reply", "step": "greeting", "outcome": "later"},
]


def test_the_readable_timeline_never_goes_back_in_time() -> None:
    lines = render_text(_report(ARRIVED)).splitlines()[1:6]
    times = [float(line.split()[0]) for line in lines]
    assert times == sorted(times) == [5.02, 5.72, 5.72, 6.02, 6.04], lines
    assert "caller stops" in lines[1] and "caller said" in lines[2]  # equal times keep their arrival order
    assert "robot acts on amd" in lines[3]


def test_rows_without_a_time_stay_after_the_row_before_them() -> None:
    rows = [{"t": None, "type": "originate"}, {"t": 0.0, "type": "CHANNEL_ANSWER"}, {"t": 2.0, "type": "a"},
            {"t": None, "type": "b"}, {"t": 1.0, "type": "c"}]
    assert [r["type"] for r in in_call_order(rows)] == ["originate", "CHANNEL_ANSWER", "c", "a", "b"]
