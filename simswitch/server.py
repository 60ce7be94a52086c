"""``SimSwitch``: the emulator object that ties the ESL listener, the calls and the media tick together."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid as uuidlib
from pathlib import Path
from typing import Any, Callable

from callbot.config import SimSwitchSettings
from callbot.esl.protocol import EslEvent
from callbot.resources import demo_calls_dir

from callbot.simswitch.calls.cdr_file import CdrFile
from callbot.simswitch.calls.channel import Channel
from callbot.simswitch.calls.directory import CalleeDirectory
from callbot.simswitch.calls.registry import CallRegistry
from callbot.simswitch.calls.truth import CallTruth
from callbot.simswitch.clock import MEDIA_TICK_S, SimClock, epoch_of
from callbot.simswitch.esl.api_commands import ApiCommands
from callbot.simswitch.esl.event_factory import EventFactory, SwitchIdentity
from callbot.simswitch.esl.server import RUDE_REJECTION, EslConnection

log = logging.getLogger(__name__)

DEFAULT_FIXTURES = demo_calls_dir()
TICK_LAGS_KEPT = 60_000  # 20 minutes of media ticks


def _unlisted(settings: SimSwitchSettings, name: str, given: Any) -> Any:
    """A setting that belongs in ``[simswitch]`` (callees, cdr, start) but callbot/config.py lacks yet:
    the keyword argument, else the settings' field once it exists, else None."""
    return given if given is not None else getattr(settings, name, None)


