"""The ``callbot bench`` subcommand: N concurrent scored replays, one JSON document (DESIGN section 5)."""

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
@click.option("--json", "as_json", is_flag=True, help="Print the whole document (with per-call rows) on stdout.")
@click.pass_obj
def bench(obj: CliContext, calls: int | None, fixtures_dir: Path | None, speed: float | None, ramp: bool,
          as_json: bool) -> None:
    """Run N concurrent replayed calls through one simswitch, one audio server and one robot; score each
    against its sidecar: barge-ins expected/detected/missed/false and their latency at the switch,
    transcript latency, CPU seconds per component, peak RSS. Progress goes to stderr."""
    from callbot.app.bench.run import run_bench
    from callbot.app.bench.proc import BenchError
    from callbot.robot.checks import StartupCheckError
    from callbot.robot.scenario.loader import ScenarioError

    settings = obj.settings(**{"bench.calls": calls, "bench.speed": speed})

    def progress(done: int, total: int, status: str) -> None:
        click.echo(f"bench: {done}/{total} calls finished ({status})", err=True)

    try:
        doc = run_bench(settings, calls=settings.bench.calls, fixtures_dir=fixtures_dir,
                        speed=settings.bench.speed, ramp=ramp, config_path=obj.config_path, progress=progress)
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


commands = [bench]
