"""The robot's subcommands: `callbot call DEST --scenario FILE` and `callbot replay FIXTURE`."""

from __future__ import annotations

import json
from typing import Any

import click

from callbot.cli import CliContext


def _live_printer(row: dict[str, Any]) -> None:
    from robot.report import describe

    line = describe(row)
    if line is not None:
        click.echo(line, err=True)


@click.command("call")
@click.argument("destination")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False), default=None,
              help="Scenario TOML (default: robot.scenario, else the bundled English example).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout.")
@click.option("--no-db", is_flag=True, help="Do not record the call in the database (db.url).")
@click.pass_obj
def call(obj: CliContext, destination: str, scenario_path: str | None, as_json: bool, no_db: bool) -> None:
    """Place one call to DESTINATION (a dial string such as sofia/gateway/gw/123) and run the scenario.

    The switch is [esl] host/port/password; the audio server is audio_server.public_url. The live
    timeline goes to stderr as it happens; the result follows on stdout.
    """
    from robot.call_record import CallRecord
    from robot.checks import StartupCheckError
    from robot.esl_client import EslError
    from robot.gevent_thread import GeventThread
    from robot.one_call import run_one_call
    from robot.report import build_report, render_text
    from robot.scenario import ScenarioError, bundled_scenario, load_scenario
    from robot.store import Store, StoreWriter

    settings = obj.settings(**{"robot.scenario": scenario_path})
    try:
        sc = load_scenario(settings.robot.scenario or bundled_scenario(), rate=settings.robot.prompt_rate,
                           prompts_dir=settings.robot.prompts_dir)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    robot = GeventThread("robot")
    robot.start()
    try:
        record: CallRecord = robot.call(run_one_call, settings, sc, destination, on_entry=_live_printer)
    except (StartupCheckError, EslError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        robot.stop()
    report = build_report(record)
    if not no_db:
        writer = StoreWriter(Store(settings.db.url), settings.db.write_queue_max)
        writer.submit(report, destination, sc.name)
        writer.close()
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


@click.command("replay")
@click.argument("fixture")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False), default=None,
              help="Scenario TOML (default: the bundled English example: a prompt with barge-in, then listen).")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Run the switch's clock N times faster than real time (e.g. 10).")
@click.option("--json", "as_json", is_flag=True, help="Print the report (DESIGN section 5 keys) on stdout.")
@click.option("--live", is_flag=True, help="Also print the timeline to stderr while the call runs.")
@click.pass_obj
def replay(obj: CliContext, fixture: str, scenario_path: str | None, speed: float, as_json: bool,
           live: bool) -> None:
    """Replay one call whose callee voice is FIXTURE (a WAV, or a bundled fixture name such as long_reply).

    Starts simswitch, the audio server and the robot in this process (separate threads, sockets
    between them, free ports on 127.0.0.1), places the call, and reports it: a readable timeline,
    or with --json the report whose times are call seconds from the answer.
    """
    from robot.replay import ReplayError
    from robot.replay import replay as run_replay
    from robot.report import render_text
    from robot.scenario import ScenarioError

    settings = obj.settings()
    try:
        report = run_replay(fixture, settings, scenario=scenario_path, speed=speed,
                            on_entry=_live_printer if live else None)
    except (ReplayError, ScenarioError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


commands = [call, replay]
