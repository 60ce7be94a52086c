"""``callbot simswitch``: run the FreeSWITCH emulator until stopped (Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime, timezone

import click

from callbot.simswitch.bench.load import simswitch_load
from callbot.simswitch.server import SimSwitch


@click.command("simswitch")
@click.option("--esl-port", type=int, default=None, help="Event Socket port on 127.0.0.1 (default 8021; 0 = free port).")
@click.option("--password", default=None, help="ESL password (default ClueCon).")
@click.option("--speed", type=float, default=None, help="Virtual clock speed: 20 runs a 60 s call in 3 s (default 1).")
@click.option("--fixtures", "fixtures_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory where fixture/<name> dial strings find callee WAVs.")
@click.option("--callees", type=click.Path(dir_okay=False, exists=True), default=None,
              help="CSV with the columns number,callee: an originate to a number reaches that callee "
                   "(a dial spec; relative WAVs from the CSV's folder); other numbers get UNALLOCATED_NUMBER.")
@click.option("--cdr", type=click.Path(dir_okay=False), default=None,
              help="Append one JSON line per originate received to this file, when the call ends.")
@click.option("--start", default=None,
              help="ISO-8601 instant where the virtual clock starts, e.g. 2026-03-02T08:00:00Z (default: now).")
@click.pass_obj
def simswitch_command(obj, esl_port: int | None, password: str | None, speed: float | None,
                      fixtures_dir: str | None, callees: str | None, cdr: str | None, start: str | None) -> None:
    """Emulate FreeSWITCH + mod_audio_stream: ESL on --esl-port, callees from --fixtures or --callees.

    Dial strings: fixture/<wav>[?answer_delay_ms=..&hangup_after_s=..&hangup_at_end=true&dtmf=9@4.5]
    and error/<cause>; with --callees, any endpoint whose last segment is a number of the file.
    Runs until interrupted (SIGINT or SIGTERM); calls still up then get their CDR line.
    """
    if speed is not None and not speed > 0:
        raise click.BadParameter(f"--speed must be > 0, got {speed}")
    settings = obj.settings(**{"simswitch.esl_port": esl_port, "simswitch.password": password,
                               "simswitch.speed": speed, "simswitch.fixtures_dir": fixtures_dir})
    try:
        switch = SimSwitch(settings.simswitch, callees=callees, cdr=cdr, start=start)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def _run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await switch.start()
        epoch = datetime.fromtimestamp(switch.clock.epoch_us(0) / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")
        click.echo(f"simswitch listening on {settings.simswitch.esl_host}:{switch.esl_port} "
                   f"(speed {settings.simswitch.speed:g}, virtual clock from {epoch})", err=True)
        try:
            await stopping.wait()
        finally:
            await switch.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run())


commands = [simswitch_command, simswitch_load]
