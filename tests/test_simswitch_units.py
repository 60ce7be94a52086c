"""Sans-I/O parts of simswitch: argument splitter, subscriptions/filters, WS framing, callees."""

from __future__ import annotations

import struct

import pytest

from callbot.esl.protocol import EslEvent
from callbot.simswitch.esl.argsplit import split_args
from callbot.simswitch.calls.callees import DialError, parse_dial
from callbot.simswitch.esl.subscriptions import Subscription
from callbot.simswitch.media.ws_frames import (
    OP_BINARY, OP_CLOSE, OP_TEXT, WsError, WsFrameParser, encode_frame, extra_headers, handshake_ok,
    handshake_request,
    parse_ws_url,
)
from simswitch_testkit import FIXTURES


# ---- the FreeSWITCH argument splitter (cases observed in conformance 03g) ----------------------

def test_split_keeps_rest_of_line_in_last_token():
    argv = split_args('u start ws://h:1/x mono 16k {"a": 1, "b": "x y"}', 6)
    assert argv == ["u", "start", "ws://h:1/x", "mono", "16k", '{"a": 1, "b": "x y"}']


def test_split_metadata_escapes_as_observed():
    meta = r'{"note": "it' + "'" + r's ok", "quote": "say \"hi\"", "nl": "a\nb", "u": "caf\u00e9", "p": "C:\\tmp"}'
    argv = split_args("u start ws://h:1/x mono 16k " + meta, 6)
    assert argv[5] == '{"note": "it\'s ok", "quote": "say "hi"", "nl": "a\nb", "u": "caf\\u00e9", "p": "C:\\tmp"}'


def test_split_send_text_cut_at_first_space_unless_quoted():
    assert split_args('u send_text {"type": "robot_text", "n": 2}', 6)[2] == '{"type":'
    assert split_args("u send_text '{\"type\": \"robot_text\", \"n\": 3}'", 6)[2] == '{"type": "robot_text", "n": 3}'
    assert split_args('u send_text {"s":"it\'s"}', 6)[2] == '{"s":"it\'s"}'


def test_split_runs_of_spaces_and_trailing_space():
    assert split_args("  a   b  ", 6) == ["a", "b"]
    assert split_args("", 6) == []


# ---- subscriptions and filters ----------------------------------------------------------------

def ev(name: str, **headers: str) -> EslEvent:
    h = [("Event-Name", name)] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return EslEvent(h)


def test_event_subscription_custom_and_all():
    s = Subscription()
    assert s.event("plain CHANNEL_ANSWER CUSTOM mod_audio_stream::json") == "+OK event listener enabled plain"
    assert s.wants(ev("CHANNEL_ANSWER"))
    assert s.wants(ev("CUSTOM", Event_Subclass="mod_audio_stream::json"))
    assert not s.wants(ev("CUSTOM", Event_Subclass="mod_audio_stream::play"))
    assert not s.wants(ev("CHANNEL_HANGUP"))
    assert s.event("json ALL") == "+OK event listener enabled json"
    assert s.fmt == "json" and s.wants(ev("CUSTOM", Event_Subclass="x::y"))
    assert s.event("plain") == "-ERR no keywords supplied"
    assert s.noevents() == "+OK no longer listening for events"
    assert not s.wants(ev("CHANNEL_ANSWER"))


def test_filter_drops_events_lacking_the_header_and_vetoes():
    s = Subscription()
    s.event("plain ALL")
    assert s.filter("Unique-ID abc") == "+OK filter added. [Unique-ID]=[abc]"
    assert s.wants(ev("CHANNEL_ANSWER", Unique_ID="ABC"))  # strcasecmp
    assert not s.wants(ev("BACKGROUND_JOB", Job_UUID="j"))  # lacks Unique-ID
    assert s.filter("Event-Name BACKGROUND_JOB").startswith("+OK")
    assert s.wants(ev("BACKGROUND_JOB", Job_UUID="j"))
    assert s.filter("Event-Name -CHANNEL_ANSWER").startswith("+OK")
    assert not s.wants(ev("CHANNEL_ANSWER", Unique_ID="abc"))
    assert s.filter("delete Unique-ID abc") == "+OK filter deleted. [Unique-ID][abc]"
    assert s.filter("Unique-ID") == "-ERR invalid syntax"
    assert s.filter("Unique-ID /^ab+c$/").startswith("+OK")
    s.filter("delete Event-Name -CHANNEL_ANSWER")
    assert s.wants(ev("CHANNEL_HANGUP", Unique_ID="abbbc"))


