"""End-to-end: replay every bundled fixture through simswitch, the audio server and the robot (real sockets).

Checks, per fixture sidecar: a barge-in exactly when expected, its latency measured at the switch
(``break_at_switch_s`` − (true onset + 1.5 s)) under 60 ms, and the disposition the scenario's
branches give for what was heard. Without STT in the audio server the robot hears no words, so
every reply is ``unknown`` (speech) or ``silence``; with STT, the sidecar's transcript decides.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from callbot.config import Settings
from callbot.app.bench.score import barge_in_onset
from callbot.app.replay import FIXTURES_DIR, load_sidecar, replay
from callbot.robot.scenario.loader import Scenario, bundled_scenario, load_scenario

SPEED = 10.0
THRESHOLD_S = 1.5
BRIDGE_S = 0.3
MAX_LATENCY_S = 0.060
FIXTURES = sorted(p.stem for p in FIXTURES_DIR.glob("*.wav") if p.with_suffix(".json").is_file())
_reports: dict[str, dict] = {}

pytestmark = pytest.mark.slow  # every bundled fixture replayed through simswitch, the audio server and the robot


def _report(name: str, audio_port: int) -> dict:
    if name not in _reports:
        _reports[name] = replay(name, Settings(), speed=SPEED, audio_port=audio_port)
    return _reports[name]


def expected_disposition(sc: Scenario, *outcomes: str) -> str:
    """Follow the scenario: the replies have ``outcomes`` in turn, every later one is silence."""
    step, replies = sc.step(sc.start), list(outcomes)
    while step.disposition is None:
        step = sc.step(step.branch(replies.pop(0) if replies else "silence") if step.branches else step.next)
    return step.disposition


def test_there_are_fixtures_to_replay():
    assert len(FIXTURES) >= 8, f"expected the bundled fixtures in {FIXTURES_DIR}"


@pytest.mark.parametrize("name", FIXTURES)
def test_replay_matches_the_sidecar(name, audio_port):
    side = load_sidecar(FIXTURES_DIR / f"{name}.wav")
    report = _report(name, audio_port)
    acted = [b for b in report["barge_ins"] if b["break_at_switch_s"] is not None]
    if side["expect"]["barge_in"]:
        assert len(acted) == 1, json.dumps(report["barge_ins"])
        onset = barge_in_onset(side["speech"], THRESHOLD_S, BRIDGE_S)
        latency = acted[0]["break_at_switch_s"] - (onset + THRESHOLD_S)
        if not -MAX_LATENCY_S < latency < MAX_LATENCY_S:
            # At speed 10 every wall ms of thread scheduling is 10 ms of call time; on a loaded
            # shared machine one late wake-up can cost the budget. Say so, and measure once more.
            warnings.warn(f"{name}: break {latency * 1000:.1f} ms after onset + 1.5 s "
                          f"(load {os.getloadavg()[0]:.1f}); replaying once more")
            report = _reports[name] = replay(name, Settings(), speed=SPEED, audio_port=audio_port)
            acted = [b for b in report["barge_ins"] if b["break_at_switch_s"] is not None]
            assert len(acted) == 1, json.dumps(report["barge_ins"])
            latency = acted[0]["break_at_switch_s"] - (onset + THRESHOLD_S)
        assert -MAX_LATENCY_S < latency < MAX_LATENCY_S, (name, latency, acted[0])
        first = report["prompts"][0]
        # PLAYBACK_STOP comes on a media tick; a tick run late can be dated just before the break's arrival
        assert first["status"] == "break" and first["stopped_s"] >= acted[0]["break_at_switch_s"] - 0.021
    else:
        assert acted == [], (name, report["barge_ins"])
        assert report["prompts"][0]["status"] == "done"
    sc = load_scenario(bundled_scenario())
    heard_words = any(r["source"] == "audio" and r["type"] == "final" for r in report["events"])
    if heard_words and "replies" in side["expect"]:  # a call with several replies names each one's outcome
        replies = side["expect"]["replies"]
    elif heard_words:
        replies = [sc.intents.match(side["transcript"]) or "unknown"]
    else:
        replies = ["unknown" if side["speech"] else "silence"]
    assert [r["outcome"] for r in report["intents"]][:len(replies)] == replies, report["intents"]
    assert report["disposition"] == expected_disposition(sc, *replies)
    # null until the audio server sends `amd` events; `notsure` is allowed: the scenario treats it as human
    # (voicemail.on_notsure), and the detector's own accuracy is scored by tests/test_amd_report.py
    assert report["amd"] in (None, side["expect"]["amd"], "notsure"), report["amd"]
    assert report["hangup"]["by"] == "robot"
    assert report["events"] and all(e["source"] in ("switch", "audio", "robot") for e in report["events"])


@pytest.mark.parametrize("name", [n for n in FIXTURES if n.startswith("long_reply")])
def test_transcripts_contain_the_expected_words(name, audio_port):
    report = _report(name, audio_port)
    assert report["transcripts"], "the audio server sent no final transcript: is speech recognition broken?"
    text = " ".join(t["text"] for t in report["transcripts"]).lower()
    missing = [w for w in load_sidecar(FIXTURES_DIR / f"{name}.wav")["expect"]["contains"] if w not in text]
    if missing and name.endswith("_8k"):
        pytest.xfail(f"STT misses {missing} on narrowband (8 kHz upsampled to 16 kHz) audio: {text!r}")
    assert not missing, (missing, text)


def test_readable_timeline_of_the_bundled_replay(audio_port):
    from callbot.robot.report import render_text

    text = render_text(_report("long_reply", audio_port))
    assert "BARGE-IN detected" in text and "broke off greeting.wav" in text and "disposition:" in text


def test_replay_cli_json_has_the_design_keys(tmp_path: Path):
    from click.testing import CliRunner

    from callbot.app.cli import main

    result = CliRunner().invoke(main, ["replay", "backchannel", "--speed", "20", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"fixture", "call_uuid", "disposition", "amd", "prompts", "barge_ins", "transcripts", "events"} <= set(doc)
    assert doc["fixture"] == "backchannel.wav" and doc["barge_ins"] == []


def test_french_scenario_replays_with_french_prompts_at_8k(audio_port):
    report = replay("short_oui", Settings().replace(**{"robot.prompt_rate": 8000}),
                    scenario=str(bundled_scenario("survey_fr")), speed=20, audio_port=audio_port)
    assert report["barge_ins"] == [] and report["prompts"][0]["file"] == "greeting.wav"
    broadcasts = [e for e in report["events"] if e["type"] == "broadcast"]
    assert broadcasts and all("/prompts_audio/fr/8000/" in e["path"] for e in broadcasts)
    started = [e for e in report["events"] if e["type"] == "PLAYBACK_START"]
    assert started and report["prompts"][0]["status"] == "done"
    assert report["disposition"] in {s.disposition for s in load_scenario(bundled_scenario("survey_fr")).steps.values()}
