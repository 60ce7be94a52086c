"""Calls on simswitch over real ESL and a real WebSocket server: media, prompts, stream events, truth."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid as uuidlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callbot.simswitch import SimSwitch
from callbot.simswitch.media.wavs import load_pcm
from simswitch_testkit import FIXTURES, RawEsl, RecordingWsServer, named

SPEED = 20.0
VOICE = FIXTURES / "long_reply.wav"
pytestmark = pytest.mark.skipif(not VOICE.exists(), reason=f"fixture {VOICE} missing")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def prompt(tmp_path: Path) -> Path:
    """A 0.5 s, 8 kHz tone: the robot's prompt."""
    t = np.arange(4000) / 8000
    path = tmp_path / "prompt.wav"
    sf.write(path, (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), 8000, subtype="PCM_16")
    return path


async def dial(c: RawEsl, fixture: str = "long_reply", vars_: str = "") -> str:
    """A call to a fixture, once parked (a uuid_broadcast sent earlier is lost, as on the real switch)."""
    return await c.call(f"fixture/{fixture}", "ignore_early_media=true" + (f",{vars_}" if vars_ else ""))


async def session(speed: float = SPEED):
    sw = SimSwitch(speed=speed)
    await sw.start()
    return sw, await RawEsl.listening(sw.esl_port)


def test_mono16k_stream_prompt_break_and_truth():
    prompt = FIXTURES / "long_reply_8k.wav"  # 8 s: still playing when the break comes, even on a busy machine

    async def go():
        sw, c = await session()
        async with RecordingWsServer() as ws:
            uuid = await dial(c)
            url = ws.url(f"/stream/{uuid}?rate=16000")
            assert await c.api(f"uuid_audio_stream {uuid} start {url} mono 16k {{\"call_id\": \"{uuid}\"}}") == "+OK Success\n"
            bug = await c.wait_event(named("MEDIA_BUG_START", uuid))
            assert bug["Media-Bug-Function"] == "audio_stream" and bug["Media-Bug-Target"] == "N/A"
            assert (await c.wait_event(named("mod_audio_stream::connect", uuid))).body == '{"status":"connected"}'
            rec = await ws.first()
            assert [n for n, _ in rec.request_headers] == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key",
                                                            "Sec-WebSocket-Version", "Origin"]
            assert rec.path == f"/stream/{uuid}?rate=16000"
            await rec.conn.send('{"type": "transcript", "text": "hello"}')
            ev = await c.wait_event(named("mod_audio_stream::json", uuid))
            assert ev.body == '{"type": "transcript", "text": "hello"}' and ev["Unique-ID"] == uuid
            assert await c.api(f"uuid_broadcast {uuid} {prompt} aleg") == "+OK Message sent\n"
            assert await c.api(f"uuid_broadcast {uuid} {prompt} aleg") == "+OK Message sent\n"
            await c.wait_event(named("PLAYBACK_START", uuid))
            await asyncio.sleep(0.2 / SPEED)
            assert await c.api(f"uuid_break {uuid} all") == "+OK\n"
            stop = await c.wait_event(named("PLAYBACK_STOP", uuid))
            assert stop["Playback-Status"] == "break" and stop["Playback-File-Path"] == str(prompt)
            done = await c.wait_event(named("CHANNEL_EXECUTE_COMPLETE", uuid))
            assert done["Application-Response"] == "FILE PLAYED" and done["Application"] == "playback"
            await asyncio.sleep(1.0 / SPEED)
            assert await c.api(f"uuid_audio_stream {uuid} stop") == "+OK Success\n"
            await c.wait_event(named("MEDIA_BUG_STOP", uuid))
            assert await c.api(f"uuid_kill {uuid}") == "+OK\n"
            hup = await c.wait_event(named("CHANNEL_HANGUP_COMPLETE", uuid))
            assert hup["Hangup-Cause"] == "NORMAL_CLEARING"
            await asyncio.wait_for(rec.closed.wait(), 5)
            assert rec.close == (1000, "Normal closure")
            assert not [e for e in c.events if e.key == "mod_audio_stream::disconnect"]
            truth = sw.truth(uuid)
            (p,) = truth.prompts()  # the second broadcast was flushed by `all`
            assert stop_ms(stop) == 2048  # the file read-ahead, as FreeSWITCH reports it
            assert p["status"] == "break" and 0 < p["played_ms"] < 2048  # the truth: what was heard
            (brk,) = truth.breaks()
            assert 0 < p["stopped_s"] - brk <= 0.02 + 1e-6  # PLAYBACK_STOP on the next media frame
            (text,) = truth.of_kind("stream_text")
            assert 0 <= text["delivered_t"] - text["arrived_t"] <= 0.02 + 1e-6
            # the stream carries exactly the callee's voice from stream_start_s on, in 640-byte frames
            assert rec.texts[0] == f'{{"call_id": "{uuid}"}}'
            frames = [m for _, m in rec.messages if isinstance(m, bytes)]
            assert frames and all(len(f) == 640 for f in frames)
            got = np.frombuffer(rec.audio, "<i2")
            k0 = round(truth.stream_start_s / 0.02)
            want = load_pcm(VOICE, 16000)[k0 * 320:k0 * 320 + len(got)]
            assert np.array_equal(got[:len(want)], want)
        await c.close()
        await sw.stop()
    run(go())


