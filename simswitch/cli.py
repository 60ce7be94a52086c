"""``callbot simswitch``: run the FreeSWITCH emulator until stopped (Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib

import click

from callbot.simswitch.bench.load import simswitch_load
from callbot.simswitch.server import SimSwitch


@click.command("simswitch")
@click.option("--esl-port", type=int, default=None, help="Event Socket port on 127.0.0.1 (default 8021; 0 = free port).")
@click.option("--password", default=None, help="ESL password (default ClueCon).")
@click.option("--speed", type=float, default=None, help="Virtual clock speed: 20 runs a 60 s call in 3 s (default 1).")
@click.option("--fixtures", "fixtures_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory where fixture/<name> dial strings find callee WAVs.")
@click.pass_obj
def simswitch_command(obj, esl_port: int | None, password: str | None, speed: float | None,
                      fixtures_dir: str | None) -> None:
    """Emulate FreeSWITCH + mod_audio_stream: ESL on --esl-port, callees from --fixtures.

    Dial strings: fixture/<wav>[?answer_delay_ms=..&hangup_after_s=..&hangup_at_end=true]
    and error/<cause>. Runs until interrupted.
    """
    if speed is not None and not speed > 0:
        raise click.BadParameter(f"--speed must be > 0, got {speed}")
    settings = obj.settings(**{"simswitch.esl_port": esl_port, "simswitch.password": password,
                               "simswitch.speed": speed, "simswitch.fixtures_dir": fixtures_dir})
    try:
        switch = SimSwitch(settings.simswitch)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def _run() -> None:
        await switch.start()
        click.echo(f"simswitch listening on {settings.simswitch.esl_host}:{switch.esl_port} "
                   f"(speed {settings.simswitch.speed:g})", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await switch.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run())


commands = [simswitch_command, simswitch_load]
