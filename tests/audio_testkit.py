"""Shared helpers of the audio-server tests: a server on a free port, sidecar checks, small clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from callbot.events import BargeIn, SpeechShort, SpeechStarted, SpeechStopped, parse_event
from callbot.audio_server.server import AudioServer
from callbot.audio_server.stream_client import StreamResult, read_wav, stream_pcm, stream_url
from callbot.config import Settings
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()
WAVS = sorted(FIXTURES.glob("*.wav"))
TOLERANCE_S = 0.06
MIN_SPEECH_S, BRIDGE_S = 1.5, 0.3


def server_settings(**overrides: object) -> Settings:
    # A short idle timeout ends each stream soon after its last message, with every event delivered.
    # No Whisper model here: these tests are about barge-in; tests/test_stt_server.py covers transcripts.
    # They stream as fast as the socket takes it, so the rate cap is lifted (tests/test_audio_limits.py tests it).
    return Settings().replace(**{"audio_server.idle_timeout_s": 0.6, "stt.enabled": False,
                                 "audio_server.max_speed": 1000, "audio_server.replay_max_speed": 1000, **overrides})


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[AudioServer, str]]:
    server = AudioServer(settings)
    await server.start(host="127.0.0.1", port=0)
    try:
        yield server, f"ws://127.0.0.1:{server.port}"
    finally:
        server.close()
        await server.wait_closed()


def utterances(spans: list[list[float]], bridge_s: float = BRIDGE_S) -> list[tuple[float, float]]:
    """Sidecar speech spans merged across gaps the detector bridges: the utterances it should see."""
    out: list[tuple[float, float]] = []
    for start, end in spans:
        if out and start - out[-1][1] <= bridge_s:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def check_against_sidecar(wav: Path, call: str, result: StreamResult) -> None:
    """barge_in exactly where the sidecar expects one, onsets and decision times within 60 ms."""
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    parsed = [parse_event(text) for text in result.texts]
    assert {c for c, _ in parsed} <= {call}, f"{wav.name}: events for another call"
    events = [e for _, e in parsed]
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, (SpeechShort, SpeechStopped))]
    barges = [e for e in events if isinstance(e, BargeIn)]
    truth = utterances(sidecar["speech"])
    expected = [u for u in truth if u[1] - u[0] >= MIN_SPEECH_S]
    assert bool(expected) == sidecar["expect"]["barge_in"], f"{wav.name}: sidecar disagrees with its spans"
    assert len(started) == len(truth) == len(ended), f"{wav.name}: {events}"
    for event, (onset, _end) in zip(started, truth):
        assert abs(event.t - onset) <= TOLERANCE_S, f"{wav.name}: onset {event.t} vs truth {onset}"
    assert len(barges) == len(expected), f"{wav.name}: {barges} vs expected {expected}"
    for event, (onset, _end) in zip(barges, expected):
        assert abs(event.onset_s - onset) <= TOLERANCE_S, f"{wav.name}: barge-in onset {event.onset_s} vs {onset}"
        assert abs(event.t - (onset + MIN_SPEECH_S)) <= TOLERANCE_S, f"{wav.name}: barge-in at {event.t}"
        assert event.duration_ms == pytest.approx(1000 * MIN_SPEECH_S, abs=20)


async def stream_fixture(base: str, wav: Path, chunking: str, speed: float = 0.0, seed: int = 0,
                         query: dict[str, object] | None = None, **kwargs: object) -> tuple[str, StreamResult]:
    """Stream a fixture WAV (``query``: more URL keys, e.g. a token); its call uuid and what came back."""
    samples, rate = read_wav(wav)
    call = str(uuid.uuid4())
    result = await stream_pcm(stream_url(base, call, rate=rate, **(query or {})), samples, rate, chunking=chunking,
                              speed=speed, seed=seed, linger_s=30.0, **kwargs)
    return call, result


async def until_closed(ws: ClientConnection) -> StreamResult:
    """Every text frame until the server closes, and its close code."""
    result = StreamResult()
    with contextlib.suppress(ConnectionClosed):
        while True:
            result.texts.append(str(await ws.recv()))
    result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result


async def healthz(port: int) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = await reader.readexactly(length)
    writer.close()
    return int(head.split()[1]), json.loads(body)
