"""callbot.stream: the stream URL and the playback markers, built by the robot's side and parsed by the server's."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbot.config import Settings
from callbot.stream import (MarkerError, PlaybackMarker, StreamQuery, StreamUrlError, check_prompt_file, clean_text,
                            marker_command, parse_marker, parse_stream_target, robot_stream_url, stream_url)

CALL = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_the_robot_url_carries_its_settings_and_parses_back() -> None:
    settings = Settings().replace(**{"audio_server.token": "t/k&n", "bargein.min_speech_ms": 1200})
    url = robot_stream_url("ws://10.0.0.5:8080/", CALL, settings, lang="fr")
    assert url == (f"ws://10.0.0.5:8080/stream/{CALL}?rate=16000&min_speech_ms=1200&bridge_ms=300&amd=on&lang=fr"
                   "&token=t%2Fk%26n")
    call, query = parse_stream_target(url.removeprefix("ws://10.0.0.5:8080"))
    assert call == CALL
    assert query == StreamQuery(rate=16000, min_speech_ms=1200, bridge_ms=300, amd=True, lang="fr", token="t/k&n")
    quiet = robot_stream_url("ws://h:1", CALL, Settings().replace(**{"robot.act_on_amd": False, "robot.speed": 20}))
    assert "amd=" not in quiet and quiet.endswith("&replay=1")


def test_every_key_round_trips() -> None:
    query = StreamQuery(rate=8000, min_speech_ms=900, bridge_ms=0, amd=False,
                        amd_timings={"greeting": 2000, "maximum_number_of_words": 4}, lang="en", replay=True,
                        token="x")
    url = stream_url("ws://h:1", CALL, query)
    assert "amd=off&amd_greeting=2000&amd_maximum_number_of_words=4&lang=en&replay=1&token=x" in url
    assert parse_stream_target(url.removeprefix("ws://h:1")) == (CALL, query)
    assert stream_url("ws://h:1", CALL, StreamQuery()) == f"ws://h:1/stream/{CALL}"


@pytest.mark.parametrize("query, message", [
    (StreamQuery(rate=44100), "stream URL rate: 44100 must be one of 8000, 16000"),
    (StreamQuery(min_speech_ms=50), "stream URL min_speech_ms: 50 must be between 100 and 60000"),
    (StreamQuery(amd_timings={"greting": 100}), "no such key 'amd_greting'"),
    (StreamQuery(lang="french"), "must be a short language code"),
])
def test_the_builder_refuses_what_the_server_would_refuse(query: StreamQuery, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stream_url("ws://h:1", CALL, query)


def test_the_builder_wants_the_switch_s_uuid() -> None:
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        stream_url("ws://h:1", CALL.upper(), StreamQuery())


@pytest.mark.parametrize("target, status, message", [
    (f"/stream/{CALL}?rate=1e4", 400, "query parameter rate: '1e4' is not a valid int"),
    (f"/stream/{CALL}?bridge_ms=5001", 400, "query parameter bridge_ms: 5001 must be between 0 and 5000"),
    (f"/stream/{CALL}?lang=FR", None, None),
    (f"/stream/{CALL}?Rate=8000", 400, "unknown query parameter 'Rate'; known: rate, min_speech_ms"),
    (f"/stream/{CALL}?token=a&token=b", 400, "query parameter 'token' is given twice"),
    (f"/other/{CALL}", 404, "no such path '/other/"),
])
def test_the_parser_coerces_like_the_settings_and_names_the_key(target: str, status: int | None,
                                                                 message: str | None) -> None:
    if status is None:
        assert parse_stream_target(target)[1].lang == "fr"
        return
    with pytest.raises(StreamUrlError) as err:
        parse_stream_target(target)
    assert err.value.status == status and message in str(err.value)


# -- playback markers ---------------------------------------------------------------------------


def test_markers_are_compact_json_in_contract_order() -> None:
    start = PlaybackMarker.start("en/16000/greeting.wav", "Hello, this is Anna. Is now a good time?")
    assert start.to_json() == ('{"type":"playback","state":"start","file":"en/16000/greeting.wav",'
                               '"text":"Hello, this is Anna. Is now a good time?"}')
    assert PlaybackMarker.start("fr/8000/x.wav").to_json() == '{"type":"playback","state":"start","file":"fr/8000/x.wav"}'
    for state in ("stop", "pause", "resume"):
        assert PlaybackMarker(state).to_json() == f'{{"type":"playback","state":"{state}"}}'


def test_the_command_survives_send_text() -> None:
    """send_text strips ' and eats backslashes (wire facts 1.1): the text is cleaned so the JSON stays whole."""
    marker = PlaybackMarker.start("en/16000/q1.wav", 'It\'s a "quick"\\survey.\nReady?\tÇa va\u00a0?')
    command = marker_command(CALL, marker)
    assert command == (f"uuid_audio_stream {CALL} send_text "
                       """'{"type":"playback","state":"start","file":"en/16000/q1.wav","text":"It s a quick survey. """
                       """Ready? Ça va ?"}'""")
    body = command.split(" send_text ", 1)[1][1:-1]
    assert parse_marker(body) == marker
    assert clean_text("  ''  ") == "" and PlaybackMarker.start("a.wav", "''").text is None


