"""The simswitch commands: `callbot simswitch` options and `callbot simswitch-load` output."""

from __future__ import annotations

import json

from click.testing import CliRunner

from callbot.app.cli import main


def test_simswitch_help_and_bad_speed():
    runner = CliRunner()
    result = runner.invoke(main, ["simswitch", "--help"])
    assert result.exit_code == 0 and "fixture/<wav>" in result.output
    result = runner.invoke(main, ["simswitch", "--speed", "0"])
    assert result.exit_code != 0 and "--speed must be > 0" in result.output


def test_simswitch_load_prints_json_figures():
    result = CliRunner().invoke(main, ["simswitch-load", "--calls", "2", "--speed", "20", "--seconds", "2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert out["calls"] == out["live_calls"] == 2
    assert out["audio_bytes_received"] > 0 and out["cpu_s"]["switch"] > 0
    assert set(out) >= {"virtual_s", "wall_s", "audio_bytes_expected", "max_tick_lag_ms", "switch_cpu_per_wall_s"}


def test_simswitch_refuses_an_empty_password():
    for password in ("", "   "):  # refused by the settings loader, or by simswitch itself
        result = CliRunner().invoke(main, ["simswitch", "--password", password])
        assert result.exit_code != 0 and "simswitch.password" in result.output, result.output
