"""`callbot eval --cost`: CPU per stream and 20 ms frame of the audio pipeline, webrtcvad alone vs the cascade.

N streams of one labelled fixture run side by side as the audio server runs them: every loop turn
each stream accepts one 20 ms message, one shared ``SileroBatcher`` runs once for all of them,
then each advances. Three systems: webrtcvad and its guards alone; the cascade (Silero confirmation)
without the robot's prompt; the cascade with the fixture's playback markers, so the echo gate works
on the prompt's reference. Process CPU time, so other work on the machine counts only as much
as it slows this process down (noisy on a shared machine: compare within one run).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from callbot.app.eval.fixtures import Fixture
from callbot.app.eval.run import SYSTEMS
from callbot.audio_server.classify.silero_batch import SileroBatcher
from callbot.audio_server.echo.reference import load_prompt_reference
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings

COST_SYSTEMS = ("webrtcvad", "cascade", "cascade+echo")


def stream_cost(fixture: Fixture, system: str, streams: int, settings: Settings, prompts_dir: Path) -> dict:
    """CPU µs per stream per 20 ms frame for ``streams`` copies of ``fixture`` run by ``system``."""
    speech = SYSTEMS["webrtcvad" if system == "webrtcvad" else "cascade"]
    batcher = SileroBatcher() if speech.confirm else None
    params = [StreamParams(str(uuid.uuid4()), fixture.rate, settings.bargein.min_speech_ms,
                           settings.bargein.bridge_ms) for _ in range(streams)]
    pipelines = [StreamPipeline(p, settings, batcher=batcher, speech=speech) for p in params]
    markers = sorted((round(m["start_s"] * fixture.rate), m["file"]) for m in fixture.playback) \
        if system == "cascade+echo" else []
    references = {file: load_prompt_reference(prompts_dir, file, fixture.rate) for _, file in markers}
    step = fixture.rate // 50
    data = fixture.samples.astype("<i2").tobytes()
    frames = 0
    cpu = time.process_time()
    for i in range(0, len(fixture.samples) - step + 1, step):
        while markers and markers[0][0] <= i:
            _, file = markers.pop(0)
            for pipeline in pipelines:
                pipeline.playback_started(references[file], i / fixture.rate)
        message = data[2 * i:2 * (i + step)]
        for pipeline in pipelines:
            pipeline.accept(message)
        if batcher is not None:
            batcher.run()
        for pipeline in pipelines:
            pipeline.advance()
        frames += streams
    cpu = time.process_time() - cpu
    out = {"system": system, "streams": streams, "frames": frames, "us_per_frame": round(1e6 * cpu / frames, 1),
           "streams_per_core": round(0.020 * frames / cpu) if cpu > 0 else None}
    if batcher is not None:
        out.update(silero_calls=batcher.calls, silero_windows=batcher.windows)
    return out


def cost_report(fixture: Fixture, streams: int, settings: Settings, prompts_dir: Path,
                systems: tuple[str, ...] = COST_SYSTEMS) -> dict:
    """Every system on the same fixture, in order."""
    return {"fixture": f"{fixture.name}:{fixture.version}", "category": fixture.category,
            "seconds": round(len(fixture.samples) / fixture.rate, 2),
            "systems": [stream_cost(fixture, s, streams, settings, prompts_dir) for s in systems]}