class SimSwitch:
    """A FreeSWITCH + mod_audio_stream emulator on 127.0.0.1: the one place that composes its parts.

    The parts (channels, their media, the API commands, the ESL connections) see it only as a
    ``host.SwitchHost``.

    Keyword arguments override the settings section; without settings, ``esl_port`` defaults to
    0 (a free port, read ``.esl_port`` after ``start()``). For campaigns (DESIGN section 8):
    ``callees`` a CSV of number → callee, ``cdr`` a JSONL file to append call records to, ``start``
    the ISO-8601 instant where the virtual epoch begins. Bad values raise ValueError.
    """

    def __init__(self, settings: SimSwitchSettings | None = None, *, speed: float | None = None,
                 esl_port: int | None = None, password: str | None = None,
                 fixtures_dir: str | Path | None = None, callees: str | Path | None = None,
                 cdr: str | Path | None = None, start: str | None = None) -> None:
        base = settings or SimSwitchSettings(esl_port=0)
        overrides: dict[str, Any] = {k: v for k, v in (("speed", speed), ("esl_port", esl_port),
                                                         ("password", password)) if v is not None}
        if fixtures_dir is not None:
            overrides["fixtures_dir"] = str(fixtures_dir)
        self.settings = dataclasses.replace(base, **overrides)
        if not self.settings.password.strip():
            raise ValueError("simswitch: the ESL password is empty, so any client could control the switch; "
                             "set simswitch.password (--password, CALLBOT_SIMSWITCH_PASSWORD) to a non-empty value")
        if self.settings.esl_host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("simswitch listening beyond loopback", extra={"host": self.settings.esl_host})
        fx = self.settings.fixtures_dir
        self.fixtures_dir: Path | None = Path(fx) if fx else (DEFAULT_FIXTURES if DEFAULT_FIXTURES.is_dir() else None)
        start = _unlisted(self.settings, "start", start)
        self.clock = SimClock(self.settings.speed, epoch_of(start) if start else None)
        self.events = EventFactory(self.clock, SwitchIdentity(
            core_uuid=str(uuidlib.uuid4()), hostname=self.settings.hostname))
        self._has_calls = asyncio.Event()  # the media tick sleeps while there is no call
        self.registry = CallRegistry(self.settings.max_finished_calls, on_add=self._has_calls.set)
        callees = _unlisted(self.settings, "callees", callees)
        directory = (CalleeDirectory.with_callees_file(callees, self.fixtures_dir, self.settings.answer_delay_ms)
                     if callees else CalleeDirectory(self.fixtures_dir, self.settings.answer_delay_ms))
        cdr = _unlisted(self.settings, "cdr", cdr)
        self.cdr = CdrFile(cdr) if cdr else None
        # Told (on the switch's loop) each time an event is queued for a listener: a replay holds the clock
        # until the robot has handled it (app.pacing), so the robot's reaction takes no call time.
        self.on_event_queued: Callable[[], None] | None = None
        # An in-process replay's lockstep: +1 per binary message sent to an audio server, -1 per text
        # frame received from one; with ``lockstep`` the media ticks also step the clock (a barrier).
        self.on_media_work: Callable[[int], None] | None = None
        self.lockstep = False
        self.api = ApiCommands(self, self.registry, directory, self.cdr)
        self.connections: set[EslConnection] = set()
        self.esl_port = 0
        self.max_tick_lag_s = 0.0  # worst lateness of the media tick (virtual s): > 0.02 means catch-up
        # each tick's lateness (virtual s), the last TICK_LAGS_KEPT: how far a load generator fell behind its media
        self.tick_lags: collections.deque[float] = collections.deque(maxlen=TICK_LAGS_KEPT)
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conn_tasks: set[asyncio.Task[Any]] = set()

    @property
    def calls(self) -> dict[str, Channel]:
        """Every call by uuid, live or finished (the finished ones for their ground truth)."""
        return self.registry.calls

    @property
    def live(self) -> dict[str, Channel]:
        """The calls that are up, or hung up and finishing their teardown."""
        return self.registry.live

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the ESL port (0 = a free one) and start the media tick."""
        self._server = await asyncio.start_server(self._accept, self.settings.esl_host, self.settings.esl_port)
        self.esl_port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())
        log.info("simswitch listening", extra={"host": self.settings.esl_host, "port": self.esl_port,
                                                "speed": self.settings.speed})

    async def stop(self) -> None:
        """Close the listener, every connection and every stream; calls are hung up (their CDR lines
        are written first, with ``ended_at`` null: they were still up)."""
        if self._server is not None:
            self._server.close()
        if self.cdr is not None:
            for ch in self.live.values():
                self.cdr.ended(ch.uuid, answered=ch.answered_tick is not None, cause=None, ended_us=None)
        for ch in list(self.live.values()):
            ch.hangup("MANAGER_REQUEST", "shutdown")
            ch.finish_hangup()
        for ch in self.calls.values():
            if ch.stream is not None:
                ch.stream.abort()
        for conn in list(self.connections):
            conn.close()
        if self._conn_tasks:  # closing the sockets lets each connection task end by itself
            await asyncio.wait(list(self._conn_tasks), timeout=2)
        tasks = [t for t in [self._ticker, *self._tasks] if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self.cdr is not None:
            self.cdr.close()

    async def __aenter__(self) -> "SimSwitch":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task until it ends (so it is not garbage-collected or lost at stop)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- connections and events -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.settings.max_connections:
            writer.write(RUDE_REJECTION)
            writer.close()
            return
        conn = EslConnection(self, self.api, self.registry, reader, writer, on_close=self.connections.discard)
        self.connections.add(conn)
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            await conn.run()
        finally:
            self._conn_tasks.discard(task)

    def publish(self, event: EslEvent) -> None:
        """Offer an event to every listener; payloads are serialised once per format."""
        serialized: dict[str, bytes] = {}
        for conn in list(self.connections):
            conn.offer(event, serialized)

    # ---- calls ------------------------------------------------------------------------------

    def on_channel_gone(self, uuid: str) -> None:
        channel = self.registry.gone(uuid)
        if self.cdr is not None and channel is not None:
            self.cdr.ended(uuid, answered=channel.answered_tick is not None, cause=channel.hangup_cause,
                           ended_us=channel.hangup_us)
        for conn in list(self.connections):
            conn.on_channel_gone(uuid)

    def truth(self, uuid: str) -> CallTruth:
        """The ground truth of a call (live or finished); KeyError if unknown."""
        return self.registry.truth(uuid)

    # ---- the media tick ---------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        """Run every live channel's 20 ms tick at absolute virtual deadlines; catch up if late."""
        tick = int(self.clock.now() / MEDIA_TICK_S) + 1
        while True:
            if not self.live:
                self.clock.set_barrier(self, None)
                self._has_calls.clear()
                await self._has_calls.wait()
                if self.lockstep:  # the media's schedule starts with it: idle time banks no lead
                    self.clock.restart_schedule()
                tick = max(tick, int(self.clock.now() / MEDIA_TICK_S) + 1)
            if self.lockstep:  # time does not pass the next tick before it has run
                self.clock.set_barrier(self, tick * MEDIA_TICK_S)
            await self.clock.sleep_until(tick * MEDIA_TICK_S)
            now = self.clock.now()
            lag = now - tick * MEDIA_TICK_S
            self.max_tick_lag_s = max(self.max_tick_lag_s, lag)
            self.tick_lags.append(lag)
            due = int(now / MEDIA_TICK_S + 1e-9)
            while tick <= due:
                for channel in list(self.live.values()):
                    try:
                        channel.on_tick(tick)
                    except Exception:  # one broken call must not stop the others
                        log.exception("media tick failed", extra={"call": channel.uuid})
                        channel.hangup("NORMAL_TEMPORARY_FAILURE", "switch")
                tick += 1
