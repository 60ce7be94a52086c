"""The robot's ESL client over real TCP on 127.0.0.1: real FreeSWITCH bytes, timeouts, jobs, routing, reconnection."""

from __future__ import annotations

import socket
import threading
import uuid

import gevent
import pytest

from callbot.config import EslSettings
from callbot.esl.protocol import parse_event, to_reply, EslParser
from callbot.robot.esl.client import (
    CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, SYNTHETIC_HEADER, EslAuthError, EslClient, EslConnectError,
    EslDisconnected, EslTimeout,
)
from callbot.robot.esl.commands import audio_stream_start_command, broadcast_command, originate_command
from robot_esl_switch import (  # noqa: F401 (switch is a fixture)
    CONFORMANCE, REJECTION, CaptureReplayer, ScriptedSwitch, free_port, show_channels, switch,
)

CALL = "b674cdff-5ccf-44a8-9a23-6117a9f3fc3c"  # the call in 02_call_mono16k
needs_captures = pytest.mark.skipif(not (CONFORMANCE / "02_call_mono16k.rx.bin").exists(),
                                    reason=f"no conformance captures at {CONFORMANCE}")


def esl(port: int, **kw) -> EslSettings:
    base = dict(host="127.0.0.1", port=port, password="ClueCon", command_timeout_s=2.0,
                connect_timeout_s=2.0, reconnect_min_s=0.05, reconnect_max_s=0.2)
    return EslSettings(**{**base, **kw})


def wait_until(predicate, timeout: float = 3.0) -> None:
    with gevent.Timeout(timeout, AssertionError(f"condition not met within {timeout} s")):
        while not predicate():
            gevent.sleep(0.005)


@pytest.fixture
def client_for(switch):
    """``client_for(**settings)`` connects an EslClient to the switch; ``options=`` go to its constructor."""
    made = []

    def make(options: dict | None = None, **kw) -> EslClient:
        c = EslClient(esl(switch.port, **kw), **(options or {}))
        c.connect()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@needs_captures
def test_real_call_capture_bodies_routing_and_replies():
    """02_call_mono16k's bytes through the client: every A-leg event reaches the call, bodies verbatim."""
    server = CaptureReplayer("02_call_mono16k").start()
    client = EslClient(esl(server.port, filter_by_call=False))
    try:
        client.connect()
        routed, others = [], []
        client.route(CALL, routed.append)
        client.register_handle("*", others.append)
        _, result = client.bgapi_async(originate_command(CALL, "loopback/callee/default",
                                                           {"ignore_early_media": True}, stream_variables=False))
        assert result.get(timeout=3) == f"+OK {CALL}\n"
        url = f"ws://127.0.0.1:8090/stream/{CALL}"
        assert client.api(audio_stream_start_command(CALL, url, metadata={"call_id": CALL})) == "+OK Success\n"
        assert client.api(broadcast_command(CALL, "/srv/capture/audio/prompt.wav")) == "+OK Message sent\n"
        assert client.api(f"uuid_break {CALL}") == "+OK\n"
        assert client.api(f"uuid_audio_stream {CALL} stop") == "+OK Success\n"
        assert client.api(f"uuid_kill {CALL}") == "+OK\n"
        expected = [e for e in _capture_events() if e.unique_id == CALL]
        wait_until(lambda: len(routed) == len(expected))
    finally:
        client.stop()
        server.stop()
    assert server.received[2].startswith("bgapi originate {origination_uuid=" + CALL)
    assert [e.key for e in routed] == [e.key for e in expected]
    by_key = {e.key: e for e in routed}
    assert by_key["mod_audio_stream::connect"].body == '{"status":"connected"}'
    assert by_key["mod_audio_stream::json"].body == '{"type": "transcript", "text": "hello from server", "final": true}'
    stops = [e for e in routed if e.name == "PLAYBACK_STOP"]
    assert stops[0]["Playback-Status"] == "break" and stops[0]["variable_playback_ms"] == "2048"
    assert stops[0]["Playback-File-Path"] == "/srv/capture/audio/prompt.wav"
    assert others and all(e.unique_id != CALL for e in others)  # B leg, API events: the catch-all
    assert not any(e.get(SYNTHETIC_HEADER) for e in routed)


def _capture_events():
    parser = EslParser()
    data = (CONFORMANCE / "02_call_mono16k.rx.bin").read_bytes()
    replies = [to_reply(m) for m in parser.feed(data)]
    return [parse_event(r) for r in replies if r.content_type.startswith("text/event-")]