@pytest.mark.parametrize("path, problem", [
    ("/usr/share/prompts/greeting.wav", "an absolute path"),
    ("en/../../etc/passwd", "'..' leaves the prompts directory"),
    ("..", "'..' leaves the prompts directory"),
    ("en/16000/it's.wav", "contains \"'\""),
    ('en/16000/a"b.wav', "contains '\"'"),
    ("en\\16000\\a.wav", "contains '\\\\'"),
    ("en/16000/a\nb.wav", "contains '\\n'"),
    ("en//a.wav", "empty or '.' path segment"),
    ("", "give a path relative to the prompts directory"),
])
def test_a_bad_prompt_file_is_refused_naming_the_problem(path: str, problem: str) -> None:
    with pytest.raises(MarkerError) as err:
        PlaybackMarker.start(path, "words")
    assert problem in str(err.value)


def test_check_prompt_file_accepts_relative_posix_paths() -> None:
    assert check_prompt_file("en/16000/greeting.wav") == "en/16000/greeting.wav"
    assert check_prompt_file("my prompts/v2/hello there.wav") == "my prompts/v2/hello there.wav"


@pytest.mark.parametrize("text, problem", [
    ('{"type":"playback","state":"rewind"}', "state 'rewind'"),
    ('{"type":"playback","state":"start"}', "must name its file"),
    ('{"type":"playback","state":"start","file":"/etc/passwd"}', "an absolute path"),
    ('{"type":"playback","state":"start","file":"../x.wav"}', "'..' leaves"),
    ('{"type":"playback","state":"start","file":7}', "give a path relative"),
    ('{"type":"playback","state":"start","file":"a.wav","text":["x"]}', "text must be a string"),
    ('{"type":"playback","state":"stop","file":"a.wav"}', "has no file or text"),
    ('{"type":"playback","state":"stop","volume":3}', "unknown key 'volume'"),
    ('{"type":"playback","state":1}', "state 1"),
])
def test_the_server_side_parser_refuses_bad_markers(text: str, problem: str) -> None:
    with pytest.raises(MarkerError, match=None) as err:
        parse_marker(text)
    assert problem in str(err.value)


@pytest.mark.parametrize("text", ['{"call_id":"42"}', '{"type":"prompt","text":"x"}', "[1]", "not json", '{"type":'])
def test_other_text_frames_are_not_markers(text: str) -> None:
    assert parse_marker(text) is None


@given(st.text(max_size=200))
def test_any_prompt_text_makes_a_command_the_server_reads_back(words: str) -> None:
    marker = PlaybackMarker.start("en/16000/greeting.wav", words)
    body = marker_command(CALL, marker).split(" send_text ", 1)[1]
    assert body[0] == body[-1] == "'" and "'" not in body[1:-1] and "\\" not in body
    assert parse_marker(body[1:-1]) == marker
    assert json.loads(body[1:-1]).get("text", "") == " ".join(marker.text.split()) if marker.text else True
