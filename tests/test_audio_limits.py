"""Issue 11 for the audio server, over real loopback WebSockets: the input rate cap, the idle timeout on
audio samples, no exposure without a token, one clean line for bind errors, and log lines that cannot be forged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
import uuid

import numpy as np
import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect

from audio_testkit import FIXTURES, check_against_sidecar, running, server_settings, stream_fixture, until_closed
from callbot.app.cli import main
from callbot.audio_server.server import AudioServer, ListenError
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url
from callbot.events import parse_event
from callbot.logs import KeyValueFormatter

TOKEN = "t0ken"


def _capped(**overrides: object):
    return server_settings(**{"audio_server.max_speed": 4.0, "audio_server.replay_max_speed": 40.0,
                              "audio_server.speed_headroom_s": 0.5, "audio_server.token": TOKEN, **overrides})


def test_a_stream_far_ahead_of_real_time_is_refused_and_a_healthy_one_keeps_its_stream_time() -> None:
    flood = np.random.default_rng(1).integers(-3000, 3000, 16000 * 30).astype(np.int16)  # 30 s of noise

    async def scenario() -> None:
        async with running(_capped()) as (server, base):
            healthy = asyncio.create_task(stream_fixture(base, FIXTURES / "long_reply.wav", "20ms", speed=3.0,
                                                         query={"token": TOKEN}))
            fast, replayed = await asyncio.gather(
                stream_pcm(stream_url(base, rate=16000, token=TOKEN), flood, 16000, speed=100.0, linger_s=10.0),
                stream_fixture(base, FIXTURES / "short_yes.wav", "20ms", speed=20.0, query={"token": TOKEN, "replay": 1}))
            call, healthy_result = await healthy
            assert server.live == set()
        error = parse_event(fast.texts[-1])[1]
        assert (error.code, fast.close_code) == ("rate_limited", 1008)
        assert "audio_server.max_speed=4 x real time" in error.message and error.t < 3.0
        # replay=1 with the token: the higher cap; it ran to the end and closed on idle
        assert parse_event(replayed[1].texts[-1])[1].code == "idle_timeout"
        check_against_sidecar(FIXTURES / "short_yes.wav", *replayed)
        check_against_sidecar(FIXTURES / "long_reply.wav", call, healthy_result)

    asyncio.run(scenario())


def test_a_replay_faster_than_its_own_cap_is_refused_too() -> None:
    samples, rate = read_wav(FIXTURES / "long_reply.wav")

    async def scenario() -> None:
        async with running(_capped()) as (_server, base):
            result = await stream_pcm(stream_url(base, rate=rate, token=TOKEN, replay=1), samples, rate,
                                      speed=200.0, linger_s=10.0)
        error = parse_event(result.texts[-1])[1]
        assert error.code == "rate_limited" and "audio_server.replay_max_speed=40" in error.message

    asyncio.run(scenario())


def test_empty_frames_and_text_do_not_keep_a_stream_alive() -> None:
    """The idle timeout counts audio samples received: an empty binary frame (or one byte) is not audio."""
    async def scenario() -> tuple[float, list[str], int | None]:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 0.5})) as (_server, base):
            async with connect(stream_url(base)) as ws:
                await ws.send(b"\x00" * 640)
                started = time.monotonic()

                async def keep_poking() -> None:
                    await ws.send(b"\x01")  # half a sample: not audio yet
                    for i in range(30):
                        await ws.send('{"call_id":"1"}' if i % 2 else b"")
                        await asyncio.sleep(0.05)

                poker = asyncio.create_task(keep_poking())
                result = await until_closed(ws)
                poker.cancel()
                return time.monotonic() - started, result.texts, result.close_code

    elapsed, texts, code = asyncio.run(scenario())
    assert parse_event(texts[-1])[1].code == "idle_timeout" and code == 1008
    assert elapsed < 1.2  # 0.5 s after the last audio sample, not after the last frame


def test_listening_beyond_loopback_needs_a_token_or_an_explicit_no() -> None:
    async def start(**overrides: object) -> int:
        server = AudioServer(server_settings(**overrides))
        await server.start(port=0)
        port = server.port
        server.close()
        await server.wait_closed()
        return port

    with pytest.raises(ListenError, match="^audio server: refusing to listen on 0.0.0.0 without a token; set "
                                          "--token"):
        asyncio.run(start(**{"audio_server.host": "0.0.0.0"}))
    assert asyncio.run(start(**{"audio_server.host": "0.0.0.0", "audio_server.token": TOKEN})) > 0
    assert asyncio.run(start(**{"audio_server.host": "0.0.0.0", "audio_server.insecure_no_token": True})) > 0
    assert asyncio.run(start(**{"audio_server.host": "localhost"})) > 0
    result = CliRunner().invoke(main, ["audio-server", "--host", "0.0.0.0", "--no-stt"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--insecure-no-token" in result.output


def test_port_in_use_is_one_clean_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["audio-server", "--port", str(port), "--no-stt"])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output == (f"Error: audio server: cannot listen on 127.0.0.1:{port}: the port is in use "
                                 "(another server?); choose another with --port / audio_server.port\n")
        metrics = CliRunner().invoke(main, ["audio-server", "--port", "0", "--metrics-port", str(port), "--no-stt"])
        assert metrics.exit_code == 1
        assert metrics.output.splitlines()[-1].startswith(f"Error: metrics: cannot listen on 127.0.0.1:{port}")
        bad_host = CliRunner().invoke(main, ["audio-server", "--host", "192.0.2.1", "--token", "x", "--no-stt"])
        assert bad_host.exit_code == 1 and bad_host.output.startswith("Error: audio server: cannot listen on 192.0.2.1")
        assert bad_host.output.count("\n") == 1


def test_a_text_frame_with_a_newline_cannot_forge_a_log_line() -> None:
    forged = 'x\n12:00:00.000 error callbot.audio_server.server stream failed call=victim\r\x1b[2K'
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("callbot.audio_server.server")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)

    async def scenario() -> None:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 0.3})) as (_server, base):
            async with connect(stream_url(base, str(uuid.uuid4()))) as ws:
                await ws.send(forged)
                await ws.send(json.dumps({"type": "playback", "state": "start", "file": "../" + forged}))
                await ws.send(b"\x00" * 640)
                await until_closed(ws)

    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    out = lines.getvalue().splitlines()
    assert any("text frame ignored" in line and "head=x\\n12:00:00.000 error" in line for line in out), out
    assert any("playback marker refused" in line and "\\r\\x1b[2K" in line for line in out), out
    assert not any(line.startswith("12:00:00.000") for line in out)


def test_the_formatter_keeps_one_record_on_one_line() -> None:
    record = logging.LogRecord("n", logging.WARNING, __file__, 1, "a\nb\u2028c", None, None)
    record.head = "q\r\nz\x00"
    line = KeyValueFormatter().format(record)
    assert "\n" not in line and "\r" not in line and line.endswith("a\\nb\\u2028c head=q\\r\\nz\\x00")
