"""``callbot stt-bench``: a short real run prints the JSON report; bad flags are clear errors."""

from __future__ import annotations

import json

import pytest

from click.testing import CliRunner
from stt_model import shared_engine

from callbot.app.cli import main


@pytest.mark.slow  # the real Whisper model under concurrent streams
def test_stt_bench_prints_one_json_report() -> None:
    shared_engine()  # skips, saying why, when the model is unavailable
    result = CliRunner().invoke(main, ["stt-bench", "--json", "--streams", "2", "--duration", "3",
                                       "--fixtures", "short_yes"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (level,) = report["levels"]
    assert level["streams"] == 2 and level["audio_s"] == 12.0  # 2 streams x one 6 s fixture
    assert level["segments"] == 2 and level["finals"] == 2 and level["finals_lost"] == 0
    # from the close decision: negative for a final sent before its segment closed (stt.early_final_ms)
    assert set(level["final_latency_ms"]) == {"p50", "p95", "max"}
    assert 0 <= level["finals_early"] <= level["finals"]
    assert level["final_latency_from_speech_end_ms"]["p50"] > 0  # a final never comes before the speech ends
    assert level["rtf"] > 0 and level["cpu_s_per_audio_s"] > 0


def test_stt_bench_rejects_bad_levels_and_unknown_fixtures() -> None:
    result = CliRunner().invoke(main, ["stt-bench", "--streams", "four"])
    assert result.exit_code == 2 and "expected numbers like 1,4,8,16" in result.output
    result = CliRunner().invoke(main, ["stt-bench", "--streams", "1", "--fixtures", "nope"])
    assert result.exit_code == 1 and "no fixture" in result.output and "long_reply" in result.output
