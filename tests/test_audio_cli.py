"""The audio server's subcommands as a user runs them: a real process, signals, printed JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from callbot.events import parse_event
from callbot.audio_server.stream_client import read_wav, stream_url
from callbot.audio_server.bench.pipeline import DEFAULT_MAX_S, fixture_wavs
from callbot.app.cli import main
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()


def _start_server(callbot_cli: list[str], *args: str, max_speed: float = 1000) -> tuple[subprocess.Popen, int]:
    """``callbot --log-json audio-server --port 0 ...`` in a subprocess; the port comes from its log.

    These clients send as fast as the socket takes it, so the rate cap is lifted unless ``max_speed`` says."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CALLBOT_AUDIO_SERVER_MAX_SPEED": str(max_speed),
           "CALLBOT_AUDIO_SERVER_REPLAY_MAX_SPEED": str(max_speed)}
    proc = subprocess.Popen([*callbot_cli, "--log-json", "audio-server", "--port", "0", "--no-stt", *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        record = json.loads(line)
        if record["msg"] == "audio server listening":
            return proc, int(record["port"])
    raise AssertionError(f"the server exited ({proc.wait()}) without listening")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_on_signal_closes_streams_with_1001(sig: signal.Signals, callbot_cli: list[str]) -> None:
    proc, port = _start_server(callbot_cli)
    try:
        async def scenario() -> int | None:
            async with connect(stream_url(f"ws://127.0.0.1:{port}")) as ws:
                speech = read_wav(FIXTURES / "pauses_2500ms.wav")[0].astype("<i2").tobytes()

                async def blast() -> None:  # a minute of speech, far faster than the server reads it
                    with contextlib.suppress(ConnectionClosed):
                        for i in range(3000):
                            at = i * 640 % (len(speech) - 640)
                            await ws.send(speech[at:at + 640])

                sender = asyncio.create_task(blast())
                await asyncio.sleep(0.3)  # the stream is live, with audio queued, before the signal
                proc.send_signal(sig)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                await sender
                return ws.close_code

        t0 = time.monotonic()
        assert asyncio.run(scenario()) == 1001
        assert proc.wait(timeout=10) == 0
        # Queued audio must not stall the close until the library's 10 s close timeout.
        assert time.monotonic() - t0 < 5.0
        assert proc.stderr is not None
        log = [json.loads(line) for line in proc.stderr]
        assert any(r["msg"] == "audio server stopped" for r in log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stream_command_prints_events_as_json_lines(callbot_cli: list[str]) -> None:
    proc, port = _start_server(callbot_cli, "--idle-timeout", "0.5")
    try:
        wav = FIXTURES / "long_reply.wav"
        out = subprocess.run([*callbot_cli, "stream", str(wav), "--url",
                              f"ws://127.0.0.1:{port}", "--speed", "0", "--chunking", "random", "--linger", "30"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        events = [parse_event(line)[1] for line in out.stdout.splitlines()]
        # AMD decides once, beside the barge-in path (the long reply starts late: notsure/TOOLONG).
        assert [e.type for e in events if e.type != "amd"] == ["speech_started", "barge_in", "speech_stopped", "error"]
        assert [e.type for e in events].count("amd") == 1
        assert "1008 idle_timeout" in out.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pipeline_bench_prints_its_cost_as_json() -> None:
    result = CliRunner().invoke(main, ["pipeline-bench", "--json", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    wavs = fixture_wavs(FIXTURES, DEFAULT_MAX_S)  # the short demo calls: the 60 s one is left out by default
    assert "hold_60s.wav" not in {w.name for w in wavs} and len(wavs) == len(list(FIXTURES.glob("*.wav"))) - 1
    frames = sum(len(read_wav(w)[0]) // (read_wav(w)[1] // 50) for w in wavs)
    assert report["frames"] == frames and report["fixtures"] == len(report["per_fixture"]) == len(wavs)
    # both are rounded from one unrounded rate, so they agree to within the two roundings
    assert report["us_per_frame"] > 0 and abs(report["streams_per_core_realtime"] - report["frames_per_s"] / 50) <= 0.51
    # one run, every path of the barge-in cascade on the same fixtures (a cost, not a timing assertion)
    systems = report["systems"]
    assert list(systems) == ["webrtcvad", "cascade", "cascade_echo"]
    for name, row in systems.items():
        assert row["frames"] == frames, name
        assert isinstance(row["us_per_frame"], float) and row["us_per_frame"] > 0, name
        assert isinstance(row["streams_per_core_realtime"], int) and row["streams_per_core_realtime"] > 0, name
    assert [row["echo_reference"] for row in systems.values()] == [False, False, True]


def test_audio_server_rejects_a_bad_setting_with_a_clear_message() -> None:
    result = CliRunner().invoke(main, ["audio-server", "--max-streams", "many"])
    assert result.exit_code != 0 and "max-streams" in result.output
    result = CliRunner().invoke(main, ["audio-server", "--port", "0"], env={"CALLBOT_VAD_AGGRESSIVENESS": "7"})
    assert result.exit_code == 1
    assert "environment variable CALLBOT_VAD_AGGRESSIVENESS: vad.aggressiveness: 7 must be between 0 and 3" \
        in result.output


@pytest.mark.slow  # a server process with 24 streams (four cost less CPU than a start-up varies by)
def test_pipeline_bench_can_measure_a_real_server_process() -> None:
    result = CliRunner().invoke(main, ["pipeline-bench", "--json", "--repeat", "1", "--server-streams", "24"])
    assert result.exit_code == 0, result.output
    server = json.loads(result.stdout)["server"]
    wavs = fixture_wavs(FIXTURES, DEFAULT_MAX_S)
    frames = sum(len(read_wav(w)[0]) // (read_wav(w)[1] // 50) for w in (wavs[i % len(wavs)] for i in range(24)))
    assert server["streams"] == 24 and server["frames"] == frames
    assert server["startup_cpu_s"] > 0.05, "the child CPU accounting read nothing"  # imports alone cost more
    assert server["us_per_frame"] > 0


def test_pipeline_bench_plays_every_wav_of_a_directory_it_is_given(tmp_path: Path) -> None:
    """--fixtures DIR: all of them, the long ones too (only the default set leaves the 60 s call out)."""
    for name in ("hold_60s", "short_yes"):
        (tmp_path / f"{name}.wav").write_bytes((FIXTURES / f"{name}.wav").read_bytes())
    result = CliRunner().invoke(main, ["pipeline-bench", "--json", "--repeat", "1", "--fixtures", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [row["fixture"] for row in report["per_fixture"]] == ["hold_60s.wav", "short_yes.wav"]
    assert report["frames"] == 60 * 50 + 6 * 50
