"""Transcripts through the real audio server: WebSocket in, partials and finals back, barge-in unaffected."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from callbot.events import BargeIn, Final, Partial, parse_event
from callbot.audio_server.server import AudioServer
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url
from callbot.config import Settings
from callbot.stream import PlaybackMarker
from tests.stt_model import shared_engine
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()

pytestmark = pytest.mark.slow  # the real Whisper model behind a real server


def _stream(name: str, texts=(), speed: float = 4.0):
    """Stream one fixture through an AudioServer that shares the test session's model."""
    settings = Settings().replace(**{"audio_server.idle_timeout_s": 3.0})
    samples, rate = read_wav(FIXTURES / f"{name}.wav")
    # Two seconds of line noise after the reply, so the segment closes and its final comes back.
    tail = (samples[:rate * 2] * 0).astype(samples.dtype)

    async def scenario():
        server = AudioServer(settings, engine=shared_engine())
        await server.start(host="127.0.0.1", port=0)
        try:
            url = stream_url(f"ws://127.0.0.1:{server.port}", rate=rate)
            return await stream_pcm(url, np.concatenate([samples, tail]), rate, speed=speed,
                                    texts=texts, linger_s=10.0)
        finally:
            server.close()
            await server.wait_closed()

    result = asyncio.run(scenario())
    return [parse_event(text)[1] for text in result.texts]


def test_long_reply_gets_partials_then_a_final_with_its_key_words() -> None:
    sidecar = json.loads((FIXTURES / "long_reply.json").read_text())
    # the robot's playback marker: its words become the decoder's context (DESIGN section 2)
    marker = PlaybackMarker.start("en/16000/greeting.wav", "Hello, this is a short survey call. Is now a good time?")
    events = _stream("long_reply", texts=[(0.0, marker.to_json())])
    finals = [e for e in events if isinstance(e, Final)]
    partials = [e for e in events if isinstance(e, Partial)]
    assert len(finals) == 1, events
    text = finals[0].text.lower()
    for word in sidecar["expect"]["contains"]:
        assert word.lower() in text, (word, text)
    assert partials, "no partial before the final"
    assert events.index(partials[0]) < events.index(finals[0])
    # The barge-in still fires at onset + 1.5 s of stream time, transcripts notwithstanding.
    (barge,) = [e for e in events if isinstance(e, BargeIn)]
    assert abs(barge.onset_s - sidecar["speech"][0][0]) < 0.06
    assert abs(barge.t - (barge.onset_s + 1.5)) < 0.021


def test_silence_gives_no_transcript() -> None:
    events = _stream("silence", speed=8.0)
    assert not [e for e in events if isinstance(e, (Partial, Final))]
