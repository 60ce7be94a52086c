"""The ``callbot`` console script: one click group; each part registers its subcommands here."""

from __future__ import annotations

import click

from callbot.config import ConfigError, Settings, load_settings, to_toml
from callbot.logs import setup_logging


class CliContext:
    """What every subcommand needs: the settings file and the log format chosen globally."""

    def __init__(self, config_path: str | None, json_logs: bool, verbose: bool) -> None:
        self.config_path = config_path
        self.json_logs = json_logs
        self.verbose = verbose

    def settings(self, **overrides: object) -> Settings:
        """Load settings with the subcommand's flags (dotted keys) applied last."""
        try:
            return load_settings(self.config_path, overrides=overrides)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (default: $CALLBOT_CONFIG).")
@click.option("--log-json", is_flag=True, help="Write logs to stderr as JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_json: bool, verbose: bool) -> None:
    """callbot: a FreeSWITCH outbound-call robot with real barge-in."""
    setup_logging(json_lines=log_json, verbose=verbose)
    ctx.obj = CliContext(config_path, log_json, verbose)


@main.command("config")
@click.option("--show-secrets", is_flag=True, help="Print passwords and tokens instead of ***.")
@click.pass_obj
def config_command(obj: CliContext, show_secrets: bool) -> None:
    """Print the effective settings (defaults, then --config file, then CALLBOT_* env) as TOML."""
    click.echo(to_toml(obj.settings(), redact=not show_secrets))


def _register() -> None:
    """Attach each part's commands; imports stay here so `callbot --help` lists them all."""
    from audio_server.amd_cli import commands as amd_commands
    from audio_server.cli import commands as audio_commands
    from audio_server.stt_cli import commands as stt_commands
    from robot.bench_cli import commands as bench_commands
    from robot.checks_cli import commands as check_commands
    from robot.cli import commands as robot_commands
    from simswitch.cli import commands as simswitch_commands

    for command in [*audio_commands, *amd_commands, *stt_commands, *check_commands, *simswitch_commands,
                    *robot_commands, *bench_commands]:
        main.add_command(command)


_register()
