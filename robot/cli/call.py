"""`callbot call DEST --scenario FILE`: one call against a real FreeSWITCH (or simswitch)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from callbot.cli_context import CliContext


def live_printer(row: dict[str, Any]) -> None:
    from callbot.robot.report import describe

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
    from callbot.robot.call.record import CallRecord
    from callbot.robot.checks import StartupCheckError
    from callbot.robot.esl.client import EslError
    from callbot.robot.shell.gevent_thread import GeventThread
    from callbot.robot.shell.one_call import run_one_call
    from callbot.robot.report import build_report, render_text
    from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario
    from callbot.robot.store import Store, StoreWriter

    from callbot.robot.esl.commands import DialStringError, check_dial_string

    settings = obj.settings(**{"robot.scenario": scenario_path})
    try:
        check_dial_string(destination)
    except DialStringError as exc:
        raise click.BadParameter(str(exc), param_hint="DESTINATION") from None
    try:
        sc = load_scenario(settings.robot.scenario or bundled_scenario(), rate=settings.robot.prompt_rate,
                           prompts_dir=settings.prompts.path())
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    robot = GeventThread("robot")
    robot.start()
    try:
        record: CallRecord = robot.call(run_one_call, settings, sc, destination, on_entry=live_printer)
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
    sys.exit(call_exit_code(record))


def call_exit_code(record: Any) -> int:
    """0 for a call that ran its scenario to an end; 1 when something failed; 3 when the call did not
    complete (not answered, busy, the callee hung up before the end)."""
    if record.scenario_completed:
        return 0
    return 1 if "error" in record.flags else 3


commands = [call]