def stop_ms(ev) -> int:
    return int(ev["variable_playback_ms"])


def test_prompt_plays_to_done_with_duration(prompt):
    async def go():
        sw, c = await session()
        uuid = str(uuidlib.uuid4())
        await c.command(f"bgapi originate {{origination_uuid={uuid}}}fixture/long_reply &park()")
        answer = await c.wait_event(named("CHANNEL_ANSWER", uuid))
        await c.wait_event(named("CHANNEL_PARK", uuid))
        await c.api(f"uuid_broadcast {uuid} {prompt}")
        await c.api(f"uuid_broadcast {uuid} /no/such/file.wav")
        stop = await c.wait_event(named("PLAYBACK_STOP", uuid))
        assert stop["Playback-Status"] == "done" and stop_ms(stop) == 500
        missing = await c.wait_event(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE"
                                     and e.get("Application-Response") == "FILE NOT FOUND")
        assert missing["Application-Data"] == "/no/such/file.wav"
        (p,) = sw.truth(uuid).prompts()
        assert abs((p["stopped_s"] - p["started_s"]) - 0.5) < 1e-6
        # timestamps are on the virtual clock: their differences are call times at any speed
        stamp = int(stop["Event-Date-Timestamp"]) - int(answer["Event-Date-Timestamp"])
        assert stamp == round(p["stopped_s"] * 1_000_000)
        assert answer["Caller-Channel-Answered-Time"] == answer["Event-Date-Timestamp"]
        await sw.stop()
    run(go())


def test_stereo_carries_audio_only_while_playing_and_buffer_size(prompt):
    async def go():
        sw, c = await session()
        async with RecordingWsServer() as ws:
            uuid = await dial(c, vars_="STREAM_BUFFER_SIZE=100")
            await c.api(f"uuid_audio_stream {uuid} start {ws.url('/s')} stereo 16k")
            rec = await ws.first()
            await c.wait_event(named("mod_audio_stream::connect", uuid))
            await asyncio.sleep(0.5 / SPEED)
            assert rec.audio == b""  # nothing is written to a parked channel: no frames at all
            await c.api(f"uuid_broadcast {uuid} {prompt}")
            await c.wait_event(named("PLAYBACK_STOP", uuid))
            await asyncio.sleep(0.1 / SPEED)
            frames = [m for _, m in rec.messages if isinstance(m, bytes)]
            assert [len(f) for f in frames] == [6400] * 5  # 100 ms of stereo 16k per message, 0.5 s in all
            pcm = np.frombuffer(rec.audio, "<i2").reshape(-1, 2)
            assert np.array_equal(pcm[:, 1], load_pcm(prompt, 16000)[:len(pcm)])  # R = the robot
            truth = sw.truth(uuid)
            k0 = round(truth.stream_start_s / 0.02)  # L = the callee, from when the bug was attached
            assert np.array_equal(pcm[:, 0], load_pcm(VOICE, 16000)[k0 * 320:k0 * 320 + len(pcm)])
            await c.api(f"uuid_kill {uuid}")
            await asyncio.wait_for(rec.closed.wait(), 5)
            assert rec.close == (1000, "Normal closure")
        await sw.stop()
    run(go())