def test_wrong_password_is_a_clear_error(switch):
    client = EslClient(esl(switch.port, password="wrong"))
    with pytest.raises(EslAuthError, match="refused the password.*CALLBOT_ESL_PASSWORD"):
        client.connect()
    assert switch.commands[0] == ["auth wrong"]
    assert not client.connected


def test_acl_rejection_names_the_fix(switch):
    switch.greeting = REJECTION
    with pytest.raises(EslConnectError, match="Access Denied, go away.*apply-inbound-acl"):
        EslClient(esl(switch.port)).connect()


def test_missing_password_is_refused_before_connecting():
    with pytest.raises(EslAuthError, match="CALLBOT_ESL_PASSWORD or \\[esl\\].password"):
        EslClient(EslSettings(password=None))


def test_connection_refused_names_the_fix():
    port = free_port()
    with pytest.raises(EslConnectError, match=f"127.0.0.1:{port}: connection refused.*event_socket.conf.xml"):
        EslClient(esl(port)).connect()


def test_subscribes_to_plain_events_with_custom_subclasses_last(switch, client_for):
    client_for()
    sub = switch.commands[0][1]
    assert sub.startswith("event plain CHANNEL_CREATE ") and "myevents" not in sub
    assert sub.split(" CUSTOM ")[1].split() == ["mod_audio_stream::json", "mod_audio_stream::connect",
                                               "mod_audio_stream::disconnect", "mod_audio_stream::error",
                                               "mod_audio_stream::play"]
    assert switch.commands[0][2] == "filter Event-Name BACKGROUND_JOB"


def test_api_timeout_then_late_reply_does_not_shift_later_replies(switch, client_for):
    switch.api["slow"] = "late body\n"
    switch.api_delay["slow"] = 0.4
    switch.api["status"] = "UP 0 years\n"
    client = client_for()
    with pytest.raises(EslTimeout, match="'api slow' got no reply .* within 0.1 s"):
        client.api("slow", timeout=0.1)
    assert client.api("status") == "UP 0 years\n"


def test_command_without_reply_times_out(switch, client_for):
    switch.api["hang"] = None
    client = client_for()
    with pytest.raises(EslTimeout):
        client.api("hang", timeout=0.1)


def test_bgapi_results_are_matched_by_job_uuid_not_order(switch, client_for):
    switch.jobs.update({"first": "+OK one\n", "second": "+OK two\n"})
    switch.job_delay["first"] = 0.2  # the first job finishes last
    client = client_for()
    job1, r1 = client.bgapi_async("first")
    job2, r2 = client.bgapi_async("second")
    assert r2.get(timeout=2) == "+OK two\n" and not r1.ready()
    assert r1.get(timeout=2) == "+OK one\n"
    assert job1 != job2 and str(uuid.UUID(job1)) == job1


def test_bgapi_without_job_event_times_out(switch, client_for):
    switch.jobs["originate"] = None
    client = client_for()
    with pytest.raises(EslTimeout, match="no BACKGROUND_JOB"):
        client.bgapi(originate_command(str(uuid.uuid4()), "loopback/x/default"), timeout=0.1)
    assert client.matcher.jobs_waiting == 0


def test_uuids_and_lines_are_validated_before_sending(switch, client_for):
    client = client_for()
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        client.api("uuid_break 1234 all")
    with pytest.raises(ValueError, match="one non-empty line"):
        client.api("status\napi uuid_kill x")
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        client.route("../etc", lambda e: None)
    assert not any("1234" in c or "status" in c for c in switch.commands[0])


def test_events_routed_by_unique_id_and_a_bad_callback_does_not_stop_dispatch(switch, client_for):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    client = client_for()
    got_a, rest = [], []

    def broken(event):
        raise RuntimeError("callback bug")

    client.route(a, got_a.append)
    client.route(b, broken)
    client.register_handle("*", rest.append)
    assert switch.commands[0][-2:] == [f"filter Unique-ID {a}", f"filter Unique-ID {b}"]
    switch.push_event([("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", b)])
    switch.push_event([("Event-Subclass", "mod_audio_stream::json"), ("Event-Name", "CUSTOM"), ("Unique-ID", a)],
                      '{"type": "barge_in", "t": 1.5}')
    switch.push_event([("Event-Name", "HEARTBEAT")])
    wait_until(lambda: rest)
    assert [e.body for e in got_a] == ['{"type": "barge_in", "t": 1.5}']
    assert [e.name for e in rest] == ["HEARTBEAT"]
    client.unroute(a)
    wait_until(lambda: f"filter delete Unique-ID {a}" in switch.commands[0])


