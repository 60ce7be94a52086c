"""Measure the whole audio server's CPU per frame (WebSocket included): a real server process, N streams.

The server runs as a child process (``callbot audio-server --port 0 --workers W``): a supervisor
and its W worker processes. Its CPU time is read from the kernel's accounting of children once
it has exited (the supervisor waits for its workers, so theirs is in it), apart from the clients
that feed it from this process. The CPU of a server that starts and stops with no stream is
measured first and subtracted. Streams per core = stream-seconds of audio / server CPU-seconds.

Only audio the server took counts: every stream's "stream closed" log line says how far it got, and a
run where a stream was cut short (an idle timeout while the load generator was still opening its
other streams, a refusal) is an error, not a figure. Each client closes its stream after its last
frame, so the server's idle timeout can be long enough for a slow load generator.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from callbot.audio_format import FRAMES_PER_S, frame_samples
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url

SERVER = [sys.executable, "-m", "callbot"]
START_TIMEOUT_S = 30.0
UNCAPPED = 1000  # audio_server.max_speed's largest value
IDLE_TIMEOUT_S = 60.0  # the streams end by the client's close; this only bounds a client that vanished
STT_LINGER_S = 5.0  # with transcripts on, a client waits this long after its last frame for the last finals
NOISE_CPU_S = 0.05  # a difference this small (or negative) from the idle start and stop is their variation, not the streams


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_for_port(log_path: Path, proc: subprocess.Popen) -> int:
    """The port, once the supervisor says every worker listens (a worker's own line has a ``worker`` key)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("msg") == "audio server listening" and "worker" not in record:
                return int(record["port"])
        if proc.poll() is not None:
            raise click.ClickException(f"the audio server exited with {proc.returncode}; see {log_path}")
        time.sleep(0.05)
    raise click.ClickException(f"the audio server did not listen within {START_TIMEOUT_S:g} s; see {log_path}")


def _served_frames(log_path: Path, expected: list[int]) -> int:
    """Frames the server took over its streams, from their "stream closed" lines; an error unless
    every stream got all of its audio (``expected``: each stream's frames)."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    closed = [r for r in records if r.get("msg") == "stream closed"]
    served = sorted(round(float(r["t"]) * FRAMES_PER_S) for r in closed)
    served += [0] * (len(expected) - len(served))  # a stream the server never opened took nothing
    cut = sum(got < want for got, want in zip(served, sorted(expected)))
    if cut:
        failed = [r for r in records if r.get("msg") in ("stream failed", "handshake refused")]
        why = "; ".join(sorted({str(r.get("reason") or r.get("code")) for r in failed})) or "no reason logged"
        raise click.ClickException(
            f"{cut} of {len(expected)} streams did not reach the server whole (the server said: {why}): the "
            "load generator could not keep up, and the server's CPU would be divided by audio it never took")
    return sum(served)


def _server_cpu(wavs: list[Path], streams: int, config: str | None, workers: int,
                speed: float, stt: bool) -> tuple[float, int, float]:
    """Child CPU seconds, frames served and wall seconds for ``streams`` concurrent fixture streams
    sent at ``speed`` x real time (0: as fast as the server reads them); ``stt``: transcripts too."""
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        before = _children_cpu()
        with open(log_path, "w") as log_file:
            args = [*SERVER, *(["--config", config] if config else []), "--log-json", "audio-server", "--port", "0",
                    "--idle-timeout", str(IDLE_TIMEOUT_S), "--max-streams", str(max(streams, 1)),
                    "--workers", str(workers), *([] if stt else ["--no-stt"])]
            # the clients send as fast as the server reads: this measures cost, so the rate cap is lifted
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "CALLBOT_AUDIO_SERVER_MAX_SPEED": str(UNCAPPED),
                   "CALLBOT_AUDIO_SERVER_REPLAY_MAX_SPEED": str(UNCAPPED)}
            proc = subprocess.Popen(args, stderr=log_file, stdout=subprocess.DEVNULL, env=env)
        try:
            port = _wait_for_port(log_path, proc)
            jobs = [read_wav(wavs[i % len(wavs)]) for i in range(streams)]
            linger = STT_LINGER_S if stt else 0.0

            async def run() -> None:
                await asyncio.gather(*(stream_pcm(stream_url(f"ws://127.0.0.1:{port}", rate=rate), samples, rate,
                                                  speed=speed, linger_s=linger) for samples, rate in jobs))

            wall = time.monotonic()
            asyncio.run(run())
            wall = time.monotonic() - wall
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        frames = _served_frames(log_path, [len(samples) // frame_samples(rate) for samples, rate in jobs])
        return _children_cpu() - before, frames, wall


def run_server_bench(wavs: list[Path], streams: int, config: str | None = None, workers: int = 1,
                     speed: float = 0.0, stt: bool = False) -> dict:
    """µs of server CPU per 20 ms frame, WebSocket and logging included; streams per core at real time.

    ``streams_per_core_realtime`` = stream-seconds of audio / CPU-seconds of every server process
    (supervisor and workers; not this process, which generates the load). By default these are
    barge-in streams (barge-in, AMD, beeps: ``--no-stt``); ``stt`` adds Whisper on every stream, whose
    cost is per second of speech rather than per frame (``callbot stt-bench``).
    """
    load_start = os.getloadavg()
    idle_cpu, _, _ = _server_cpu(wavs, 0, config, workers, speed, stt)
    cpu, frames, wall = _server_cpu(wavs, streams, config, workers, speed, stt)
    busy = cpu - idle_cpu
    if busy <= NOISE_CPU_S:  # the streams cost less than the start-up's own variation: no figure to give
        raise click.ClickException(
            f"the server's CPU for {streams} streams ({cpu:.3f} s) was within {NOISE_CPU_S} s of an idle start and "
            f"stop ({idle_cpu:.3f} s): too few to measure; give more --server-streams")
    audio_s = frames / FRAMES_PER_S
    return {
        "streams": streams,
        "workers": workers,
        "speed": speed,
        "stt": stt,
        "frames": frames,
        "audio_s": round(audio_s, 2),
        "wall_s": round(wall, 3),
        "server_cpu_s": round(busy, 3),
        "server_cores_busy": round(busy / wall, 2),
        "startup_cpu_s": round(idle_cpu, 3),
        "us_per_frame": round(1e6 * busy / frames, 1),
        "streams_per_core_realtime": round(audio_s / busy),
        "load_avg": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "cpu_count": os.cpu_count(),
    }
