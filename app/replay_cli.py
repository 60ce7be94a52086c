"""`callbot replay FIXTURE`: one recorded call through simswitch, the audio server and the robot."""

from __future__ import annotations

import json

import click

from callbot.cli_context import CliContext
from callbot.robot.cli.call import live_printer


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
    from callbot.app.replay import ReplayError
    from callbot.app.replay import replay as run_replay
    from callbot.robot.report import render_text
    from callbot.robot.scenario.loader import ScenarioError

    settings = obj.settings()
    try:
        report = run_replay(fixture, settings, scenario=scenario_path, speed=speed,
                            on_entry=live_printer if live else None)
    except (ReplayError, ScenarioError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))


commands = [replay]
