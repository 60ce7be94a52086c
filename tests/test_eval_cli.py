"""`callbot eval`: both systems side by side on a small labelled set, as a table, JSON and a PNG."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbot.app.cli import main
from callbot.app.eval.fixtures import load, version_of

EVAL = Path(__file__).parent / "fixtures" / "eval"
PICK = ["speech_espeak_00", "speech_short_00", "music_synth_02", "tone_dtmf", "echo_00_greeting_6db_20ms",
        "doubletalk_04_no_reply_6db_300ms"]


@pytest.fixture()
def small_set(tmp_path: Path) -> Path:
    for name in PICK:
        for suffix in (".flac", ".json"):
            shutil.copy(EVAL / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path


def test_eval_json_compares_webrtcvad_alone_with_the_cascade(small_set: Path, tmp_path: Path) -> None:
    png = tmp_path / "eval.png"
    result = CliRunner().invoke(main, ["eval", str(small_set), "--json", "--versions", "clean", "--png", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    plain, cascade = report["systems"]["webrtcvad"], report["systems"]["cascade"]
    assert plain["false_by_category"]["music"] == plain["false_by_category"]["tone"] == 1
    assert plain["false_by_category"]["echo"] == 1
    assert cascade["false_by_category"] == {"doubletalk": 0, "echo": 0, "music": 0, "speech": 0, "tone": 0}
    assert cascade["recall"] == 1.0 and cascade["recall_expected"] == 2 and cascade["precision"] == 1.0
    assert cascade["onset_error_ms"]["p95"] < 100
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_table_and_errors(small_set: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(small_set), "--versions", "quiet", "--systems", "cascade"])
    assert result.exit_code == 0, result.output
    assert "false on music (1)" in result.output and "onset error p95 (ms)" in result.output
    bad = CliRunner().invoke(main, ["eval", str(small_set), "--versions", "loud"])
    assert bad.exit_code == 2 and "'loud': use clean, hiss, quiet" in bad.output


def test_versions_are_derived_from_the_clean_audio_with_a_seed() -> None:
    fixtures = load(EVAL.parent / "eval", ("clean", "hiss"))[:2]
    clean, hiss = fixtures[0].samples, fixtures[1].samples
    assert fixtures[1].version == "hiss" and (hiss != clean).any()
    assert (version_of(clean, "hiss", 5) == version_of(clean, "hiss", 5)).all()
    assert abs(version_of(clean, "quiet", 0).astype(float).std() / clean.astype(float).std() - 10 ** (-15 / 20)) < 0.01


def test_eval_cost_runs_streams_side_by_side_with_one_batcher(small_set: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(small_set), "--cost", "doubletalk_04_no_reply_6db_300ms",
                                       "--streams", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = {row["system"]: row for row in report["systems"]}
    assert list(rows) == ["webrtcvad", "cascade", "cascade+echo"]
    assert all(row["us_per_frame"] > 0 and row["streams"] == 2 for row in rows.values())
    assert "silero_calls" not in rows["webrtcvad"]
    cascade = rows["cascade"]
    assert cascade["silero_windows"] == 2 * cascade["silero_calls"]  # both streams in every call
    missing = CliRunner().invoke(main, ["eval", str(small_set), "--cost", "no_such_fixture"])
    assert missing.exit_code == 2 and "no such fixture" in missing.output
