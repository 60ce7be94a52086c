"""Pause, confirm, resume on simswitch: a short reply pauses the prompt and resumes it where it stopped;
a long one is confirmed at the 1.5 s mark and breaks it. Both are read from the timeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.app.replay import replay
from callbot.config import Settings
from callbot.robot.scenario.loader import bundled_scenario

pytestmark = pytest.mark.slow  # two replays through simswitch, the audio server and the robot


@pytest.fixture(scope="module")
def pause_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = bundled_scenario("survey_en").read_text().replace(
        "[steps.greeting]\n", '[steps.greeting]\nbarge_in_mode = "pause"\n', 1)
    path = tmp_path_factory.mktemp("pause") / "pause_en.toml"
    path.write_text(text)
    return path


def _types(report: dict) -> list[str]:
    return [e["type"] for e in report["events"] if e["type"] in ("prompt_paused", "prompt_resumed", "uuid_break")]


PAUSE = Path(__file__).parent / "fixtures" / "pause"  # espeak-ng replies with an onset at 1.23 s (sidecars)


@pytest.mark.parametrize("fixture, ends_s", [("short_yes", 1.65), (str(PAUSE / "yes_okay_0.8s.wav"), 2.03)])
def test_a_short_reply_pauses_the_greeting_and_it_resumes_where_it_stopped(pause_scenario, audio_port, fixture,
                                                                           ends_s) -> None:
    report = replay(fixture, Settings(), scenario=str(pause_scenario), speed=5.0, audio_port=audio_port)
    assert _types(report)[:2] == ["prompt_paused", "prompt_resumed"] and "uuid_break" not in _types(report)
    greeting = report["prompts"][0]
    assert greeting["file"] == "greeting.wav" and greeting["status"] == "done"
    paused = next(e["t"] for e in report["events"] if e["type"] == "prompt_paused")
    resumed = next(e["t"] for e in report["events"] if e["type"] == "prompt_resumed")
    # the 0.4 s "yes" or the 0.8 s "yes okay" at 1.23 s, its end known 300 ms later
    assert 1.2 <= paused < resumed < ends_s + 0.95
    # Resumed at the same sample: the greeting's whole length still played, plus the pause.
    assert greeting["stopped_s"] - greeting["started_s"] >= 9.97 + (resumed - paused) - 0.1


@pytest.mark.parametrize("fixture", ["long_reply", str(PAUSE / "reply_2s.wav")])  # 4.2 s and 2.1 s of speech
def test_a_long_reply_pauses_then_breaks_at_the_mark(pause_scenario, audio_port, fixture) -> None:
    report = replay(fixture, Settings(), scenario=str(pause_scenario), speed=5.0, audio_port=audio_port)
    assert _types(report)[:2] == ["prompt_paused", "uuid_break"]
    assert report["prompts"][0]["status"] == "break"
    barge = report["barge_ins"][0]
    assert abs(barge["detected_s"] - (barge["speech_onset_s"] + 1.5)) < 0.1
