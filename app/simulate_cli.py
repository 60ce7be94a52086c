"""`callbot campaign simulate NAME`: the campaign, simswitch and an audio server in this process (app.simulate)."""

from __future__ import annotations

import json
import sys

import click

from callbot.cli_context import CliContext


@click.command("simulate")
@click.argument("name")
@click.option("--callees", "callees", required=True, type=click.Path(dir_okay=False, exists=True),
              help="simswitch's number,callee CSV (see `callbot simswitch --callees`).")
@click.option("--cdr", "cdr", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per originate the switch received to this file.")
@click.option("--start", "start", required=True, help="The virtual clock's start, ISO-8601 (e.g. 2024-06-03T06:00:00Z).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="How fast the clock may run when nobody is busy (decisions do not depend on it).")
@click.option("--wait-s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Keep running while the next contact is due within this many seconds (campaign clock).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Calls at once (default: the campaign's max_concurrent).")
@click.option("--cps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Originates per second (default: the campaign's calls_per_second).")
@click.option("--stt", is_flag=True, help="Run speech recognition in the audio server (default: off, as a dry run).")
@click.option("--free-run", is_flag=True,
              help="No speed limit (--speed is ignored): the clock goes at once to the next instant anyone waits for "
                   "(a media tick, a call's deadline, the next dial), so idle hours take no wall time.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout at the end.")
@click.pass_obj
def simulate_command(obj: CliContext, name: str, callees: str, cdr: str | None, start: str, speed: float,
                     wait_s: float, max_concurrent: int | None, cps: float | None, stt: bool, free_run: bool,
                     as_json: bool) -> None:
    """Dry-run campaign NAME against a simulated switch in this process, on its virtual clock from --start.

    Like `campaign run --speed` against `callbot simswitch` and an audio server, but the three share one
    clock in lockstep, so windows, retries, pacing and every call decide the same at any --speed: a day
    of the campaign plays out in minutes. The attempts are written to the campaign's database (use a
    copy of it, or a scratch database, before dialling for real). Exit codes as `campaign run`.
    """
    from callbot.app.simulate import simulate
    from callbot.robot.campaign.claims import default_runner_id
    from callbot.robot.campaign.progress import for_stderr
    from callbot.robot.campaign.settings import effective
    from callbot.robot.campaign.runner import RunOptions
    from callbot.robot.campaign.times import parse_iso
    from callbot.robot.cli.db import USAGE, exits_cleanly, fail, open_engine

    @exits_cleanly
    def run() -> None:
        try:
            start_at = parse_iso(start)
        except ValueError as exc:
            fail(f"--start: {exc}", USAGE)
        settings = obj.settings()
        runner = default_runner_id()
        options = RunOptions(name=name, runner_id=runner, max_concurrent=max_concurrent, cps=cps, wait_s=wait_s,
                             speed=speed, start=start_at)
        result, figures = simulate(
            settings, open_engine(obj, check_schema=False), options,
            lambda campaign: effective(settings, campaign.settings, f"campaign {campaign.name} settings"),
            for_stderr(), callees=callees, cdr=cdr, start=start, stt=stt, free_run=free_run)
        if as_json:
            click.echo(json.dumps({**result.as_json(name, runner), "simulation": figures}))
        if result.exit_code:
            click.echo(f"Error: {result.message}" if result.exit_code == 1 else result.message, err=True)
        else:
            click.echo(f"{name}: {result.message} ({result.attempts} attempts, {figures['campaign_s']:g} s of "
                       f"campaign time in {figures['wall_s']:g} s)", err=True)
        sys.exit(result.exit_code)

    run()

