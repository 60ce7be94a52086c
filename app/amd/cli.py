"""The ``amd-report`` subcommand: score answering-machine and beep detection on a fixture directory."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from callbot.cli_context import CliContext


@click.command("amd-report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@click.option("--notsure-as", type=click.Choice(["human", "machine"]), default="human", show_default=True,
              help="How a notsure decision is scored (the robot's default treats it as human).")
@click.option("--via", type=click.Choice(["replay", "pipeline"]), default="replay", show_default=True,
              help="replay: a whole replayed call per fixture (switch emulator, audio server, robot); "
                   "pipeline: the audio stages alone (fast; no robot, so no voicemail prompt timing).")
@click.option("--stt", is_flag=True,
              help="With --via pipeline: run the configured Whisper model so partials and finals reach the AMD.")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Scenario for --via replay (its [voicemail] section decides what a machine gets).")
@click.option("--speed", type=float, default=3.0, show_default=True,
              help="Virtual clock speed for --via replay (faster inflates the robot's reaction times in call time).")
@click.pass_obj
def amd_report_command(obj: CliContext, directory: Path, as_json: bool, notsure_as: str, via: str, stt: bool,
                       scenario: Path | None, speed: float) -> None:
    """Replay every fixture in DIRECTORY (NAME.wav + NAME.json with expect.amd); print the confusion
    matrix, decision times, accuracy, beep timing and where the voicemail prompt started.

    --via replay (default) places each call through the switch emulator, one shared audio server
    (with speech recognition) and the robot acting on AMD; the voicemail prompt's start is measured
    at the switch. --via pipeline runs the audio pipeline's AMD and beep stages only (with --stt,
    real Whisper hints too).
    """
    from callbot.app.amd.replay import FixtureError, load_engine, pipeline_replay, robot_replay
    from callbot.app.amd.report import amd_report, fixture_wavs, format_report

    if stt and via != "pipeline":
        raise click.ClickException("--stt applies to --via pipeline; --via replay runs the audio server's own STT")
    settings = obj.settings()
    try:
        fixture_wavs(directory)  # before a replay loads the speech model
    except FixtureError as exc:
        raise click.ClickException(str(exc)) from None
    with contextlib.ExitStack() as stack:
        if via == "replay":
            from callbot.app.replay import audio_server_thread, replay_settings

            port = stack.enter_context(audio_server_thread(replay_settings(settings)))
            replay, mode = robot_replay(port, scenario, speed), "replay"
        else:
            replay = pipeline_replay(load_engine(settings) if stt else None)
            mode = "pipeline+stt" if stt else "pipeline"
        try:
            report = amd_report(directory, settings, replay=replay, mode=mode, notsure_as=notsure_as)
        except FixtureError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=1) if as_json else format_report(report))


commands = [amd_report_command]
