"""The robot's ESL client under hostile or broken switch output, over real TCP on 127.0.0.1 (issue 11).

A malformed message costs that message only; a reader that dies, a stream that cannot be framed
and a switch that stops answering all lead to a reconnect, never to a client that says it is
connected while every command times out.
"""

from __future__ import annotations

import uuid

import gevent
import pytest

import callbot.robot.esl.client as client_module
from callbot.esl.protocol import EslParser, frame_event
from callbot.robot.esl.client import ESL_DISCONNECTED, ESL_RECONNECTED, EslError, EslTimeout
from robot_esl_switch import show_channels, switch  # noqa: F401 (switch is a fixture)
from test_robot_esl_client import client_for, wait_until  # noqa: F401 (client_for is a fixture)

CALL = str(uuid.uuid4())


def plain(*lines: str, body: bytes = b"") -> bytes:
    """An event-plain message with these header lines (and body), framed as FreeSWITCH frames events."""
    payload = ("\n".join(lines) + "\n").encode()
    payload += (b"Content-Length: %d\n\n" % len(body) + body) if body else b"\n"
    return frame_event(payload)


MALFORMED = {
    "inner Content-Length: abc": plain("Event-Name: CUSTOM", f"Unique-ID: {CALL}", "Content-Length: abc", body=b"x"),
    "inner Content-Length too long": frame_event(f"Event-Name: CUSTOM\nUnique-ID: {CALL}\nContent-Length: 99\n\nx"
                                                 .encode()),
    "no Event-Name": plain(f"Unique-ID: {CALL}"),
    "event-json list": frame_event(b"[1, 2, 3]", "json"),
    "event-json string": frame_event(b'"CHANNEL_ANSWER"', "json"),
    "event-json not JSON": frame_event(b"{oops", "json"),
    "event-json nested 100000 deep": frame_event(b"[" * 100000 + b"]" * 100000, "json"),
    "event-json _body object": frame_event(('{"Event-Name":"CUSTOM","Unique-ID":"%s","_body":{}}' % CALL).encode(),
                                           "json"),
    "event-xml": frame_event(b"<event/>", "xml"),
    "body over max_body_bytes": plain("Event-Name: CUSTOM", f"Unique-ID: {CALL}", body=b"x" * 5000),
    "unknown Content-Type": b"Content-Type: text/unheard-of\nContent-Length: 3\n\nabc",
}


def test_malformed_events_are_dropped_and_the_reader_goes_on(switch, client_for):
    client = client_for({"max_body_bytes": 4096})
    got = []
    client.route(CALL, got.append)
    switch.api["status"] = "UP 0 years\n"
    for name, data in MALFORMED.items():
        switch.conns[-1].sendall(data)
    # Not malformed, just unusual: bytes that are not UTF-8, and a 3000-byte header value.
    switch.conns[-1].sendall(plain("Event-Name: CHANNEL_ANSWER", f"Unique-ID: {CALL}", "X-Name: Caf%E9 \xe9",
                                   "X-Long: " + "v" * 3000))
    switch.push_event([("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", CALL)])
    wait_until(lambda: len(got) == 2)
    assert [e.name for e in got] == ["CHANNEL_ANSWER", "CHANNEL_HANGUP"]
    assert got[0]["X-Name"] == "Caf\ufffd \u00e9" and len(got[0]["X-Long"]) == 3000
    assert client.api("status") == "UP 0 years\n"
    assert client.ready and len(switch.commands) == 1  # never reconnected


def test_a_reply_over_the_body_limit_fails_its_command_only(switch, client_for):
    switch.api["big"] = "x" * 5000
    switch.api["status"] = "UP\n"
    client = client_for({"max_body_bytes": 1000})
    with pytest.raises(EslError, match="5000 bytes was dropped.*1000-byte limit"):
        client.api("big")
    assert client.api("status") == "UP\n"
    assert len(switch.commands) == 1


