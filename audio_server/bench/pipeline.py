"""Measure the pipeline's CPU cost per frame over fixture WAVs (process time, no sockets, no sleeping).

One stream at a time, in 20 ms messages, its Silero classifier in a batcher of its own (the server
shares one across its streams: ``callbot eval DIR --cost FIXTURE`` measures that). Besides the
pipeline as the settings build it (the top-level figures), ``systems`` reports each path of the
barge-in cascade on the same fixtures:

- ``webrtcvad``: the frame gate alone (no classifier, no echo gate);
- ``cascade``: the gate, Silero confirmation and the echo gate, with no prompt playing (the echo
  gate then does nothing);
- ``cascade_echo``: the same while the robot's prompt plays: a playback marker at the stream's
  start with the bundled ``ECHO_PROMPT`` as the reference, so the echo gate judges every frame of the prompt
  and the 600 ms after it.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path

import click
import soundfile

from callbot.audio_format import frame_bytes
from callbot.audio_server.classify.confirm import SpeechSettings, speech_settings
from callbot.audio_server.echo.reference import PromptBands, load_prompt_reference
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.resources import demo_calls_dir, prompts_dir

DEFAULT_FIXTURES = demo_calls_dir()
# The default set is the short demo calls, dense with speech, as it has been since the first figures: the
# 60 s call (hold_60s, a caller away from the phone for 45 s) would dilute the per-frame cost with silence.
DEFAULT_MAX_S = 10.0


def fixture_wavs(directory: Path, max_s: float | None = None) -> list[Path]:
    """The WAVs of ``directory`` to play, by name; with ``max_s`` only those that last at most that long."""
    paths = sorted(directory.glob("*.wav"))
    if max_s is not None:
        paths = [p for p in paths if soundfile.info(str(p)).duration <= max_s]
    if not paths:
        raise click.ClickException(f"no WAV files in {directory}; give --fixtures DIR")
    return paths


ECHO_PROMPT = "en/16000/greeting.wav"  # the reference of ``cascade_echo``: a bundled prompt (resampled to each rate)


def _run_once(samples_bytes: bytes, rate: int, settings: Settings, speech: SpeechSettings | None = None,
              prompt: PromptBands | None = None) -> tuple[int, float, int]:
    """Frames processed, CPU seconds, and events produced for one stream in 20 ms messages.

    ``prompt``: a playback marker with this reference lands before the first message."""
    params = dataclasses.replace(StreamParams.defaults(str(uuid.uuid4()), settings), rate=rate)
    pipeline = StreamPipeline(params, settings, speech=speech)
    step = frame_bytes(rate)
    frames = events = 0
    start = time.process_time()
    if prompt is not None:
        pipeline.playback_started(prompt, 0.0)
    for i in range(0, len(samples_bytes), step):
        out = pipeline.feed(samples_bytes[i:i + step])
        frames += len(out.frames)
        events += len(out.events)
    events += len(pipeline.flush().events)
    return frames, time.process_time() - start, events


def _measure(wavs: list[tuple[str, bytes, int]], settings: Settings, repeat: int, speech: SpeechSettings | None = None,
             prompts: Path | None = None) -> dict:
    """One system over every fixture ``repeat`` times: totals and µs/frame per fixture."""
    per_fixture = []
    total_frames, total_cpu = 0, 0.0
    for name, data, rate in wavs:
        prompt = load_prompt_reference(prompts, ECHO_PROMPT, rate) if prompts is not None else None
        frames, cpu = 0, 0.0
        for _ in range(max(1, repeat)):
            f, c, _events = _run_once(data, rate, settings, speech, prompt)
            frames, cpu = frames + f, cpu + c
        per_fixture.append({"fixture": name, "rate": rate, "frames": frames,
                            "us_per_frame": round(1e6 * cpu / frames, 2)})
        total_frames, total_cpu = total_frames + frames, total_cpu + cpu
    frames_per_s = total_frames / total_cpu if total_cpu > 0 else float("inf")
    return {
        "frames": total_frames,
        "cpu_s": round(total_cpu, 4),
        "us_per_frame": round(1e6 * total_cpu / total_frames, 2),
        "frames_per_s": round(frames_per_s),
        "streams_per_core_realtime": round(frames_per_s * settings.vad.frame_ms / 1000),
        "per_fixture": per_fixture,
    }


def run_bench(paths: list[Path], settings: Settings, repeat: int = 3) -> dict:
    """µs/frame per fixture and overall; streams per core = frames per CPU second / 50 frames per second.

    The top-level figures are the pipeline as ``settings`` build it (what the audio server runs);
    ``systems`` has webrtcvad alone, the cascade, and the cascade with an echo reference (see the module).
    """
    wavs = []
    for wav in paths:
        samples, rate = read_wav(wav)
        wavs.append((wav.name, samples.astype("<i2").tobytes(), rate))
    configured = speech_settings(settings)
    cascade = dataclasses.replace(configured, confirm=True, echo=True)
    default = _measure(wavs, settings, repeat, configured)
    systems = {
        "webrtcvad": _measure(wavs, settings, repeat, dataclasses.replace(configured, confirm=False, echo=False)),
        "cascade": default if cascade == configured else _measure(wavs, settings, repeat, cascade),
        "cascade_echo": _measure(wavs, settings, repeat, cascade, prompts_dir()),
    }
    return {
        "fixtures": len(wavs),
        "frames": default["frames"],
        "frame_ms": settings.vad.frame_ms,
        "cpu_s": default["cpu_s"],
        "us_per_frame": default["us_per_frame"],
        "frames_per_s": default["frames_per_s"],
        "streams_per_core_realtime": default["streams_per_core_realtime"],
        "per_fixture": default["per_fixture"],
        "systems": {name: {k: v for k, v in run.items() if k != "per_fixture"} | {"echo_reference": name == "cascade_echo"}
                    for name, run in systems.items()},
    }
