"""Speed changes nothing in a replay: the same decisions, at the same call times, at 4x and at 40x.

With the audio server in the replay's process every party tells simswitch's clock when it is busy
(app.pacing), the media ticks and the robot's deadlines are barriers, and a decode holds the clock:
so the call's decisions and its length in call time cannot depend on how fast the machine is.
"""

from __future__ import annotations

from typing import Any

import pytest

from callbot.app.replay import replay
from callbot.config import Settings

TICK_S = 0.020


def _decisions(report: dict[str, Any]) -> dict[str, Any]:
    return {"disposition": report["disposition"], "amd": report["amd"], "flags": report["flags"],
            "replies": [(i["step"], i["outcome"]) for i in report["intents"]],
            "prompts": [(p["file"], p["status"]) for p in report["prompts"]]}


def _length_s(report: dict[str, Any]) -> float:
    t = {e["type"]: e["t"] for e in report["events"] if e["source"] == "switch"
         and e["type"] in ("CHANNEL_ANSWER", "CHANNEL_HANGUP")}
    return t["CHANNEL_HANGUP"] - t["CHANNEL_ANSWER"]


@pytest.mark.parametrize("fixture", ["long_reply", "short_yes"])
def test_the_same_call_at_4x_and_40x(fixture, audio_port):
    slow, fast = (replay(fixture, Settings(), speed=speed, audio_port=audio_port) for speed in (4.0, 40.0))
    assert _decisions(fast) == _decisions(slow)
    assert abs(_length_s(fast) - _length_s(slow)) <= 0.1, (_length_s(slow), _length_s(fast))
    breaks = [[b["break_at_switch_s"] for b in r["barge_ins"]] for r in (slow, fast)]
    assert len(breaks[0]) == len(breaks[1])
    assert all(abs(a - b) <= TICK_S + 1e-6 for a, b in zip(*breaks)), breaks
