"""Every AMD fixture through the real audio pipeline (WAV → StreamPipeline → AMD + beep), and `callbot amd-report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbot.app.amd.replay import FixtureError, load_engine, replay_pipeline
from callbot.app.amd.report import amd_report, load_sidecar
from callbot.audio_server.stt.engine import SttModelError
from callbot.app.cli import main
from callbot.config import Settings
from callbot.resources import demo_calls_dir

FIXTURES = Path(__file__).parent / "fixtures" / "amd"
WAVS = sorted(FIXTURES.glob("*.wav"))
SETTINGS = Settings()


def test_fixture_set_is_complete() -> None:
    sidecars = {w.stem: load_sidecar(w) for w in WAVS}
    kinds = {name.split("_")[0] for name in sidecars}
    assert kinds == {"vm", "human"}
    assert sum("beep" in s for s in sidecars.values()) >= 4
    assert any(s["expect"]["amd"] == "machine" and "beep" not in s for s in sidecars.values())
    assert {s["language"] for s in sidecars.values()} == {"en", "fr"}
    assert sum(w.stat().st_size for w in WAVS) < 4_000_000
    for name, s in sidecars.items():  # the DESIGN section 5 sidecar contract
        assert isinstance(s["transcript"], str) and s["transcript"], name
        assert all(0 <= a < b for a, b in s["speech"]) and s["speech"] == sorted(s["speech"]), name
        assert isinstance(s["expect"]["barge_in"], bool) and isinstance(s["expect"]["contains"], list), name
        if "beep" in s:
            assert s["speech"][-1][1] < s["beep"][0] < s["beep"][1], name



@pytest.mark.parametrize("wav", WAVS, ids=[w.stem for w in WAVS])
def test_fixture_classified_right_and_in_time(wav: Path) -> None:
    sidecar = load_sidecar(wav)
    outcome = replay_pipeline(wav, SETTINGS)
    assert outcome.amd is not None
    expected = sidecar["expect"]["amd"]
    if expected == "human":
        assert outcome.amd.result in ("human", "notsure")  # the robot treats notsure as human by default
        assert outcome.amd.decided_at_s <= 2.5
    else:
        assert outcome.amd.result == "machine"
        assert outcome.amd.decided_at_s < sidecar["greeting_s"][1]  # decided during the greeting
    assert (outcome.barge_in_s is not None) == sidecar["expect"]["barge_in"]  # the stages run side by side
    truth = sidecar.get("beep")
    if truth is None:
        assert outcome.beeps == []
    else:
        assert len(outcome.beeps) == 1, outcome.beeps
        (beep,) = outcome.beeps
        assert abs(beep.t - truth[1]) <= 0.06  # dated to the tone's end, within 3 frames
        assert abs(beep.freq_hz - sidecar["beep_freq_hz"]) < 5
        assert abs(beep.duration_ms - 1000 * (truth[1] - truth[0])) <= 60


CALLS = sorted((demo_calls_dir()).glob("*.wav"))


@pytest.mark.parametrize("wav", CALLS, ids=[w.stem for w in CALLS])
def test_barge_in_fixtures_are_not_machines(wav: Path) -> None:
    """The barge-in fixtures (people talking over the robot's first prompt) have expect.amd too."""
    sidecar = load_sidecar(wav)
    outcome = replay_pipeline(wav, SETTINGS)
    assert outcome.amd is not None
    allowed = ("human", "notsure") if sidecar["expect"]["amd"] == "human" else ("machine",)
    assert outcome.amd.result in allowed
    assert (outcome.barge_in_s is not None) == sidecar["expect"]["barge_in"]  # AMD is beside barge-in, not before it
    assert outcome.beeps == []


def test_amd_report_json_over_the_cli() -> None:
    result = CliRunner().invoke(main, ["amd-report", str(FIXTURES), "--via", "pipeline", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mode"] == "pipeline"
    assert report["accuracy"] == 1.0
    assert [r["fixture"] for r in report["fixtures"]] == [w.stem for w in WAVS]
    assert sum(sum(cols.values()) for cols in report["confusion"].values()) == len(WAVS)
    assert report["confusion"]["machine"]["human"] == report["confusion"]["human"]["machine"] == 0
    assert report["human_decision_max_s"] <= 2.5  # INITIALSILENCE at 2.5 s, from the plain [vad] gate
    assert report["beep"]["found"] == report["beep"]["expected"] and report["beep"]["false"] == 0
    assert isinstance(report["prompt_after_beep_ms"], str)  # not measurable without the robot


def test_amd_report_table_and_bad_directories(tmp_path: Path) -> None:
    runner = CliRunner()
    table = runner.invoke(main, ["amd-report", str(FIXTURES), "--via", "pipeline"])
    assert table.exit_code == 0 and "confusion" in table.output and "accuracy: 1.000" in table.output
    stt_on_replay = runner.invoke(main, ["amd-report", str(FIXTURES), "--via", "replay", "--stt"])
    assert stt_on_replay.exit_code != 0 and "--stt applies to --via pipeline" in stt_on_replay.output
    empty = runner.invoke(main, ["amd-report", str(tmp_path)])
    assert empty.exit_code != 0 and "no NAME.wav with a NAME.json sidecar" in empty.output
    (tmp_path / "x.wav").write_bytes((FIXTURES / "human_fr_oui.wav").read_bytes())
    (tmp_path / "x.json").write_text('{"expect": {"amd": "robot"}}')
    with pytest.raises(FixtureError, match=r"x.json: expect.amd is 'robot'"):
        amd_report(tmp_path, SETTINGS)


def test_notsure_scored_as_machine_is_counted_wrong() -> None:
    report = amd_report(FIXTURES, SETTINGS, notsure_as="machine")
    wrong = [r["fixture"] for r in report["fixtures"] if not r["correct"]]
    assert wrong == [r["fixture"] for r in report["fixtures"] if r["result"] == "notsure"]


@pytest.mark.slow  # the real Whisper model
def test_whisper_heard_hello_decides_human_sooner() -> None:
    """Real tiny.en decodes; each result reaches the AMD 0.2 s of stream time after it was issued."""
    try:
        engine = load_engine(SETTINGS)
    except SttModelError as exc:
        pytest.skip(f"no Whisper model: {exc}")
    wav = FIXTURES / "human_en_us_two_phrases.wav"
    plain = replay_pipeline(wav, SETTINGS)
    hinted = replay_pipeline(wav, SETTINGS, engine, latency_s=0.2)
    heard = [t for t in hinted.transcripts if t["final"]]
    assert heard and "hello" in heard[0]["text"].lower()
    assert hinted.amd is not None and plain.amd is not None
    assert (hinted.amd.result, hinted.amd.cause) == (plain.amd.result, plain.amd.cause) == ("human", "HUMAN")
    # dated by its audio: 300 ms (amd.hint_silence_ms) after the end of "Hello?", not 800 ms, whenever the final came
    assert heard[0]["t"] > heard[0]["audio_t"]
    assert hinted.amd.decided_at_s == pytest.approx(heard[0]["audio_t"] + 0.3, abs=0.021)
    assert hinted.amd.decided_at_s < plain.amd.decided_at_s - 0.2
    slower = replay_pipeline(wav, SETTINGS, engine, latency_s=0.9)  # the same words, decoded later
    assert slower.amd == hinted.amd
