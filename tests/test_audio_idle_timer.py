"""The idle deadline's lazy timer (audio_server.server.IdleTimer): moved by audio, never cutting a message's work,
no leak."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import stream_url
from callbot.events import parse_event
from audio_testkit import running, server_settings, until_closed


class SlowClassifier:
    """Stands in for the shared classifier step: its first run outlasts two idle timeouts."""

    batcher = None

    def __init__(self) -> None:
        self.started = self.finished = 0

    async def next_run(self) -> None:
        self.started += 1
        if self.started == 1:
            await asyncio.sleep(0.7)
        self.finished += 1


def _idle_timers(loop: asyncio.AbstractEventLoop) -> list[asyncio.TimerHandle]:
    scheduled: list[asyncio.TimerHandle] = getattr(loop, "_scheduled")
    return [h for h in scheduled if not h.cancelled() and "on_idle" in getattr(h._callback, "__qualname__", "")]


async def _idle_closed(server: object, loop: asyncio.AbstractEventLoop, ws: object, since: float
                       ) -> tuple[float, list[str], int | None]:
    """Read ``ws`` until the server closes it; seconds from ``since``, its texts and close code, once the
    server has dropped the stream and left no idle timer behind."""
    result = await until_closed(ws)
    elapsed = time.monotonic() - since
    await asyncio.sleep(0.05)
    assert server.live == set() and _idle_timers(loop) == []  # type: ignore[attr-defined]
    return elapsed, result.texts, result.close_code


def test_audio_moves_the_idle_deadline_and_the_timer_never_cancels_a_message_in_progress(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StreamPipeline, "awaits_batcher", property(lambda self: True))
    slow = SlowClassifier()

    async def scenario() -> tuple[float, list[str], int | None]:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 0.3})) as (server, base):
            server.classifier = slow  # type: ignore[assignment]
            loop = asyncio.get_running_loop()
            async with connect(stream_url(base)) as ws:
                for _ in range(12):  # 1.2 s of audio, four idle timeouts; the first message is held 0.7 s
                    await ws.send(b"\x00" * 640)
                    await asyncio.sleep(0.1)
                return await _idle_closed(server, loop, ws, time.monotonic())

    elapsed, texts, code = asyncio.run(scenario())
    assert slow.started == slow.finished == 12  # every message handled, the held one too
    assert [parse_event(t)[1].code for t in texts] == ["idle_timeout"] and code == 1008
    assert 0.25 < elapsed < 1.2  # 0.3 s after the last audio


def test_a_silent_stream_times_out_and_leaves_no_timer() -> None:
    async def scenario() -> tuple[float, list[str], int | None]:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 0.3})) as (server, base):
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            async with connect(stream_url(base)) as ws:
                return await _idle_closed(server, loop, ws, started)

    elapsed, texts, code = asyncio.run(scenario())
    assert [parse_event(t)[1].code for t in texts] == ["idle_timeout"] and code == 1008
    assert 0.25 < elapsed < 1.2


def test_a_stream_the_caller_closes_leaves_no_timer() -> None:
    async def scenario() -> None:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 5.0})) as (server, base):
            loop = asyncio.get_running_loop()
            async with connect(stream_url(base)) as ws:
                await ws.send(b"\x00" * 640)
                await asyncio.sleep(0.1)
                assert len(_idle_timers(loop)) == 1
            while server.live:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            assert _idle_timers(loop) == []

    asyncio.run(scenario())