def test_drop_fails_pending_then_reconnects_resubscribes_and_reconciles(switch, client_for):
    gone, alive = str(uuid.uuid4()), str(uuid.uuid4())
    switch.api["hang"] = None
    switch.api["show channels as json"] = show_channels(alive)
    client = client_for()
    seen: dict[str, list] = {gone: [], alive: []}
    reconnected = []
    client.on_reconnect.append(lambda: reconnected.append(True))
    client.route(gone, seen[gone].append)
    client.route(alive, seen[alive].append)
    switch.jobs["originate"] = None  # the job never finishes before the drop
    _, job = client.bgapi_async(originate_command(alive, "loopback/x/default"), timeout=5)
    waiting = gevent.spawn(client.api, "hang", timeout=5)
    gevent.sleep(0.05)
    switch.drop()
    with pytest.raises(EslDisconnected):
        waiting.get(timeout=1)  # failed at once, not after its 5 s timeout
    with pytest.raises(EslDisconnected, match="ESL_RECONNECTED or CHANNEL_GONE"):
        job.get(timeout=1)
    wait_until(lambda: reconnected and len(seen[gone]) == 2 and len(seen[alive]) == 2)
    second = switch.commands[1]
    assert second[0] == "auth ClueCon" and second[1].startswith("event plain ")
    assert {f"filter Unique-ID {gone}", f"filter Unique-ID {alive}"} <= set(second)
    assert second[-1] == "api show channels as json"
    assert [e.name for e in seen[gone]] == [ESL_DISCONNECTED, CHANNEL_GONE]
    assert [e.name for e in seen[alive]] == [ESL_DISCONNECTED, ESL_RECONNECTED]
    assert float(seen[alive][1]["Outage-Seconds"]) > 0
    assert client.api("show channels as json") == show_channels(alive)


def test_reconnect_backs_off_until_the_switch_returns():
    sw = ScriptedSwitch().start()
    port = sw.port
    client = EslClient(esl(port))
    client.connect()
    sw.stop()
    for conn in sw.conns:
        conn.close()
    gevent.sleep(0.4)  # several attempts against a closed port
    assert not client.ready
    with pytest.raises(EslDisconnected, match="not connected"):
        client.api("status")
    back = ScriptedSwitch(port=port).start()
    try:
        wait_until(lambda: client.ready, timeout=3)
        assert back.commands[0][0] == "auth ClueCon"
    finally:
        client.stop()
        back.stop()


def test_client_refuses_use_from_another_thread(switch, client_for):
    client = client_for()
    errors = []
    t = threading.Thread(target=lambda: errors.append(_try(client.api, "status")))
    t.start()
    t.join()
    assert isinstance(errors[0], RuntimeError) and "another OS thread" in str(errors[0])


def _try(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 (returned for the assert)
        return exc
    return None


def test_no_nagle_and_tcp_keepalive_from_settings(switch, client_for):
    client = client_for(keepalive_s=9.0)
    sock = client.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 9
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3


def test_nudges_wake_the_event_socket_and_never_split_a_command(switch, client_for):
    """esl.nudge_ms: lone newlines between commands (FreeSWITCH ignores them), never inside one."""
    client = client_for(nudge_ms=1)
    sent = [f"api status {i}" for i in range(60)]

    def send(lines: list[str]) -> None:
        for line in lines:
            client.api(line.removeprefix("api "))
            gevent.sleep(0.002)

    gevent.joinall([gevent.spawn(send, sent[i::3]) for i in range(3)])
    gevent.sleep(0.02)
    received = bytes(switch.raw[-1])
    assert sorted(line for line in switch.commands[-1] if line.startswith("api status")) == sorted(sent)
    commands = b"".join(f"{line}\n\n".encode() for line in switch.commands[-1])
    assert len(received) > len(commands)  # nudges went out ...
    leftover = received
    for line in switch.commands[-1]:  # ... and taking each whole command out leaves only newlines
        leftover = leftover.replace(f"{line}\n\n".encode(), b"", 1)
    assert leftover and set(leftover) == {ord("\n")}


def test_no_nudges_when_turned_off(switch, client_for):
    client_for(nudge_ms=0)
    gevent.sleep(0.05)
    received = bytes(switch.raw[-1])
    assert received == b"".join(f"{line}\n\n".encode() for line in switch.commands[-1])
