"""The one settings object: precedence, validation with clear messages, and a TOML round trip."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import typing

import pytest

from callbot.config import LIMITS, ConfigError, Settings, coerce, load_settings, to_toml
from callbot.resources import prompts_dir


def test_precedence_defaults_then_file_then_env_then_flags(tmp_path) -> None:
    path = tmp_path / "callbot.toml"
    path.write_text('[esl]\nport = 9021\npassword = "from-file"\n[bargein]\nmin_speech_ms = 1200\n')
    assert load_settings(env={}).esl.port == 8021
    from_file = load_settings(path, env={})
    assert (from_file.esl.port, from_file.esl.password, from_file.bargein.min_speech_ms) == (9021, "from-file", 1200)
    env = {"CALLBOT_ESL_PASSWORD": "from-env", "CALLBOT_AUDIO_SERVER_PORT": "9090"}
    from_env = load_settings(path, env=env)
    assert (from_env.esl.password, from_env.audio_server.port) == ("from-env", 9090)
    flags = load_settings(path, env=env, overrides={"esl.password": "from-flag", "esl.port": None})
    assert (flags.esl.password, flags.esl.port) == ("from-flag", 9021)  # None = flag not given


@pytest.mark.parametrize("text, message", [
    ("[esl]\nprot = 1\n", "unknown setting esl.prot"),
    ("[nosuch]\nx = 1\n", "unknown setting 'nosuch'; sections are esl, audio_server"),
    ("[esl]\nport = \"eighty\"\n", "esl.port: 'eighty' is not a valid int"),
    ("[esl\n", "not valid TOML"),
    # out of range (issue 11)
    ("[audio_server]\nport = 99999\n", "audio_server.port: 99999 must be between 1 and 65535, or 0 for a free port"),
    ("[audio_server]\nmax_streams = -5\n", "audio_server.max_streams: -5 must be >= 1"),
    ("[audio_server]\nidle_timeout_s = -1\n", "audio_server.idle_timeout_s: -1.0 must be > 0"),
    ("[esl]\nport = 0\n", "esl.port: 0 must be between 1 and 65535"),
    ("[vad]\nframe_ms = 25\n", "vad.frame_ms: 25 must be 10, 20 or 30"),
    ("[robot]\nstream_rate = 44100\n", "robot.stream_rate: 44100 must be one of 8000, 16000"),
    ("[stt]\nmax_segment_s = 29.0\n", "stt.max_segment_s: 29.0 must be > 0 and <= 28"),
    ("[stt]\nlanguage = \"French\"\n", "stt.language: 'French' must be a short language code"),
    ("[amd]\ninitial_silence_result = \"robot\"\n", "amd.initial_silence_result: 'robot' must be one of human"),
    ("[simswitch]\npassword = \"\"\n", "simswitch.password: '' must be a non-empty string"),
    ("[esl]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n", "esl.reconnect_min_s (5.0) must not exceed"),
    ("[bench]\ncalls = 500\n", "bench.calls (500) must not exceed bench.max_calls (200)"),
])
def test_bad_files_are_refused_naming_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_bad_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="CALLBOT_NOPE_X names no settings section"):
        load_settings(env={"CALLBOT_NOPE_X": "1"})
    with pytest.raises(ConfigError, match="environment variable CALLBOT_BARGEIN_MIN_SPEECH_MS: bargein.min_speech_ms"):
        load_settings(env={"CALLBOT_BARGEIN_MIN_SPEECH_MS": "1.5s"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"CALLBOT_CONFIG": "/nonexistent/callbot.toml"})


def test_toml_round_trip(tmp_path) -> None:
    settings = Settings().replace(**{"esl.password": 'pa"ss', "stt.language": "fr", "vad.hangover_ms": 250})
    path = tmp_path / "out.toml"
    path.write_text(to_toml(settings, redact=False))
    assert load_settings(path, env={}) == settings
    assert 'password = "***"' in to_toml(settings)


def test_config_command_prints_effective_settings(callbot_cli) -> None:
    out = subprocess.run([*callbot_cli, "config"], capture_output=True, text=True,
                         env={"CALLBOT_BARGEIN_MIN_SPEECH_MS": "1700", "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "[bargein]\nmin_speech_ms = 1700" in out.stdout


def _numeric(annotation: object) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args)


def test_every_numeric_setting_has_a_range_and_every_default_is_inside_it() -> None:
    settings = Settings()
    for section in dataclasses.fields(settings):
        values = getattr(settings, section.name)
        hints = typing.get_type_hints(type(values))
        limits = LIMITS.get(section.name, {})
        assert set(limits) <= set(hints), f"[{section.name}] limits name no field: {set(limits) - set(hints)}"
        for name, annotation in hints.items():
            if _numeric(annotation):
                assert name in limits, f"{section.name}.{name} has no range in callbot.config.LIMITS"
            if name in limits:
                assert limits[name].problem(getattr(values, name)) is None, f"default {section.name}.{name}"


def test_out_of_range_env_and_flags_name_the_variable_or_the_flag() -> None:
    with pytest.raises(ConfigError, match="^environment variable CALLBOT_AUDIO_SERVER_PORT: audio_server.port: "
                                          "70000 must be between"):
        load_settings(env={"CALLBOT_AUDIO_SERVER_PORT": "70000"})
    with pytest.raises(ConfigError, match=r"^command line \(--max-streams\): audio_server.max_streams: 0 must be"):
        load_settings(env={}, overrides={"audio_server.max_streams": 0}, flags={"audio_server.max_streams": "--max-streams"})
    with pytest.raises(ConfigError, match="^command line: esl.command_timeout_s: 0.0 must be > 0"):
        load_settings(env={}, overrides={"esl.command_timeout_s": 0.0})
    with pytest.raises(ConfigError, match="^code: vad.aggressiveness: 9 must be between 0 and 3"):
        Settings().replace(**{"vad.aggressiveness": 9})
    # settings that bound each other are checked once every variable is in, whatever their order
    both = load_settings(env={"CALLBOT_AUDIO_SERVER_MAX_SPEED": "200", "CALLBOT_AUDIO_SERVER_REPLAY_MAX_SPEED": "300"})
    assert (both.audio_server.max_speed, both.audio_server.replay_max_speed) == (200.0, 300.0)


@pytest.mark.parametrize("value, annotation", [
    ("1_500", int), ("1.5s", int), ("0x10", int), (" ", int), (1.5, int), (True, int),
    ("nan", float), ("inf", float), (math.nan, float), ("maybe", bool), ([1], str),
])
def test_coercion_is_strict(value, annotation) -> None:
    with pytest.raises(ConfigError, match="^where: .* is not a valid"):
        coerce(value, annotation, "where")


def test_coercion_of_text() -> None:
    assert coerce(" 1500 ", int, "w") == 1500 and coerce("-3", int, "w") == -3 and coerce(2.0, int, "w") == 2
    assert coerce("1e3", float, "w") == 1000.0 and coerce("on", bool, "w") is True and coerce("0", bool, "w") is False
    assert coerce("none", int | None, "w") is None and coerce("a, b", tuple[str, ...], "w") == ("a", "b")


def test_prompts_dir_is_one_setting_for_robot_and_audio_server(tmp_path) -> None:
    assert Settings().prompts.dir is None and Settings().prompts.path() == prompts_dir()
    settings = load_settings(env={"CALLBOT_PROMPTS_DIR": str(tmp_path)})
    assert settings.prompts.path() == tmp_path
    path = tmp_path / "old.toml"
    path.write_text("[robot]\nprompts_dir = \"/x\"\n")
    with pytest.raises(ConfigError, match="unknown setting robot.prompts_dir"):
        load_settings(path, env={})


def test_the_global_db_option_sets_db_url_over_file_and_env(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from callbot.app.cli import main

    monkeypatch.setenv("CALLBOT_DB_URL", "sqlite:///from-env.db")
    result = CliRunner().invoke(main, ["--db", f"sqlite:///{tmp_path / 'flag.db'}", "config"])
    assert result.exit_code == 0, result.output
    assert f'url = "sqlite:///{tmp_path / "flag.db"}"' in result.output
