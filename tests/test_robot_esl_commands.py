"""Command builders and output parsers for the robot's ESL client: validation happens before anything is sent."""

from __future__ import annotations

import pytest

from callbot.robot.esl.commands import (
    MAX_CALL_VARIABLE, audio_stream_start_command, audio_stream_stop_command, break_command, broadcast_command,
    check_api_command, check_prompt_path, check_uuid, kill_command, max_call_variables, originate_command,
    parse_show_channels_json, subscription_command,
)
from callbot.robot.esl.dialstring import DialStringError

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
                                       {"origination_uuid": U}, {"x": "${hupall()}"}, {"x": "a|b"}, {"x": "<a>"},
                                       {"x": "^^:a"}, {"x": "[a]"}, {"x": "ok\n"}])
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
    with pytest.raises(ValueError, match="' ' is refused"):
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
    with pytest.raises(ValueError, match="control characters"):
        check_api_command(f"uuid_kill {U}\x00 hupall")


def test_uuid_with_a_trailing_newline_is_refused():
    """``re.match`` with ``$`` would accept it (``$`` matches before a final newline)."""
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        check_uuid(U + "\n")


def test_originate_with_max_call_length_hangs_up_switch_side():
    """``execute_on_answer_max_call=sched_hangup:+N``: no space, no quotes; the cause is sched_hangup's
    default, ALLOTTED_TIMEOUT; whole seconds, rounded up."""
    line = originate_command(U, "sofia/gateway/gw/+15551234567", {"originate_timeout": 30}, max_call_s=299.2)
    assert line == (f"originate {{origination_uuid={U},STREAM_MESSAGE_DEFLATE=true,STREAM_HEART_BEAT=0,"
                    "originate_timeout=30,execute_on_answer_max_call=sched_hangup:+300}"
                    "sofia/gateway/gw/+15551234567 &park()")
    assert max_call_variables(600) == {"execute_on_answer_max_call": "sched_hangup:+600"}
    for bad in (0, -1, 86401, float("nan"), float("inf"), True, "60"):
        with pytest.raises(ValueError, match="max_call_s"):
            originate_command(U, "user/1000", max_call_s=bad)
    assert "execute_on_answer" not in originate_command(U, "user/1000")
    with pytest.raises(ValueError, match="set from max_call_s"):
        originate_command(U, "user/1000", {MAX_CALL_VARIABLE: "sched_hangup:+5"}, max_call_s=60)


@pytest.mark.parametrize("dial", ["[api_on_answer=hupall]user/1000", "{ignore_early_media=false}user/1000",
                                  "user/1000,user/1001", "user/1000 &bgsystem(reboot)"])
def test_originate_refuses_a_destination_outside_the_grammar(dial):
    with pytest.raises(DialStringError, match="Accepted forms: sofia/"):
        originate_command(U, dial)


@pytest.mark.parametrize("path", ["/p/a b.wav", "playback::/x.wav", "/p/${x}.wav", "/p/{loops=2}x.wav",
                                  "/p/x.wav!hupall", "/p/x'.wav", "/p/x.wav\n", "", "/p/%[x]"])
def test_prompt_paths_the_switch_would_not_play_as_a_file_are_refused(path):
    with pytest.raises(ValueError, match="prompt path"):
        broadcast_command(U, path)


def test_prompt_paths_accepted():
    for path in ("/srv/prompts/en/16000/greeting.wav", "en/8000/call-back_2.wav", "/p/réponse.wav", "/p/a+b.wav"):
        assert check_prompt_path(path) == path


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
