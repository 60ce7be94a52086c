"""`callbot audio-server --workers N`: worker processes on one port under a supervisor, over real loopback.

Streams spread over the workers, every one gets its barge-in, a worker killed mid-run is restarted
and /healthz says so, metrics add up across workers (a dead worker's counters included), signals
close every stream with 1001, and a worker that cannot start stops the server with its reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from test_audio_metrics import scraped

from callbot.audio_format import frame_samples
from callbot.audio_server.metrics import STAGES
from callbot.audio_server.serve.board import DEAD, LISTENING, Board
from callbot.audio_server.serve.supervisor import hold_port
from callbot.audio_server.server import ListenError
from callbot.audio_server.stream_client import StreamResult, read_wav, stream_pcm, stream_url
from callbot.events import parse_event
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()
BARGE_IN_WAVS = [FIXTURES / "long_reply.wav", FIXTURES / "pauses_2500ms.wav"]  # both expect a barge-in


class WorkersServer:
    """``callbot --log-json audio-server --workers N --port 0 --metrics-port 0 --no-stt`` with its log in a file."""

    def __init__(self, cli: list[str], tmp: Path, *args: str) -> None:
        self.log_path = tmp / "server.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CALLBOT_AUDIO_SERVER_MAX_SPEED": "1000",
               "CALLBOT_AUDIO_SERVER_REPLAY_MAX_SPEED": "1000"}
        with open(self.log_path, "w") as log_file:
            self.proc = subprocess.Popen([*cli, "--log-json", "audio-server", "--port", "0", "--metrics-port", "0",
                                          *args], stderr=log_file, stdout=subprocess.DEVNULL, env=env)
        self.port = self.metrics_port = 0

    def wait_listening(self, timeout: float = 60.0) -> "WorkersServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.log():
                if record["msg"] == "audio server listening" and "worker" not in record:  # the supervisor's: all up
                    self.port = record["port"]
                elif record["msg"] == "metrics listening":
                    self.metrics_port = record["port"]
            if self.port and self.metrics_port:
                return self
            assert self.proc.poll() is None, f"the server exited: {self.log_path.read_text()}"
            time.sleep(0.05)
        raise AssertionError(f"not listening after {timeout} s: {self.log_path.read_text()}")

    def log(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def healthz(self, port: int | None = None) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}/healthz", timeout=5) as resp:
            return json.loads(resp.read())

    def metric(self, name: str, **labels: str) -> float:
        return scraped(self.metrics_port, name, **labels)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _stream_all(port: int, count: int, speed: float, linger_s: float = 10.0) -> list[StreamResult]:
    jobs = [read_wav(BARGE_IN_WAVS[i % len(BARGE_IN_WAVS)]) for i in range(count)]

    async def run() -> list[StreamResult]:
        return await asyncio.gather(*(stream_pcm(stream_url(f"ws://127.0.0.1:{port}", rate=rate), samples, rate,
                                                 speed=speed, linger_s=linger_s) for samples, rate in jobs))

    return asyncio.run(run())


def _types(result: StreamResult) -> list[str]:
    return [parse_event(text)[1].type for text in result.texts]


def test_board_counts_streams_and_says_which_worker_is_down(tmp_path: Path) -> None:
    board = Board.create(tmp_path / "board", 2)
    assert board.health(200)["status"] == "down"
    seen = Board.open(tmp_path / "board")  # a worker's view of the same file
    for slot in (0, 1):
        seen.set(slot, "state", LISTENING)
    seen.set(0, "streams", 3)
    seen.add(1, "opened", 5)
    board.set(1, "state", DEAD)
    board.add(1, "restarts")
    health = board.health(200)
    assert {k: health[k] for k in ("status", "streams", "opened", "restarts", "workers_listening")} == \
        {"status": "degraded", "streams": 3, "opened": 5, "restarts": 1, "workers_listening": 1}
    assert [row["state"] for row in health["per_worker"]] == ["listening", "dead"]


def test_the_port_is_held_once_and_a_second_server_is_told_it_is_in_use() -> None:
    held = hold_port("127.0.0.1", 0)
    try:
        port = held[0].getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: the port is in use"):
            hold_port("127.0.0.1", port)
        worker = socket.socket()  # a worker joins it with SO_REUSEPORT and listens; connections reach it
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))
        worker.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            worker.accept()[0].close()
        worker.close()
    finally:
        for sock in held:
            sock.close()


@pytest.mark.slow  # about 20 s: three rounds of 20 streams, one of them in real time
def test_two_workers_share_the_streams_and_a_killed_worker_comes_back(callbot_cli: list[str], tmp_path: Path) -> None:
    server = WorkersServer(callbot_cli, tmp_path, "--workers", "2", "--no-stt", "--idle-timeout", "0.5")
    try:
        server.wait_listening()
        first = server.healthz()
        assert first["status"] == "ok" and first["workers"] == 2 and first["streams"] == 0

        results = _stream_all(server.port, 20, speed=4.0)
        assert all("barge_in" in _types(r) for r in results), [_types(r) for r in results]
        deadline = time.monotonic() + 5
        while (health := server.healthz())["streams"] and time.monotonic() < deadline:  # each stream's metrics flushed
            time.sleep(0.05)
        assert health["opened"] == 20 and all(row["opened"] > 0 for row in health["per_worker"]), health
        assert server.metric("callbot_audio_streams_opened_total") == 20
        # Both workers' counters, summed: every barge-in and every 20 ms frame, once.
        assert server.metric("callbot_audio_decisions_total", kind="barge_in") == 20
        assert server.metric("callbot_audio_decision_send_seconds_count", kind="barge_in") == 20
        frames = sum(len(samples) // frame_samples(rate) for samples, rate in map(read_wav, BARGE_IN_WAVS)) * 10
        assert server.metric("callbot_audio_frames_total") == frames
        assert all(server.metric("callbot_audio_stage_seconds_total", stage=stage) > 0 for stage in STAGES)

        # Round two in real time: one worker is killed at 1 s, before any barge-in is due (2.7 s).
        victim = health["per_worker"][0]["pid"]

        async def kill_later() -> None:
            await asyncio.sleep(1.0)
            os.kill(victim, signal.SIGKILL)

        async def round_two() -> list[StreamResult]:
            jobs = [read_wav(BARGE_IN_WAVS[i % 2]) for i in range(20)]
            streams = [stream_pcm(stream_url(f"ws://127.0.0.1:{server.port}", rate=rate), samples, rate, speed=1.0,
                                  linger_s=10.0) for samples, rate in jobs]
            return (await asyncio.gather(kill_later(), *streams))[1:]

        results = asyncio.run(round_two())
        survived = [r for r in results if "barge_in" in _types(r)]
        cut = [r for r in results if "barge_in" not in _types(r)]
        assert survived and cut, "both workers had streams"
        assert all(r.close_code == 1008 for r in survived)  # idle timeout after the audio: the normal end
        assert all(r.close_code is None for r in cut), [(r.close_code, _types(r)) for r in cut]  # no close frame

        deadline = time.monotonic() + 30
        while (health := server.healthz())["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health["status"] == "ok" and health["restarts"] == 1, health
        reborn = health["per_worker"][0]
        assert reborn["restarts"] == 1 and reborn["pid"] != victim and reborn["state"] == "listening"
        assert any(r["msg"] == "worker died; restarting" and r["pid"] == victim for r in server.log())

        results = _stream_all(server.port, 20, speed=4.0)
        assert all("barge_in" in _types(r) for r in results)
        health = server.healthz(server.metrics_port)  # the supervisor answers too
        assert health["opened"] == 60 and health["per_worker"][0]["opened"] > reborn["opened"]
        # the dead worker's streams stay counted; its live gauge went with it
        assert server.metric("callbot_audio_streams_opened_total") == 60
        assert server.metric("callbot_audio_streams_live") == 0
        assert server.metric("callbot_audio_worker_restarts_total") == 1

        # SIGTERM: every live stream, on either worker, closes with 1001; the supervisor exits 0.
        async def terminate_later() -> None:
            await asyncio.sleep(1.0)
            server.proc.send_signal(signal.SIGTERM)

        async def round_four() -> list[StreamResult]:
            samples, rate = read_wav(BARGE_IN_WAVS[0])
            streams = [stream_pcm(stream_url(f"ws://127.0.0.1:{server.port}", rate=rate), samples, rate, speed=1.0,
                                  linger_s=10.0) for _ in range(10)]
            return (await asyncio.gather(terminate_later(), *streams))[1:]

        assert [r.close_code for r in asyncio.run(round_four())] == [1001] * 10
        assert server.proc.wait(timeout=30) == 0
        assert server.log()[-1]["msg"] == "audio server stopped"
    finally:
        server.stop()


@pytest.mark.slow  # the workers import the STT stack before they fail
def test_a_worker_that_cannot_start_stops_the_server_with_its_reason(callbot_cli: list[str], tmp_path: Path) -> None:
    server = WorkersServer(callbot_cli, tmp_path, "--workers", "2", "--model", str(tmp_path / "no-such-model"))
    try:
        assert server.proc.wait(timeout=60) == 1
        text = server.log_path.read_text()
        assert "audio server worker" in text and "could not start" in text and "no-such-model" in text
    finally:
        server.stop()


def test_workers_close_when_their_supervisor_is_killed(callbot_cli: list[str], tmp_path: Path) -> None:
    server = WorkersServer(callbot_cli, tmp_path, "--workers", "2", "--no-stt")
    try:
        pids = [row["pid"] for row in server.wait_listening().healthz()["per_worker"]]
        server.proc.kill()
        server.proc.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in pids)
    finally:
        server.stop()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_deployed_unit_runs_options_that_exist() -> None:
    """deploy/systemd's ExecStart parses as a callbot command line (with %i as a port)."""
    import shlex

    from click.testing import CliRunner

    from callbot.app.cli import main

    unit = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "callbot-audio-server@.service"
    exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    args = shlex.split(exec_start.split("/bin/callbot", 1)[1].replace("%i", "8080"))
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0 and "--workers" in result.output, result.output
