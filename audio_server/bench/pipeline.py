"""Measure the pipeline's CPU cost per frame over fixture WAVs (process time, no sockets, no sleeping)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import click

from callbot.audio_format import frame_bytes
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.resources import demo_calls_dir

DEFAULT_FIXTURES = demo_calls_dir()


def _run_once(samples_bytes: bytes, rate: int, settings: Settings) -> tuple[int, float, int]:
    """Frames processed, CPU seconds, and events produced for one stream in 20 ms messages."""
    params = dataclasses.replace(StreamParams.defaults(str(uuid.uuid4()), settings), rate=rate)
    pipeline = StreamPipeline(params, settings)
    step = frame_bytes(rate)
    frames = events = 0
    start = time.process_time()
    for i in range(0, len(samples_bytes), step):
        out = pipeline.feed(samples_bytes[i:i + step])
        frames += len(out.frames)
        events += len(out.events)
    events += len(pipeline.flush().events)
    return frames, time.process_time() - start, events


def run_bench(fixtures: Path, settings: Settings, repeat: int = 3) -> dict:
    """µs/frame per fixture and overall; streams per core = frames per CPU second / 50 frames per second."""
    wavs = sorted(fixtures.glob("*.wav"))
    if not wavs:
        raise click.ClickException(f"no WAV files in {fixtures}; give --fixtures DIR")
    per_fixture = []
    total_frames, total_cpu = 0, 0.0
    for wav in wavs:
        samples, rate = read_wav(wav)
        data = samples.astype("<i2").tobytes()
        frames, cpu = 0, 0.0
        for _ in range(max(1, repeat)):
            f, c, _events = _run_once(data, rate, settings)
            frames, cpu = frames + f, cpu + c
        per_fixture.append({"fixture": wav.name, "rate": rate, "frames": frames,
                            "us_per_frame": round(1e6 * cpu / frames, 2)})
        total_frames, total_cpu = total_frames + frames, total_cpu + cpu
    frames_per_s = total_frames / total_cpu if total_cpu > 0 else float("inf")
    return {
        "fixtures": len(wavs),
        "frames": total_frames,
        "frame_ms": settings.vad.frame_ms,
        "cpu_s": round(total_cpu, 4),
        "us_per_frame": round(1e6 * total_cpu / total_frames, 2),
        "frames_per_s": round(frames_per_s),
        "streams_per_core_realtime": round(frames_per_s * settings.vad.frame_ms / 1000),
        "per_fixture": per_fixture,
    }
