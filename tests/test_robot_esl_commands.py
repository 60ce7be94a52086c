"""Command builders and output parsers for the robot's ESL client: validation happens before anything is sent."""

from __future__ import annotations

import pytest

from callbot.robot.esl.commands import (
    audio_stream_start_command, audio_stream_stop_command, break_command, broadcast_command, check_api_command,
    check_uuid, kill_command, originate_command, parse_show_channels_json, subscription_command,
)

U = "b674cdff-5ccf-44a8-9a23-6117a9f3fc3c"


def test_originate_matches_the_captured_command():
    """The same line the conformance driver sent in 02_call_mono16k."""
    line = originate_command(U, "loopback/callee/default", {"ignore_early_media": True}, stream_variables=False)
    assert line == f"originate {{origination_uuid={U},ignore_early_media=true}}loopback/callee/default &park()"


def test_originate_sets_mod_audio_stream_variables_by_default():
    line = originate_command(U, "sofia/gateway/gw/123", {"originate_timeout": 30, "STREAM_HEART_BEAT": 5})
    assert line == (f"originate {{origination_uuid={U},STREAM_MESSAGE_DEFLATE=true,STREAM_HEART_BEAT=5,"
                    "originate_timeout=30}sofia/gateway/gw/123 &park()")


@pytest.mark.parametrize("variables", [{"x": "a b"}, {"x": "a,b"}, {"x": "}"}, {"bad name": "1"},
                                       {"origination_uuid": U}])
def test_originate_refuses_variables_that_would_change_the_command(variables):
    with pytest.raises(ValueError):
        originate_command(U, "sofia/gateway/gw/123", variables)


def test_audio_stream_start_with_compact_metadata_and_refused_escapes():
    line = audio_stream_start_command(U, f"ws://127.0.0.1:8090/stream/{U}?lang=fr", "mono", "16k",
                                      {"call_id": U, "robot": "é"})
    assert line == (f"uuid_audio_stream {U} start ws://127.0.0.1:8090/stream/{U}?lang=fr mono 16k "
                    f'{{"call_id":"{U}","robot":"é"}}')
    with pytest.raises(ValueError, match="FreeSWITCH would unescape"):
        audio_stream_start_command(U, "ws://h/s", metadata={"path": "C:\\tmp"})
    for bad_url in ("http://h/s", "ws://[::1]:8080/s", "ws://my_host/s", "ws://h:port/s"):
        with pytest.raises(ValueError, match="ws:// or wss://"):
            audio_stream_start_command(U, bad_url)
    with pytest.raises(ValueError, match="initialMetadata"):
        audio_stream_start_command(U, "ws://h/s", metadata={"pad": "x" * 8200})
    with pytest.raises(ValueError, match="one of"):
        audio_stream_start_command(U, "ws://h/s", rate="48k")
    assert audio_stream_stop_command(U) == f"uuid_audio_stream {U} stop"


def test_playback_break_and_kill_lines():
    assert broadcast_command(U, "/p/hello.wav") == f"uuid_broadcast {U} /p/hello.wav aleg"
    assert break_command(U) == f"uuid_break {U} all"
    assert kill_command(U) == f"uuid_kill {U} NORMAL_CLEARING"
    with pytest.raises(ValueError, match="one token"):
        broadcast_command(U, "/p/a.wav /p/b.wav")
    with pytest.raises(ValueError, match="cause name"):
        kill_command(U, "normal clearing")


@pytest.mark.parametrize("bad", ["", "B674CDFF-5CCF-44A8-9A23-6117A9F3FC3C", "b674cdff5ccf44a89a236117a9f3fc3c",
                                 U + " all", "urn:uuid:" + U])
def test_uuids_must_be_canonical(bad):
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        check_uuid(bad)


def test_api_lines_checked():
    assert check_api_command(f"uuid_break {U} all")
    assert check_api_command("status") == "status"
    with pytest.raises(ValueError):
        check_api_command("uuid_kill 00000000")
    with pytest.raises(ValueError):
        check_api_command("status\r\n")


def test_subscription_puts_custom_last_and_refuses_all():
    assert subscription_command(["CHANNEL_ANSWER"], ["mod_audio_stream::json"]) == \
        "event plain CHANNEL_ANSWER CUSTOM mod_audio_stream::json"
    assert subscription_command(["BACKGROUND_JOB"], []) == "event plain BACKGROUND_JOB"
    for bad in (["ALL"], ["CUSTOM"], ["channel answer"]):
        with pytest.raises(ValueError):
            subscription_command(bad, [])


def test_show_channels_json_both_forms():
    assert parse_show_channels_json('{"row_count": 0}\n') == set()
    text = '{"row_count":2,"rows":[{"uuid":"%s","name":"a"},{"uuid":"x","name":"b"}]}' % U
    assert parse_show_channels_json(text) == {U, "x"}
    with pytest.raises(ValueError, match="did not return JSON"):
        parse_show_channels_json("-ERR no reply\n")
    with pytest.raises(ValueError, match="does not match"):
        parse_show_channels_json('{"row_count": 3, "rows": []}')
