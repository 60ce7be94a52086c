"""``callbot stt-bench``: the speech-recognition benchmark as a command that prints JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click

from callbot.audio_server.bench.stt import BENCH_FIXTURES, FIXTURES, run_bench
from callbot.audio_server.stt.engine import SttModelError


@click.command("stt-bench")
@click.option("--streams", default="1,4,8,16", show_default=True,
              help="Comma-separated numbers of concurrent talking streams, one run each.")
@click.option("--duration", "duration_s", type=click.FloatRange(1, 600), default=12.0, show_default=True,
              help="Seconds of audio each stream plays per run (real time).")
@click.option("--fixtures", default=",".join(BENCH_FIXTURES), show_default=True,
              help="Comma-separated fixture names (NAME.wav in --fixtures-dir), played in turn.")
@click.option("--fixtures-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=FIXTURES,
              show_default=True, help="Directory of the fixture WAVs.")
@click.option("--workers", type=int, default=None, help="Override stt.workers.")
@click.option("--cpu-threads", type=int, default=None, help="Override stt.cpu_threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (the default output too).")
@click.pass_obj
def stt_bench(obj, streams: str, duration_s: float, fixtures: str, fixtures_dir: Path, workers: int | None,
              cpu_threads: int | None, as_json: bool) -> None:
    """Final latency, real-time factor and CPU per audio second for N concurrent talking streams."""
    try:
        levels = tuple(int(n) for n in streams.split(","))
    except ValueError:
        raise click.BadParameter(f"{streams!r}: expected numbers like 1,4,8,16", param_hint="--streams") from None
    if any(n < 1 or n > 64 for n in levels):
        raise click.BadParameter("each level must be between 1 and 64 streams", param_hint="--streams")
    settings = obj.settings(**{"stt.workers": workers, "stt.cpu_threads": cpu_threads})
    try:
        names = tuple(f.strip() for f in fixtures.split(",") if f.strip())
        report = run_bench(settings, levels, duration_s, names, fixtures_dir)
    except (SttModelError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=None if as_json else 2))


commands = [stt_bench]
