"""The one settings object: precedence, validation with clear messages, and a TOML round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest

from callbot.config import ConfigError, Settings, load_settings, to_toml


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
])
def test_bad_files_are_refused_naming_the_file_and_key(tmp_path, text, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(path, env={})
    assert str(path) in str(err.value)


def test_bad_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="CALLBOT_NOPE_X names no settings section"):
        load_settings(env={"CALLBOT_NOPE_X": "1"})
    with pytest.raises(ConfigError, match="environment: bargein.min_speech_ms"):
        load_settings(env={"CALLBOT_BARGEIN_MIN_SPEECH_MS": "1.5s"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"CALLBOT_CONFIG": "/nonexistent/callbot.toml"})


def test_toml_round_trip(tmp_path) -> None:
    settings = Settings().replace(**{"esl.password": 'pa"ss', "stt.language": "fr", "vad.hangover_ms": 250})
    path = tmp_path / "out.toml"
    path.write_text(to_toml(settings, redact=False))
    assert load_settings(path, env={}) == settings
    assert 'password = "***"' in to_toml(settings)


def test_config_command_prints_effective_settings(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", "from callbot.app.cli import main; main()", "config"], capture_output=True, text=True,
                         env={"CALLBOT_BARGEIN_MIN_SPEECH_MS": "1700", "PATH": ""}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "[bargein]\nmin_speech_ms = 1700" in out.stdout
