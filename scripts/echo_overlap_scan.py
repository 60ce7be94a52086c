"""When does a caller who talks over the robot's prompt barge in, as a function of when the prompt started?

The audio pipeline in-process (no sockets, no clock): one fixture's audio as the caller, and a playback
marker for a prompt at each start time from --from to --to. On a line without echo (the fixture alone)
the barge-in should not depend on when the prompt started; the echo gate's worst-case guess before it
knows the line makes it depend. Prints one JSON document: the barge-in time per prompt start, and the
start times grouped by the barge-in time they gave (null: no barge-in).

    python scripts/echo_overlap_scan.py --fixture pauses_2500ms --from 0 --to 3 --step 0.01
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid

import click

from callbot.audio_server.echo.reference import load_prompt_reference
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import BargeIn
from callbot.resources import demo_calls_dir, prompts_dir

CALL = str(uuid.UUID(int=1))


def barge_in_at(data: bytes, rate: int, settings: Settings, prompt: object, start_s: float) -> float | None:
    """The first barge-in's stream time with the prompt's marker at ``start_s``, in 20 ms messages."""
    pipeline = StreamPipeline(dataclasses.replace(StreamParams.defaults(CALL, settings), rate=rate), settings)
    step = rate * 2 // 50
    marked = False
    for i in range(0, len(data), step):
        if not marked and i / 2 / rate >= start_s:
            pipeline.playback_started(prompt, start_s)  # type: ignore[arg-type]
            marked = True
        for event in pipeline.feed(data[i:i + step]).events:
            if isinstance(event, BargeIn):
                return event.t
    return None


@click.command()
@click.option("--fixture", default="pauses_2500ms", show_default=True, help="A bundled demo call (the caller).")
@click.option("--prompt", default="en/16000/greeting.wav", show_default=True, help="Under the prompts directory.")
@click.option("--from", "first", type=click.FloatRange(0, 60), default=0.0, show_default=True)
@click.option("--to", "last", type=click.FloatRange(0, 60), default=3.0, show_default=True)
@click.option("--step", type=click.FloatRange(0.005, 10), default=0.01, show_default=True)
def main(fixture: str, prompt: str, first: float, last: float, step: float) -> None:
    settings = Settings()
    wav = demo_calls_dir() / f"{fixture}.wav"
    if not wav.is_file():
        raise click.BadParameter(f"{wav} does not exist", param_hint="--fixture")
    samples, rate = read_wav(wav)
    reference = load_prompt_reference(prompts_dir(), prompt, rate)
    data = samples.astype("<i2").tobytes()
    starts = [round(first + k * step, 3) for k in range(int((last - first) / step + 1e-9) + 1)]
    results = {}
    for n, start in enumerate(starts, 1):
        results[start] = barge_in_at(data, rate, settings, reference, start)
        print(f"\r{n}/{len(starts)} prompt starts", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    groups: dict[str, list[float]] = {}
    for start, t in results.items():
        groups.setdefault("null" if t is None else f"{t:.2f}", []).append(start)
    json.dump({"fixture": fixture, "prompt": prompt, "barge_in_by_prompt_start": {f"{k:.3f}": v for k, v in results.items()},
               "prompt_starts_by_barge_in": groups}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
