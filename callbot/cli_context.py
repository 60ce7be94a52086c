"""What every subcommand gets from the global options: the settings file and the log format."""

from __future__ import annotations

import click

from callbot.config import ConfigError, Settings, load_settings


class CliContext:
    """What every subcommand needs: the settings file and the log format chosen globally."""

    def __init__(self, config_path: str | None, json_logs: bool, verbose: bool, db_url: str | None = None) -> None:
        self.config_path = config_path
        self.json_logs = json_logs
        self.verbose = verbose
        self.db_url = db_url  # the global --db, a flag like any other: applied over file and env

    def settings(self, **overrides: object) -> Settings:
        """Load settings with the subcommand's flags (dotted keys) applied last."""
        try:
            return load_settings(self.config_path, overrides={"db.url": self.db_url, **overrides})
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
