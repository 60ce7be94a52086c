"""Replays of real FreeSWITCH mod_audio_stream captures (conformance/*.ws1.*) through the audio server."""

from __future__ import annotations

import asyncio
import json

import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from callbot.events import AudioEvent, BargeIn, SpeechShort, SpeechStarted, SpeechStopped, parse_event
from callbot.audio_server.stream_client import stream_url

from audio_testkit import running, server_settings, until_closed

from tests.shared_paths import CONFORMANCE
CAPTURES = ["02_call_mono16k", "03f_call_mono16k_buffer100ms", "03c_call_mono8k"]


def _capture(name: str) -> tuple[list[tuple[str, str | bytes]], int]:
    """The messages the module sent, in order and at their recorded sizes, and the stream rate."""
    records = [json.loads(line) for line in (CONFORMANCE / f"{name}.ws1.jsonl").read_text().splitlines()]
    pcm, rate = sf.read(str(CONFORMANCE / f"{name}.ws1.wav"), dtype="int16")
    data, at, messages = pcm.astype("<i2").tobytes(), 0, []
    for rec in records[1:]:
        if rec.get("dir", "rx") == "rx" and rec.get("type") == "text":
            messages.append(("text", rec["data"]))
        elif rec.get("dir", "rx") == "rx" and rec.get("type") == "binary":
            messages.append(("binary", data[at:at + rec["len"]]))
            at += rec["len"]
    assert at == len(data)
    return messages, rate


def _replay(name: str) -> list[AudioEvent]:
    messages, rate = _capture(name)

    async def scenario() -> list[AudioEvent]:
        async with running(server_settings()) as (_server, base):
            async with connect(stream_url(base, rate=rate)) as ws:
                for _kind, payload in messages:
                    await ws.send(payload)
                result = await until_closed(ws)
        return [parse_event(text)[1] for text in result.texts]

    return asyncio.run(scenario())


def _well_formed(events: list[AudioEvent]) -> None:
    """Starts and ends alternate; a barge-in sits inside its segment, 1.5 s after its onset."""
    open_onset = None
    for e in events[:-1]:  # the last is the idle-timeout error
        if e.type in ("amd", "beep"):  # AMD and beep stages run beside the segmenter
            continue
        if isinstance(e, SpeechStarted):
            assert open_onset is None
            open_onset = e.t
        elif isinstance(e, BargeIn):
            assert open_onset is not None and e.onset_s >= open_onset and e.t == pytest.approx(e.onset_s + 1.5)
        else:
            assert isinstance(e, (SpeechShort, SpeechStopped)) and open_onset is not None and e.t > open_onset
            open_onset = None
    assert events[-1].type == "error" and events[-1].code == "idle_timeout"


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason=f"{CONFORMANCE} (the shared captures) is not on this machine")
def test_real_switch_audio_gives_the_same_decisions_whatever_the_message_size() -> None:
    mono20ms, mono100ms, mono8k = (_replay(name) for name in CAPTURES)
    for events in (mono20ms, mono100ms, mono8k):
        _well_formed(events)
        assert any(isinstance(e, BargeIn) for e in events)  # callee.wav is 14 s of continuous espeak-ng speech
    # 02 (640 B messages) and 03f (3200 B, STREAM_BUFFER_SIZE=100) carry the same callee audio (03f is
    # 40 ms shorter, so only the final idle-timeout error differs, in its stream time).
    assert mono20ms[:-1] == mono100ms[:-1]
