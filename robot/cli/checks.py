"""The ``callbot check`` subcommand: run the robot's start-up checks and print each result with its fix."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from callbot.cli_context import CliContext


@click.command("check")
@click.option("--esl-host", default=None, help="Event Socket host (default: esl.host).")
@click.option("--esl-port", type=int, default=None, help="Event Socket port (default: esl.port).")
@click.option("--audio-url", default=None, help="Audio server ws:// URL as the switch dials it "
                                                "(default: audio_server.public_url, else host and port).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def check(obj: CliContext, esl_host: str | None, esl_port: int | None, audio_url: str | None, as_json: bool) -> None:
    """Check the switch (reachable, password, mod_audio_stream) and the audio server (/healthz); exit 1 on failure."""
    from callbot.robot.checks import format_results, run_checks

    settings = obj.settings(**{"esl.host": esl_host, "esl.port": esl_port, "audio_server.public_url": audio_url})
    results = run_checks(settings)
    ok = all(r.ok for r in results)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [dataclasses.asdict(r) for r in results]}, indent=2))
    else:
        click.echo(format_results(results))
    sys.exit(0 if ok else 1)


commands = [check]