# ---- WebSocket framing ------------------------------------------------------------------------

def test_handshake_request_is_colon_no_space():
    url = parse_ws_url("ws://127.0.0.1:8090/stream/abc?x=1")
    assert url is not None
    req, key = handshake_request(url)
    assert req == (f"GET /stream/abc?x=1 HTTP/1.1\r\nHost:127.0.0.1:8090\r\nUpgrade:websocket\r\n"
                   f"Connection:upgrade\r\nSec-WebSocket-Key:{key}\r\nSec-WebSocket-Version:13\r\n"
                   f"Origin:http://127.0.0.1:8090\r\n\r\n").encode()
    assert handshake_ok(b"HTTP/1.1 101 Switching Protocols\r\nSEC-WEBSOCKET-ACCEPT: x\r\n\r\n")
    assert not handshake_ok(b"HTTP/1.1 403 Forbidden\r\n\r\n")


def test_extra_headers_only_take_safe_string_values():
    url = parse_ws_url("ws://h:1/")
    assert url is not None
    headers = extra_headers('{"X-Token": "abc", "n": 1, "Bad:Name": "x", "X-Inject": "a\\r\\nHost: evil"}')
    assert headers == [("X-Token", "abc")]
    req, _ = handshake_request(url, headers)
    assert req.endswith(b"Origin:http://h:1\r\nX-Token:abc\r\n\r\n")
    assert extra_headers("not json") == [] and extra_headers(None) == []


@pytest.mark.parametrize("url", ["http://h:1/x", "ws://[::1]:80/", "ws://a_b:1/", "ws://h:x/", "ws://h:1/a b"])
def test_invalid_ws_urls_are_refused(url):
    assert parse_ws_url(url) is None


def test_client_frames_are_masked_single_frames():
    payload = bytes(range(256)) * 2 + b"\x00" * 128  # 640 bytes
    frame = encode_frame(OP_BINARY, payload)
    assert frame[:4] == b"\x82\xfe\x02\x80"
    mask = frame[4:8]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(frame[8:])) == payload


def test_server_frame_parser_joins_fragments_and_rejects_masked():
    p = WsFrameParser()
    data = bytes([0x01, 3]) + b"abc" + bytes([0x80, 2]) + b"de" + bytes([0x88, 2]) + struct.pack("!H", 1000)
    assert p.feed(data[:4]) == []
    assert p.feed(data[4:]) == [(OP_TEXT, b"abcde"), (OP_CLOSE, struct.pack("!H", 1000))]
    with pytest.raises(WsError) as exc:
        WsFrameParser().feed(bytes([0x81, 0x81]) + b"mask" + b"x")
    assert exc.value.code == 3
    with pytest.raises(WsError):
        WsFrameParser(max_message=10).feed(bytes([0x82, 126]) + struct.pack("!H", 1000))


# ---- callees -----------------------------------------------------------------------------------

def test_fixture_dial_with_vars_and_query():
    spec = parse_dial("fixture/short_yes?hangup_after_s=3", {"sim_answer_delay_ms": "800"}, FIXTURES, 200)
    assert spec.wav == FIXTURES / "short_yes.wav"
    assert spec.answer_delay_s == 0.8 and spec.hangup_after_s == 3.0
    assert parse_dial("error/user_busy", {}, FIXTURES, 200).fail_cause == "USER_BUSY"


@pytest.mark.parametrize("dial,cause", [
    ("fixture/../../etc/passwd", "UNALLOCATED_NUMBER"), ("fixture/nope", "UNALLOCATED_NUMBER"),
    ("sofia/gateway/x/1", "CHAN_NOT_IMPLEMENTED"), ("fixture/short_yes?bogus=1", "INVALID_URL"),
    ("fixture/short_yes?answer_delay_ms=-5", "INVALID_URL"),
])
def test_bad_dial_strings(dial, cause):
    with pytest.raises(DialError) as exc:
        parse_dial(dial, {}, FIXTURES, 200)
    assert exc.value.cause == cause
