"""The real audio server driven by simswitch makes the same barge-in decisions at --speed 20 as in real time.

Decisions are made on stream time, and the emulator's audio is paced by its (virtual) media tick,
so every speech and barge-in event (type, stream time, fields) must be identical at both speeds. The stream is
attached while the call rings, so its sample 0 is call time 0 at both speeds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid as uuidlib

from callbot.audio_server import server as server_mod
from callbot.config import Settings
from callbot.simswitch import SimSwitch
from simswitch_testkit import FIXTURES, RawEsl, named

VOICE = FIXTURES / "long_reply.wav"  # speech 1.51–5.72 s: a barge-in is due near 3.0 s
PROMPT = FIXTURES / "long_reply_8k.wav"  # 8 s: long enough to be interrupted
DECISIONS = {"speech_started", "speech_short", "barge_in", "speech_stopped", "stream_gap"}


async def call_once(speed: float) -> dict:
    """One call: stream to the audio server, play a prompt, break it on barge_in; what happened."""
    settings = Settings()  # audio 20x ahead of real time is this test's point, not a client to refuse
    settings = dataclasses.replace(settings, audio_server=dataclasses.replace(settings.audio_server, max_speed=50.0))
    audio = server_mod.AudioServer(settings)
    await audio.start("127.0.0.1", 0)
    sw = SimSwitch(speed=speed)
    await sw.start()
    try:
        c = await RawEsl.connect(sw.esl_port)
        await c.command("event plain CHANNEL_CREATE CHANNEL_PARK PLAYBACK_START PLAYBACK_STOP "
                        "CUSTOM mod_audio_stream::json mod_audio_stream::connect")
        uuid = str(uuidlib.uuid4())
        await c.command(f"bgapi originate {{origination_uuid={uuid},sim_answer_delay_ms=400}}fixture/long_reply &park()")
        await c.wait_event(named("CHANNEL_CREATE", uuid))
        url = f"ws://127.0.0.1:{audio.port}/stream/{uuid}?rate=16000"
        assert await c.api(f"uuid_audio_stream {uuid} start {url} mono 16k") == "+OK Success\n"
        await c.wait_event(named("CHANNEL_PARK", uuid))  # a broadcast sent before it is lost
        assert await c.api(f"uuid_broadcast {uuid} {PROMPT}") == "+OK Message sent\n"
        events = []
        while True:
            ev = await c.wait_event(named("mod_audio_stream::json", uuid), timeout=30)
            data = json.loads(ev.body)
            events.append({k: v for k, v in data.items() if k != "call"})
            if data["type"] == "barge_in":
                assert await c.api(f"uuid_break {uuid} all") == "+OK\n"
            if data["type"] in ("speech_stopped", "speech_short"):
                break
        await c.wait_event(named("PLAYBACK_STOP", uuid))
        await c.api(f"uuid_kill {uuid}")
        truth = sw.truth(uuid)
        return {"events": events, "stream_start_s": truth.stream_start_s, "prompts": truth.prompts(),
                "breaks": truth.breaks()}
    finally:
        await sw.stop()
        audio.close()
        await audio.wait_closed()


def test_same_barge_in_decisions_at_speed_20_and_real_time():
    fast = asyncio.run(asyncio.wait_for(call_once(20.0), 60))
    real = asyncio.run(asyncio.wait_for(call_once(1.0), 60))
    assert fast["stream_start_s"] == real["stream_start_s"] == 0.0
    # Speech and barge-in decisions depend on stream time only. (STT partials may legitimately be
    # dropped or merged under load, and AMD may use transcript hints, so those are not compared.)
    decisions = [e for e in real["events"] if e["type"] in DECISIONS]
    assert [e for e in fast["events"] if e["type"] in DECISIONS] == decisions
    assert {e["type"] for e in decisions} >= {"speech_started", "barge_in"}
    barge = [e for e in real["events"] if e["type"] == "barge_in"]
    assert len(barge) == 1 and 1.3 < barge[0]["onset_s"] < 1.8  # the fixture's speech starts at 1.51 s
    for run in (fast, real):
        (p,) = run["prompts"]
        assert p["status"] == "break"
        (brk,) = run["breaks"]
        assert brk >= barge[0]["t"]  # the switch never hears the break before the audio that caused it
        assert 0 < p["stopped_s"] - brk <= 0.02 + 1e-6
