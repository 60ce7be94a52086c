"""Hostile and broken scenario files: refused at load (file, line, key), never in a call.

Prompt paths the switch could not play or that leave the audio directories, loops no reply can
leave, `[scenario] max_call_s` and `on_audio_lost`, files that are not TOML or not text, and
arbitrary TOML documents (hypothesis): loading raises ScenarioError or returns a scenario, nothing else.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbot.app.cli import main
from callbot.resources import prompts_dir
from callbot.robot.scenario.loader import ScenarioError, load_scenario

HEAD = '[scenario]\nlanguage = "en"\nstart = "a"\naudio_dir = "audio"\n'


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    """tmp_path/audio/16000 with the bundled greeting (10 s) and callback (4.1 s) prompts."""
    folder = tmp_path / "audio" / "16000"
    folder.mkdir(parents=True)
    for name in ("greeting.wav", "callback.wav"):
        shutil.copy(prompts_dir() / "en" / "16000" / name, folder / name)
    return folder


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, **kwargs: object) -> list[tuple[int | None, str]]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(info.value)
    return list(zip(info.value.lines, info.value.problems))


# ---- prompt paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("hello there.wav", "' ' is refused"),
    ("it's.wav", "\"'\" is refused"),
    ('say"hi".wav', "'\"' is refused"),
    ("${system(id)}.wav", "'$' is refused"),
    ("{api_on_answer=hupall}x.wav", "'{' is refused"),
    ("a!b.wav", "'!' is refused"),
    ("tone_stream::x.wav", "':' is refused"),
    ("back\\slash.wav", "'\\\\' is refused"),
    ("tab\there.wav", "'\\t' is refused"),
], ids=["space", "single quote", "double quote", "${api}", "{variables}", "! hangup cause", "app::arg", "backslash",
        "tab"])
def test_a_prompt_the_switch_cannot_play_is_refused_at_load_with_its_line(tmp_path, audio, name, words):
    shutil.copy(audio / "greeting.wav", audio / name)
    path = write(tmp_path, HEAD + f'\n[steps.a]\nprompt = {json.dumps(name)}\ndisposition = "done"\n')
    found = problems(path)
    assert len(found) == 1, found
    line, text = found[0]
    assert line == 7 and text.startswith("steps.a.prompt: the switch cannot play it:") and words in text, found


@pytest.mark.parametrize("name", ["../../outside.wav", "../16000/../../outside.wav", "/etc/passwd"])
def test_a_prompt_outside_the_audio_and_prompts_directories_is_refused(tmp_path, audio, name):
    shutil.copy(audio / "greeting.wav", tmp_path / "outside.wav")
    found = problems(write(tmp_path, HEAD + f'[steps.a]\nprompt = "{name}"\ndisposition = "done"\n'))
    target = (audio / name).resolve()
    assert [(line, text.split(" is outside")[0]) for line, text in found][:1] == [(6, f"steps.a.prompt: {target}")]


def test_a_symlink_out_of_the_audio_directory_is_refused(tmp_path, audio):
    shutil.copy(audio / "greeting.wav", tmp_path / "secret.wav")
    (audio / "link.wav").symlink_to(tmp_path / "secret.wav")
    found = problems(write(tmp_path, HEAD + '[steps.a]\nprompt = "link.wav"\ndisposition = "done"\n'))
    assert len(found) == 1 and "is outside the audio directory" in found[0][1]


def test_an_audio_dir_with_a_space_refuses_every_prompt(tmp_path):
    folder = tmp_path / "my prompts" / "16000"
    folder.mkdir(parents=True)
    shutil.copy(prompts_dir() / "en" / "16000" / "callback.wav", folder / "bye.wav")
    found = problems(write(tmp_path, HEAD.replace('"audio"', '"my prompts"') +
                           '[steps.a]\nprompt = "bye.wav"\nnext = "b"\n[steps.b]\nprompt = "bye.wav"\n'
                           'disposition = "done"\n'))
    assert [(line, text.split(":")[0]) for line, text in found] == [(6, "steps.a.prompt"), (9, "steps.b.prompt")]
    assert all("' ' is refused" in text for _, text in found)


def test_callbot_call_refuses_such_a_scenario_before_it_connects_to_any_switch(tmp_path, audio, monkeypatch):
    shutil.copy(audio / "greeting.wav", audio / "hello there.wav")
    path = write(tmp_path, HEAD + '[steps.a]\nprompt = "hello there.wav"\ndisposition = "done"\n')
    listener = socket.create_server(("127.0.0.1", 0))  # a "switch" that counts who connects
    listener.settimeout(0.2)
    monkeypatch.setenv("CALLBOT_ESL_PORT", str(listener.getsockname()[1]))
    monkeypatch.setenv("CALLBOT_ESL_PASSWORD", "x")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["call", "fixture/silence", "--scenario", str(path), "--no-db"])
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert result.exit_code == 1 and f"{path}:6: steps.a.prompt: the switch cannot play it" in result.output


# ---- loops ---------------------------------------------------------------------------------------

LOOPS = {
    "next to itself": ('[steps.a]\nprompt = "callback.wav"\nnext = "a"\n',
                       [(7, "steps.a.next: steps a -> a loop with no listening step")]),
    "a -> b -> a": ('[steps.a]\nprompt = "callback.wav"\nnext = "b"\n[steps.b]\nprompt = "greeting.wav"\nnext = "a"\n',
                    [(7, "steps.a.next: steps a -> b -> a loop with no listening step")]),
    "listening, every reply back": (
        '[steps.a]\nprompt = "greeting.wav"\nlisten_s = 3\non = { yes = "b", default = "a" }\n'
        '[steps.b]\nprompt = "callback.wav"\nnext = "a"\n',
        [(8, "steps.a.on: every reply to a leads back into the loop a -> b -> a")]),
    "two listening steps, no way out": (
        '[steps.a]\nprompt = "greeting.wav"\nlisten_s = 3\non = { default = "b" }\n'
        '[steps.b]\nprompt = "greeting.wav"\nlisten_s = 3\non = { default = "a" }\n',
        [(8, "steps.a.on: every reply to a, b leads back into the loop a -> b -> a")]),
}


@pytest.mark.parametrize("steps, expected", LOOPS.values(), ids=LOOPS.keys())
def test_a_loop_no_reply_can_leave_is_refused(tmp_path, audio, steps, expected):
    found = problems(write(tmp_path, HEAD + steps))
    assert [(line, text.split(":")[0] + ":" + text.split(":")[1]) for line, text in found] == \
        [(line, words.split(":")[0] + ":" + words.split(":")[1]) for line, words in expected]
    assert all(words in text for (_, text), (_, words) in zip(found, expected)), found


def test_a_loop_through_listening_with_a_way_out_is_allowed(tmp_path, audio):
    sc = load_scenario(write(tmp_path, HEAD + (
        '[steps.a]\nprompt = "greeting.wav"\nlisten_s = 3\non = { silence = "a", unknown = "a", default = "bye" }\n'
        '[steps.bye]\nprompt = "callback.wav"\ndisposition = "done"\n')))
    assert sc.step("a").branch("silence") == "a" and sc.max_call_s is None  # the robot's max_call_s bounds it


def test_a_disposition_ends_the_call_even_beside_next(tmp_path, audio):
    """The call follows a disposition before `next` (robot.call): such a step is reported once, not as a loop."""
    found = problems(write(tmp_path, HEAD + '[steps.a]\nprompt = "callback.wav"\nnext = "a"\ndisposition = "x"\n'))
    assert [text.split(":")[0] for _, text in found] == ["steps.a"]


# ---- [scenario] max_call_s and on_audio_lost ------------------------------------------------------

ONE_STEP = '[steps.a]\nprompt = "greeting.wav"\nlisten_s = 3\non = { default = "b" }\n' \
           '[steps.b]\nprompt = "callback.wav"\ndisposition = "done"\n'


@pytest.mark.parametrize("value, words", [
    ("0", "0 is outside (0, 600]"),
    ("-5", "-5 is outside (0, 600]"),
    ("601", "601 is outside (0, 600]"),
    ("true", "expected a number, got True"),
    ('"600"', "expected int or float, got '600'"),
    ("nan", "nan is outside (0, 600]"),
    ("inf", "inf is outside (0, 600]"),
    ("12", "12 s is shorter than the quickest way through the scenario (14.1 s of prompts: a -> b)"),
])
def test_max_call_s_is_range_checked_against_the_robot_s(tmp_path, audio, value, words):
    found = problems(write(tmp_path, HEAD + f"max_call_s = {value}\n" + ONE_STEP), max_call_s=600.0)
    assert [(line, text.split(":")[0]) for line, text in found] == [(5, "scenario.max_call_s")]
    assert words in found[0][1], found


def test_max_call_s_and_on_audio_lost_are_read(tmp_path, audio):
    sc = load_scenario(write(tmp_path, HEAD + 'max_call_s = 90\non_audio_lost = "hangup"\n' + ONE_STEP),
                       max_call_s=600.0)
    assert (sc.max_call_s, sc.on_audio_lost) == (90, "hangup")
    assert load_scenario(write(tmp_path, HEAD + ONE_STEP)).on_audio_lost == "continue"


@pytest.mark.parametrize("value, words", [('"shout"', "'shout' is not one of continue, hangup"),
                                          ("1", "expected str, got 1")])
def test_on_audio_lost_is_continue_or_hangup(tmp_path, audio, value, words):
    found = problems(write(tmp_path, HEAD + f"on_audio_lost = {value}\n" + ONE_STEP))
    assert [(line, text.split(":")[0]) for line, text in found] == [(5, "scenario.on_audio_lost")] and words in found[0][1]


# ---- files that are not scenarios --------------------------------------------------------------

@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe\x00\x01binary", "cannot be read as UTF-8 text"),
    (b"a = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    (b"[scenario]\nname = 1\nname = 2\n", "not valid TOML: Cannot overwrite a value (at line 3"),
    (b"steps = 3\n", "steps: expected dict, got 3"),
    (b"[[scenario]]\nname = \"x\"\n", "scenario: expected dict"),
    (b'[scenario]\nname = "a\\"b"\nlanguage = "en"\nstart = "a"\n', "scenario.name: 'a\"b' must be"),
    (b'[scenario]\nname = "line\\nbreak"\nlanguage = "en"\nstart = "a"\n', "scenario.name: 'line\\nbreak' must be"),
    (b'[scenario]\nlanguage = "xx"\nstart = "a"\n', "scenario.language:"),
], ids=["binary", "nested 5000 deep", "duplicate key", "steps not a table", "scenario an array", "quote in name",
        "newline in name", "unknown language"])
def test_files_that_are_not_scenarios_get_one_clear_error(tmp_path, content, words):
    path = tmp_path / "s.toml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert words in str(info.value), str(info.value)


def test_a_directory_is_not_a_scenario(tmp_path):
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"


KEYS = st.sampled_from(["scenario", "steps", "voicemail", "intents", "name", "language", "start", "audio_dir",
                        "prompt", "next", "on", "listen_s", "disposition", "max_call_s", "on_audio_lost", "a", "b",
                        "default", "yes", "silence", "barge_in", "message", "on_machine"])
LEAVES = (st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
          | st.sampled_from(["en", "a", "b", "greeting.wav", "../x.wav", "hello there.wav", "hangup", "continue", ""])
          | st.text(max_size=8))
DOCS = st.dictionaries(KEYS, st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                                          | st.dictionaries(KEYS, inner, max_size=4), max_leaves=12), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOCS)
def test_any_toml_document_loads_or_raises_scenario_error_only(tmp_path_factory, doc):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "s.toml"
    path.write_text("\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in doc.items()), encoding="utf-8")
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