@pytest.mark.parametrize("garbage", [
    b"Content-Type: api/response\nContent-Length: abc\n\n",
    b"Content-Type: api/response\nContent-Length: -1\n\n",
    b"X-Header: " + b"h" * 70000,
], ids=["outer Content-Length: abc", "outer Content-Length: -1", "header block over the cap"])
def test_a_stream_that_cannot_be_framed_reconnects(switch, client_for, garbage):
    switch.api["show channels as json"] = show_channels(CALL)
    client = client_for({"max_body_bytes": 1 << 20})
    got = []
    client.route(CALL, got.append)
    switch.conns[-1].sendall(garbage)
    wait_until(lambda: len(switch.commands) == 2 and client.ready)
    wait_until(lambda: [e.name for e in got] == [ESL_DISCONNECTED, ESL_RECONNECTED])
    assert got[0]["Reason"].startswith("protocol error")
    switch.api["status"] = "UP\n"
    assert client.api("status") == "UP\n"


class _BoomParser(EslParser):
    """A parser with a bug: anything containing BOOM raises what no one expects."""

    def feed(self, data: bytes):
        if b"BOOM" in data:
            raise RuntimeError("parser bug")
        return super().feed(data)


def test_a_reader_that_crashes_reconnects(switch, client_for, monkeypatch):
    monkeypatch.setattr(client_module, "EslParser", _BoomParser)
    client = client_for()
    got = []
    client.route(CALL, got.append)
    switch.conns[-1].sendall(b"BOOM")
    wait_until(lambda: len(switch.commands) == 2 and client.ready)
    wait_until(lambda: len(got) == 2)
    assert got[0].name == ESL_DISCONNECTED and "reader crashed: RuntimeError: parser bug" in got[0]["Reason"]
    switch.api["status"] = "UP\n"
    assert client.api("status") == "UP\n"


def test_a_reader_that_is_killed_reconnects(switch, client_for):
    client = client_for()
    client._reader.kill()
    wait_until(lambda: len(switch.commands) == 2 and client.ready)
    switch.api["status"] = "UP\n"
    assert client.api("status") == "UP\n"


def test_a_switch_that_stops_answering_is_dropped_after_stalled_commands(switch, client_for):
    switch.api["hang"] = None  # never answers: every later reply would be taken for this one
    client = client_for({"stalled_commands": 3})
    for attempt in range(2):
        with pytest.raises(EslTimeout):
            client.api("hang", timeout=0.05)
        assert client.ready and len(switch.commands) == 1
    with pytest.raises(EslTimeout):
        client.api("hang", timeout=0.05)
    wait_until(lambda: len(switch.commands) == 2 and client.ready)
    switch.api["status"] = "UP\n"
    assert client.api("status") == "UP\n"
    assert client.matcher.abandoned_waiting == 0


def test_a_late_reply_resets_the_stall_count(switch, client_for):
    switch.api["slow"] = "late\n"
    switch.api_delay["slow"] = 0.15
    switch.api["status"] = "UP\n"
    client = client_for({"stalled_commands": 2})
    for _ in range(3):
        with pytest.raises(EslTimeout):
            client.api("slow", timeout=0.05)
        assert client.api("status", timeout=1) == "UP\n"
    assert len(switch.commands) == 1


def test_dispatch_survives_a_failing_router(switch, client_for, monkeypatch):
    client = client_for()
    got = []
    client.route(CALL, got.append)
    real = client.router.dispatch
    calls = {"n": 0}

    def flaky(event):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("router bug")
        real(event)

    monkeypatch.setattr(client.router, "dispatch", flaky)
    switch.push_event([("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", CALL)])
    switch.push_event([("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", CALL)])
    wait_until(lambda: got)
    assert [e.name for e in got] == ["CHANNEL_HANGUP"]
    gevent.sleep(0.01)
    assert not client._dispatcher.dead
