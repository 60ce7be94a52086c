"""The ``callbot bench`` subcommand: N concurrent scored replays (or a ramp of them), one JSON document (DESIGN section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from callbot.cli_context import CliContext


@click.command("bench")
@click.option("--calls", type=int, default=None,
              help="Concurrent calls (default: bench.calls, 8); fixtures are cycled.")
@click.option("--fixtures", "fixtures_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of WAVs with NAME.json sidecars (default: the bundled demo calls).")
@click.option("--speed", type=float, default=None, help="The switch's clock rate (default: bench.speed, 1 = real time; N× also means N× the audio load).")
@click.option("--ramp", is_flag=True, help="Spread call starts evenly over bench.ramp_s call seconds.")
@click.option("--ramp-to", type=click.IntRange(1), default=None,
              help="Run the bench at --step, 2×--step, ... up to this many calls and find the knee: the first "
                   "count where a barge-in is missed or the latency p95 passes 40 ms.")
@click.option("--step", type=click.IntRange(1), default=None, help="Calls added at each ramp step (default: "
                                                                  "a tenth of --ramp-to).")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --ramp-to: plot latency p50/p95, misses and CPU against calls to this PNG file.")
@click.option("--no-stt", is_flag=True, help="Barge-in, AMD and beeps only: the audio server loads no Whisper model.")
@click.option("--server-workers", type=click.IntRange(1, 1024), default=None,
              help="The audio server's worker processes (default: audio_server.workers, else one per CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole document (with per-call rows) on stdout.")
@click.pass_obj
def bench(obj: CliContext, calls: int | None, fixtures_dir: Path | None, speed: float | None, ramp: bool,
          ramp_to: int | None, step: int | None, png: Path | None, no_stt: bool, server_workers: int | None,
          as_json: bool) -> None:
    """Run N concurrent replayed calls through one simswitch, one audio server and one robot; score each
    against its sidecar: barge-ins expected/detected/missed/false and their latency at the switch,
    transcript latency, CPU seconds per component, peak RSS. Progress goes to stderr.

    With --ramp-to, run that bench at increasing call counts and print the ramp (each step's document
    without per-call rows, and the knee); --png draws it."""
    from callbot.app.bench.proc import BenchError
    from callbot.app.bench.run import run_bench
    from callbot.robot.checks import StartupCheckError
    from callbot.robot.scenario.loader import ScenarioError

    if ramp_to is None and (step is not None or png is not None):
        raise click.UsageError("--step and --png go with --ramp-to N")
    if ramp_to is not None and calls is not None:
        raise click.UsageError("--calls and --ramp-to exclude each other: a ramp sets the calls of each step")
    settings = obj.settings(**{"bench.calls": calls, "bench.speed": speed,
                               "stt.enabled": False if no_stt else None, "audio_server.workers": server_workers})

    def progress(done: int, total: int, status: str) -> None:
        click.echo(f"bench: {done}/{total} calls finished ({status})", err=True)

    def run_one(count: int) -> dict:
        return run_bench(settings, calls=count, fixtures_dir=fixtures_dir, speed=settings.bench.speed, ramp=ramp,
                         config_path=obj.config_path, progress=progress)

    try:
        if ramp_to is not None:
            _ramp(run_one, ramp_to, step or max(1, ramp_to // 10), png)
            return
        doc = run_one(settings.bench.calls)
    except (BenchError, ScenarioError, StartupCheckError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        click.echo(json.dumps({k: v for k, v in doc.items() if k != "per_call"}, indent=1))
        for row in doc["per_call"]:
            click.echo(f"{row['fixture']:24} barge-in expected={row['expected_barge_in']!s:5} "
                       f"got={row['barge_in']!s:5} latency={row['latency_ms']} ms "
                       f"finals={row['finals']} {row['error'] or ''}")


def _ramp(run_one, ramp_to: int, step: int, png: Path | None) -> None:
    from callbot.app.bench.plot import draw_ramp
    from callbot.app.bench.ramp import run_ramp

    def announce(i: int, total: int, calls: int) -> None:
        click.echo(f"bench ramp: step {i}/{total}: {calls} calls", err=True)

    doc = run_ramp(run_one, ramp_to, step, announce)
    if png is not None:
        draw_ramp(doc, png)
        doc["png"] = str(png)
    click.echo(json.dumps(doc, indent=1))


commands = [bench]