def test_server_close_gives_disconnect_and_bug_stays(prompt):
    async def go():
        sw, c = await session()
        async def bye(rec):
            await asyncio.sleep(0.05)
            await rec.conn.close(1000, "server done")
        async with RecordingWsServer(on_open=bye) as ws:
            uuid = await dial(c)
            await c.api(f"uuid_audio_stream {uuid} start {ws.url('/x')} mono 8k")
            ev = await c.wait_event(named("mod_audio_stream::disconnect", uuid))
            assert ev.body == '{"status":"disconnected","message":{"code":1000,"reason":"server done"}}'
            assert await c.api(f"uuid_audio_stream {uuid} start {ws.url('/x')} mono 8k") == "-ERR Operation Failed\n"
            assert await c.api(f"uuid_audio_stream {uuid} stop") == "+OK Success\n"
            await c.wait_event(named("MEDIA_BUG_STOP", uuid))
            frames = [m for _, m in ws.records[0].messages if isinstance(m, bytes)]
            assert frames and all(len(f) == 320 for f in frames)
        await sw.stop()
    run(go())


def test_connect_refused_gives_error_and_closes_bug():
    async def go():
        sw, c = await session()
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        uuid = await dial(c)
        assert await c.api(f"uuid_audio_stream {uuid} start ws://127.0.0.1:{port}/x mono 16k") == "+OK Success\n"
        ev = await c.wait_event(named("mod_audio_stream::error", uuid))
        assert ev.body == '{"status":"error","message":{"code":6,"error":"Connection refused (system error 111)"}}'
        await c.wait_event(named("MEDIA_BUG_STOP", uuid))
        assert await c.api(f"uuid_audio_stream {uuid} stop") == "-ERR Operation Failed\n"
        await sw.stop()
    run(go())


def test_send_text_quoting_stream_audio_and_stop_text():
    async def go():
        sw, c = await session()
        audio = base64.b64encode(b"\x01\x02" * 80).decode()
        async def talk(rec):
            await rec.conn.send(json.dumps({"type": "streamAudio", "data": {"audioDataType": "raw",
                                                                              "sampleRate": 8000, "audioData": audio}}))
        async with RecordingWsServer(on_open=talk) as ws:
            uuid = await dial(c)
            await c.api(f"uuid_audio_stream {uuid} start {ws.url('/x')} mono 16k")
            play = await c.wait_event(named("mod_audio_stream::play", uuid))
            body = json.loads(play.body)
            assert body == {"audioDataType": "raw", "sampleRate": 8000, "file": body["file"]}
            assert body["file"].endswith(f"{uuid}_0.tmp.r8") and Path(body["file"]).read_bytes() == b"\x01\x02" * 80
            assert await c.api(f'uuid_audio_stream {uuid} send_text {{"type": "robot_text", "n": 2}}') == "+OK Success\n"
            assert await c.api(f"uuid_audio_stream {uuid} send_text '{{\"n\": 3, \"s\": \"a b\"}}'") == "+OK Success\n"
            assert await c.api(f"uuid_audio_stream {uuid} send_text") == "-ERR no reply\n"
            assert await c.api(f"uuid_audio_stream {uuid} pause") == "+OK Success\n"
            n_paused = len(ws.records[0].audio)
            await asyncio.sleep(0.3 / SPEED)
            assert len(ws.records[0].audio) == n_paused  # no frames, not even silence, while paused
            assert await c.api(f"uuid_audio_stream {uuid} resume") == "+OK Success\n"
            assert await c.api(f'uuid_audio_stream {uuid} stop {{"final": true}}') == "+OK Success\n"
            rec = ws.records[0]
            await asyncio.wait_for(rec.closed.wait(), 5)
            assert rec.texts == ['{"type":', '{"n": 3, "s": "a b"}', '{"final":']
            assert not os.path.exists(body["file"])  # temp files go at stop
            assert [e["kind"] for e in sw.truth(uuid).entries if e["kind"].startswith("stream_p")] == ["stream_paused"]
        await sw.stop()
    run(go())


