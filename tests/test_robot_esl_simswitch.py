"""The robot's ESL client against simswitch (asyncio, its own thread) over real TCP: a call, checks, reconnection."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import gevent
import pytest

from callbot.config import EslSettings
from callbot.robot.checks import check_switch
from callbot.robot.esl.client import CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, EslClient
from callbot.resources import demo_calls_dir
from callbot.simswitch import SimSwitchThread
from callbot.robot.esl.commands import (
    break_command, broadcast_command, kill_command, originate_command, parse_show_channels_json,
)

CALLS = demo_calls_dir()
VOICE = CALLS / "long_reply.wav"  # 1.5 s of silence, then 4 s of speech
needs_fixture = pytest.mark.skipif(not VOICE.exists(), reason=f"fixture {VOICE} missing")


def wait_for(events: list, name: str, timeout: float = 10.0):
    with gevent.Timeout(timeout, AssertionError(f"no {name} within {timeout} s; got {[e.name for e in events]}")):
        while True:
            found = [e for e in events if e.name == name]
            if found:
                return found[0]
            gevent.sleep(0.005)


@pytest.fixture
def sim():
    with SimSwitchThread(speed=10) as s:
        yield s


@pytest.fixture
def client(sim):
    c = EslClient(EslSettings(port=sim.esl_port, password="ClueCon", command_timeout_s=5.0,
                              reconnect_min_s=0.05, reconnect_max_s=0.2))
    c.connect()
    yield c
    c.stop()


def dial(client: EslClient) -> tuple[str, list]:
    call, events = str(uuid.uuid4()), []
    client.route(call, events.append)
    _, result = client.bgapi_async(originate_command(call, f"fixture/{VOICE.name}", {"ignore_early_media": True}))
    assert result.get(timeout=10) == f"+OK {call}\n"
    return call, events


@needs_fixture
def test_call_play_break_and_hangup_against_simswitch(client):
    assert check_switch(client)[0].ok
    call, events = dial(client)
    assert wait_for(events, "CHANNEL_ANSWER").unique_id == call
    assert call in parse_show_channels_json(client.api("show channels as json"))
    assert client.api(broadcast_command(call, str(VOICE))) == "+OK Message sent\n"
    wait_for(events, "PLAYBACK_START")
    assert client.api(break_command(call)) == "+OK\n"
    stop = wait_for(events, "PLAYBACK_STOP")
    assert stop["Playback-Status"] == "break" and int(stop["variable_playback_ms"]) > 0
    assert client.api(kill_command(call)) == "+OK\n"
    assert wait_for(events, "CHANNEL_HANGUP")["Hangup-Cause"] == "NORMAL_CLEARING"
    assert all(e.unique_id == call for e in events)


def test_failed_originate_is_a_job_result(client):
    call = str(uuid.uuid4())
    assert client.bgapi(originate_command(call, "error/user_busy"), timeout=5) == "-ERR USER_BUSY\n"


@needs_fixture
def test_switch_drops_mid_call_then_reconcile_tells_each_call(sim, client):
    alive, alive_events = dial(client)
    ended, ended_events = dial(client)
    wait_for(alive_events, "CHANNEL_ANSWER")
    wait_for(ended_events, "CHANNEL_ANSWER")

    def drop_and_hang_up() -> None:  # in the switch's loop: no event of the hangup reaches us
        for conn in list(sim.switch.connections):
            conn.close()
        sim.switch.live[ended].hangup("NORMAL_CLEARING", "callee")

    sim.call(drop_and_hang_up)
    assert wait_for(ended_events, CHANNEL_GONE)["Reason"].startswith("not in `show channels`")
    wait_for(alive_events, ESL_RECONNECTED)
    assert [e.name for e in alive_events][-2:] == [ESL_DISCONNECTED, ESL_RECONNECTED]
    assert "CHANNEL_HANGUP" not in [e.name for e in ended_events]
    assert client.api(kill_command(alive)) == "+OK\n"  # the surviving call is still controllable
    wait_for(alive_events, "CHANNEL_HANGUP")


def test_check_command_passes_against_simswitch_and_the_real_audio_server(sim):
    """`callbot check --json`: simswitch answers as FreeSWITCH would, the audio server serves /healthz."""
    from click.testing import CliRunner

    from callbot.audio_server.server import AudioServer
    from callbot.app.cli import main
    from callbot.config import Settings
    from callbot.loop_thread import LoopThread

    loop = LoopThread("audio-server-test").start()
    server = AudioServer(Settings())

    async def start() -> int:
        await server.start("127.0.0.1", 0)
        return server.port

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    try:
        port = loop.run(start())
        args = ["check", "--json", "--esl-port", str(sim.esl_port), "--audio-url", f"ws://127.0.0.1:{port}"]
        ok = CliRunner().invoke(main, args, env={"CALLBOT_ESL_PASSWORD": "ClueCon"})
        bad = CliRunner().invoke(main, args, env={"CALLBOT_ESL_PASSWORD": "wrong"})
    finally:
        loop.run(stop())
        loop.stop()
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == [
        "esl_reachable", "esl_password", "mod_audio_stream", "audio_server"]
    assert bad.exit_code == 1 and json.loads(bad.stdout)["checks"][1]["name"] == "esl_password"
