"""The audio server's own metrics over loopback: decisions sent, decision-to-send time, stage seconds, frames, drops.

A real server in-process with a registry of the test's, scraped over HTTP as Prometheus would.
tests/test_scale_workers.py checks that the same counters add up across worker processes.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from audio_testkit import FIXTURES, server_settings, until_closed
from callbot.audio_format import frame_samples
from callbot.audio_server.metrics import STAGES, AudioMetrics, start_metrics_server
from callbot.audio_server.server import HARD_SIZE_FACTOR, AudioServer
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url
from callbot.config import Settings
from callbot.events import parse_event


def scraped(port: int, name: str, **labels: str) -> float:
    """``GET /metrics`` on ``port``: the sum of ``name``'s samples whose labels include ``labels``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


async def _closed_streams(server: AudioServer, timeout: float = 5.0) -> None:
    """Wait until the server has finished every stream (a client sees the close before the server's cleanup)."""
    deadline = time.monotonic() + timeout
    while server.live and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not server.live


async def _serving(settings: Settings) -> tuple[AudioServer, str, int]:
    """A server with metrics of its own, and its ``/metrics`` port."""
    registry = CollectorRegistry()
    server = AudioServer(settings, metrics=AudioMetrics.create(registry))
    await server.start(host="127.0.0.1", port=0)
    return server, f"ws://127.0.0.1:{server.port}", start_metrics_server("127.0.0.1", 0, registry)


def test_a_barge_in_is_counted_timed_and_its_frames_and_stages_measured() -> None:
    samples, rate = read_wav(FIXTURES / "long_reply.wav")

    async def scenario() -> tuple[list[str], int]:
        server, base, metrics_port = await _serving(server_settings())
        try:
            result = await stream_pcm(stream_url(base, rate=rate), samples, rate, speed=0.0, linger_s=10.0)
            await _closed_streams(server)
        finally:
            server.close()
            await server.wait_closed()
        return [parse_event(text)[1].type for text in result.texts], metrics_port

    kinds, port = asyncio.run(scenario())
    assert kinds.count("barge_in") == 1 and kinds.count("amd") == 1, kinds
    assert scraped(port, "callbot_audio_decisions_total", kind="barge_in") == 1
    assert scraped(port, "callbot_audio_decisions_total", kind="amd") == 1
    assert scraped(port, "callbot_audio_decisions_total") == len(kinds) - 1  # all but the idle timeout's error
    assert scraped(port, "callbot_audio_decision_send_seconds_count", kind="barge_in") == 1
    assert 0 < scraped(port, "callbot_audio_decision_send_seconds_sum", kind="barge_in") < 1.0
    assert scraped(port, "callbot_audio_decision_send_seconds_count") == 2  # the barge-in and the AMD verdict
    assert scraped(port, "callbot_audio_frames_total") == len(samples) // frame_samples(rate)
    for stage in STAGES:
        assert scraped(port, "callbot_audio_stage_seconds_total", stage=stage) > 0, stage
    assert scraped(port, "callbot_audio_dropped_total", what="tail_bytes") == 2 * (len(samples) % frame_samples(rate))


def test_refused_streams_oversized_messages_and_a_partial_frame_are_counted_as_dropped() -> None:
    settings = server_settings(**{"audio_server.max_streams": 1})
    limit = settings.audio_server.max_message_bytes

    async def scenario() -> int:
        server, base, metrics_port = await _serving(settings)
        try:
            async with connect(stream_url(base)) as ws:
                await ws.send(b"\x00" * (640 + 101))  # a frame and 101 bytes: the stream closes on its idle timeout
                try:
                    async with connect(stream_url(base)):
                        raise AssertionError("a second stream past audio_server.max_streams=1")
                except InvalidStatus as exc:
                    assert exc.response.status_code == 503
                assert (await until_closed(ws)).close_code == 1008
            await _closed_streams(server)
            for size in (limit + 2, limit * HARD_SIZE_FACTOR * 2):  # ours to refuse, then the library's to cut
                async with connect(stream_url(base), max_size=None) as ws:
                    await ws.send(b"\x00" * size)
                    assert (await until_closed(ws)).close_code == 1009
                await _closed_streams(server)
        finally:
            server.close()
            await server.wait_closed()
        return metrics_port

    port = asyncio.run(scenario())
    assert scraped(port, "callbot_audio_dropped_total", what="tail_bytes") == 101
    assert scraped(port, "callbot_audio_dropped_total", what="too_many_streams") == 1
    assert scraped(port, "callbot_audio_dropped_total", what="message_too_large") == 2
    assert scraped(port, "callbot_audio_dropped_total") == 104  # nothing else: the idle timeout is no drop
    assert scraped(port, "callbot_audio_frames_total") == 1
