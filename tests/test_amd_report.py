"""amd-report's replay mode: reading `callbot replay --json` documents, and the end-to-end run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from callbot.app.amd.replay import FixtureError, outcome_from_replay, robot_replay
from callbot.app.amd.report import amd_report, load_sidecar, score_fixture
from callbot.config import Settings
from callbot.robot.scenario.loader import bundled_scenario

FIXTURES = Path(__file__).parent / "fixtures" / "amd"
SCENARIO = bundled_scenario("survey_en")


def replay_doc(prompt_starts: list[float]) -> dict:
    """A `callbot replay --json` document shaped as DESIGN section 5 says, for a voicemail call."""
    return {
        "fixture": "vm.wav", "call_uuid": "c0ffee00-0000-4000-8000-000000000000", "disposition": "voicemail_left",
        "amd": "machine",
        "prompts": [{"file": f"p{i}.wav", "started_s": t, "stopped_s": t + 1, "status": "done", "played_ms": 1000}
                    for i, t in enumerate(prompt_starts)],
        "barge_ins": [{"speech_onset_s": 0.4, "detected_s": 1.9, "break_at_switch_s": 1.93}], "transcripts": [],
        "events": [
            {"t": 0.0, "source": "switch", "type": "CHANNEL_ANSWER"},
            {"t": 2.02, "source": "audio", "type": "amd", "result": "machine", "cause": "MAXWORDS",
             "decided_at_s": 2.0},
            {"t": 2.64, "source": "robot", "type": "amd_result", "result": "machine", "action": "leave_message"},
            {"t": 8.98, "source": "audio", "type": "beep", "freq_hz": 850.0, "duration_ms": 800},
            {"t": 8.99, "source": "robot", "type": "beep"},
        ],
    }


def test_outcome_from_replay_finds_amd_beep_and_the_voicemail_prompt() -> None:
    outcome = outcome_from_replay(replay_doc([0.1, 9.1]))
    assert (outcome.amd.result, outcome.amd.cause, outcome.amd.decided_at_s) == ("machine", "MAXWORDS", 2.0)
    assert outcome.acted_after_s == 0.62  # both rows in call time: the verdict's where it was decided
    assert [(b.t, b.freq_hz) for b in outcome.beeps] == [(8.98, 850.0)]  # the robot's copy is not counted
    assert outcome.prompt_started_s == 9.1  # the greeting prompt at 0.1 s was before the decision
    assert outcome.barge_in_s == 1.9
    row = score_fixture("vm_en_gb_beep850", load_sidecar(FIXTURES / "vm_en_gb_beep850.wav"), outcome, "human")
    assert row["correct"] and row["beep_found"] and row["prompt_after_beep_ms"] == 130


def test_prompt_played_before_the_beep_shows_as_negative() -> None:
    row = score_fixture("vm_en_gb_beep850", load_sidecar(FIXTURES / "vm_en_gb_beep850.wav"),
                        outcome_from_replay(replay_doc([3.0])), "human")
    assert row["prompt_after_beep_ms"] == -5970


def test_replay_document_without_a_timeline_is_a_clear_error() -> None:
    with pytest.raises(FixtureError, match="callbot replay output lacks 'events'"):
        outcome_from_replay({"amd": "machine", "prompts": []})


@pytest.mark.slow  # two calls replayed through simswitch, the audio server with Whisper, and the robot
def test_voicemail_prompt_starts_after_the_beep_end_to_end(tmp_path: Path) -> None:
    from callbot.app.replay import audio_server_thread, replay_settings

    for name in ("vm_en_us_beep1000", "human_en_us_hello"):
        for ext in (".wav", ".json"):
            shutil.copy(FIXTURES / f"{name}{ext}", tmp_path / f"{name}{ext}")
    with audio_server_thread(replay_settings(Settings())) as port:
        replay = robot_replay(port, SCENARIO, 3.0)  # faster inflates the robot's reaction in call time
        report = amd_report(tmp_path, Settings(), replay=replay, mode="replay")
    assert report["accuracy"] == 1.0
    (vm,) = [r for r in report["fixtures"] if r["beep_expected"]]
    assert 0 <= vm["prompt_after_beep_ms"] <= 300
    # "Hello?" has its final: the robot acts on the human verdict as it is decided (it waited 1.0 s for a
    # transcript of the line gate's last voice before December 2026); a machine's may wait hint_wait_ms
    (human,) = [r for r in report["fixtures"] if not r["beep_expected"]]
    assert 0.0 <= human["acted_after_s"] < 0.5, human
    assert 0.0 <= vm["acted_after_s"] <= Settings().amd.hint_wait_ms / 1000 + 0.5, vm