def test_originate_failures_and_callee_hangup():
    async def go():
        sw, c = await session()
        for dial_string, body in [("error/user_busy", "-ERR USER_BUSY\n"), ("error/no_answer", "-ERR NO_ANSWER\n"),
                                  ("{originate_timeout=1,sim_answer=false}fixture/short_yes", "-ERR NO_ANSWER\n"),
                                  ("{sim_reject=CALL_REJECTED}fixture/short_yes", "-ERR CALL_REJECTED\n"),
                                  ("sofia/gateway/gw/123", "-ERR CHAN_NOT_IMPLEMENTED\n")]:
            await c.command(f"bgapi originate {dial_string} &park()")
            job = await c.wait_event(named("BACKGROUND_JOB"), timeout=20)
            assert job.body == body, dial_string
        busy_events = [e for e in c.events if e.name.startswith("CHANNEL_") and "user_busy" in (e.get("Channel-Name") or "")]
        assert busy_events == []  # error/ endpoints create no channel
        uuid = await dial(c, "short_yes", "sim_hangup_after_s=1.5")
        assert json.loads(await c.api("show channels as json"))["row_count"] == 1
        assert await c.api(f"uuid_getvar {uuid} sim_hangup_after_s") == "1.5"
        hup = await c.wait_event(named("CHANNEL_HANGUP", uuid))
        assert hup["Hangup-Cause"] == "NORMAL_CLEARING"
        (h,) = sw.truth(uuid).of_kind("hangup")
        assert h["who"] == "callee" and h["t"] == 1.5
        assert await c.api(f"uuid_exists {uuid}") == "false"
        await sw.stop()
    run(go())


def test_handshake_timeout_and_abnormal_eof_errors():
    """A server that never answers the upgrade → error 10 "Timeout"; one that drops TCP after it → error 1."""
    async def go():
        from callbot.config import SimSwitchSettings

        async def silent(reader, writer):
            while await reader.read(65536):  # never answers; ends when the client gives up
                pass

        async def drop_after_upgrade(reader, writer):
            import hashlib
            request = await reader.readuntil(b"\r\n\r\n")
            key = next(l.split(b":", 1)[1].strip() for l in request.split(b"\r\n") if l.startswith(b"Sec-WebSocket-Key:"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            await asyncio.sleep(0.05)
            writer.write_eof()  # TCP FIN, no WebSocket Close (then read on, so the kernel sends no RST)
            while await reader.read(65536):
                pass

        sw = SimSwitch(SimSwitchSettings(esl_port=0, speed=SPEED, ws_handshake_timeout_s=0.2))
        await sw.start()
        c = await RawEsl.connect(sw.esl_port)
        await c.command("event plain ALL")
        s1 = await asyncio.start_server(silent, "127.0.0.1", 0)
        s2 = await asyncio.start_server(drop_after_upgrade, "127.0.0.1", 0)
        dialled = []
        for server, code, message in [(s1, 10, "Timeout"),
                                      (s2, 1, "Connection closed without WebSocket CLOSE (abnormal EOF)")]:
            uuid = await dial(c)
            dialled.append(uuid)
            port = server.sockets[0].getsockname()[1]
            await c.api(f"uuid_audio_stream {uuid} start ws://127.0.0.1:{port}/x mono 16k")
            ev = await c.wait_event(named("mod_audio_stream::error", uuid))
            assert json.loads(ev.body) == {"status": "error", "message": {"code": code, "error": message}}
            await c.wait_event(named("MEDIA_BUG_STOP", uuid))
            assert await c.api(f"uuid_audio_stream {uuid} stop") == "-ERR Operation Failed\n"
        assert await c.api("hupall") == "+OK hangup all channels with cause MANAGER_REQUEST\n"
        for uuid in dialled:  # a leg leaves `show channels` when it is destroyed, a tick after its hangup
            await c.wait_event(named("CHANNEL_DESTROY", uuid))
        assert await c.api("show channels") == "\n0 total.\n"
        for server in (s1, s2):
            server.close()
        await sw.stop()
    run(go())


def test_extra_headers_and_heartbeat_from_channel_variables():
    async def go():
        sw, c = await session(speed=1.0)
        async with RecordingWsServer() as ws:
            uuid = await dial(c, "short_yes", "STREAM_HEART_BEAT=1,STREAM_EXTRA_HEADERS='{\"X-Call\":\"abc\"}'")
            await c.api(f"uuid_audio_stream {uuid} start {ws.url('/x')} mono 8k")
            rec = await ws.first()
            assert rec.request_headers[-1] == ("X-Call", "abc")
            pong = await asyncio.wait_for(rec.conn.ping(b"srv"), 5)  # the server's pings are answered
            await asyncio.wait_for(pong, 5)
            await asyncio.sleep(1.1)  # STREAM_HEART_BEAT=1: one ping a second (wall, like libwsc's timer)
            assert sw.calls[uuid].stream.client.pings_sent >= 1
            assert rec.conn.protocol.state.name == "OPEN" and not rec.closed.is_set()
        await sw.stop()
    run(go())
