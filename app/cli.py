"""The ``callbot`` console script: one click group; each part registers its subcommands here."""

from __future__ import annotations

import click

from callbot import __version__
from callbot.cli_context import CliContext
from callbot.config import to_toml
from callbot.logs import setup_logging


@click.group()
@click.version_option(__version__, "--version", prog_name="callbot")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (default: $CALLBOT_CONFIG).")
@click.option("--db", "db_url", default=None,
              help="Database URL (db.url; default sqlite:///callbot.db, or $CALLBOT_DB_URL).")
@click.option("--log-json", is_flag=True, help="Write logs to stderr as JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, db_url: str | None, log_json: bool, verbose: bool) -> None:
    """callbot: a FreeSWITCH outbound-call robot with real barge-in."""
    setup_logging(json_lines=log_json, verbose=verbose)
    ctx.obj = CliContext(config_path, log_json, verbose, db_url)


@main.command("config")
@click.option("--show-secrets", is_flag=True, help="Print passwords and tokens instead of ***.")
@click.pass_obj
def config_command(obj: CliContext, show_secrets: bool) -> None:
    """Print the effective settings (defaults, then --config file, then CALLBOT_* env) as TOML."""
    click.echo(to_toml(obj.settings(), redact=not show_secrets))


def _register() -> None:
    """Attach each part's commands; this is the one module that imports every part."""
    from callbot.app.amd.cli import commands as amd_commands
    from callbot.app.bench.cli import commands as bench_commands
    from callbot.app.replay_cli import commands as replay_commands
    from callbot.audio_server.bench.cli import commands as stt_commands
    from callbot.audio_server.cli import commands as audio_commands
    from callbot.robot.cli.call import commands as robot_commands
    from callbot.robot.cli.campaign import commands as campaign_commands
    from callbot.robot.cli.checks import commands as check_commands
    from callbot.robot.cli.db import commands as db_commands
    from callbot.robot.cli.dnc import commands as dnc_commands
    from callbot.simswitch.cli import commands as simswitch_commands

    for command in [*audio_commands, *amd_commands, *stt_commands, *check_commands, *simswitch_commands,
                    *robot_commands, *replay_commands, *bench_commands, *campaign_commands, *dnc_commands,
                    *db_commands]:
        main.add_command(command)
    from callbot.app.eval.cli import eval_command  # `callbot eval`: barge-in quality on labelled fixtures
    main.add_command(eval_command)
    from callbot.app.simulate_cli import simulate_command  # `callbot campaign simulate`: robot/ never imports app/
    main.commands["campaign"].add_command(simulate_command)


_register()
