"""The gevent shell around one sans-I/O :class:`~callbot.robot.call.call.Call`: events in, commands out, the clock.

The ESL dispatcher translates each routed event and puts it on the call's :class:`CallQueue`
(barge-in and hang-up jump ahead). This greenlet takes them off, hands them to the call with the
call-clock time, sends whatever commands the call asks for (feeding each reply straight back),
and sleeps until the next event or the call's next deadline. It is the only place that reads a
clock: ``CallTime.now()`` returns call-clock seconds (by default the wall clock times ``robot.speed``;
a replay passes simswitch's own virtual clock, so a held clock holds the call too, and is told when
the call is busy and what its next deadline is).
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from typing import Any, Callable, Protocol

from callbot.config import Settings
from callbot.esl.protocol import EslEvent
from callbot.robot.call.call import Call
from callbot.robot.call.commands import Api, Bgapi, Command
from callbot.robot.call.events import ApiFailed, ApiReply, Deadline, OriginateResult, ShellError
from callbot.robot.call.inbound import translate
from callbot.robot.call.record import CallRecord
from callbot.robot.call.timeline import Timeline
from callbot.robot.esl.errors import EslDisconnected, EslError
from callbot.robot.shell.queue import CallQueue

log = logging.getLogger(__name__)


class Switch(Protocol):
    """What a session needs from the ESL client (callbot.robot.esl.client.EslClient has it)."""

    def api(self, cmd: str, timeout: float | None = None) -> str: ...
    def bgapi_async(self, cmd: str, timeout: float | None = None) -> tuple[str, Any]: ...
    def route(self, call_uuid: str, callback: Callable[[EslEvent], None]) -> None: ...
    def unroute(self, call_uuid: str) -> None: ...


class CallTime(Protocol):
    """Where the call's time comes from, and who hears what the call is doing (a replay's pacing)."""

    def now(self) -> float:
        """Call-clock seconds."""

    def wall_delay(self, call_t: float) -> float:
        """Wall seconds to sleep until ``call_t`` (0 once it has passed)."""

    def busy(self, busy: bool) -> None:
        """Events wait for the call (True), or it has handled them all and sent its commands (False)."""

    def deadline(self, call_t: float | None) -> None:
        """The call's next deadline, told before it goes idle (None: it has none, or has ended)."""


class WallTime:
    """Live calls: the wall clock times ``speed``; nobody to tell."""

    def __init__(self, speed: float) -> None:
        self.speed = speed

    def now(self) -> float:
        return time.monotonic() * self.speed

    def wall_delay(self, call_t: float) -> float:
        return max(0.0, (call_t - self.now()) / self.speed)

    def busy(self, busy: bool) -> None:
        pass

    def deadline(self, call_t: float | None) -> None:
        pass


class CallSession:
    """Runs one call against ``switch`` following ``scenario``; :meth:`run` returns its CallRecord."""

    def __init__(self, switch: Switch, scenario: Any, settings: Settings, destination: str, *,
                 audio_url: str | None, call_uuid: str | None = None,
                 on_entry: Callable[[dict[str, Any]], None] | None = None,
                 call_time: CallTime | None = None) -> None:
        self.switch = switch
        self.settings = settings
        self.speed = settings.robot.speed
        self.time = call_time or WallTime(self.speed)
        self.clock = self.time.now
        self.call = Call(call_uuid or str(uuidlib.uuid4()), destination, scenario, settings, audio_url=audio_url,
                         timeline=Timeline(on_entry=on_entry))
        self.uuid = self.call.uuid
        self.record: CallRecord = self.call.record
        self.queue = CallQueue(settings.robot.queue_max)

    def flag(self, name: str, **fields: Any) -> None:
        """Mark the call before it starts (e.g. a failed start-up check)."""
        self.call.record.flags.append(name)
        self.call.record.timeline.add("robot", "flag", self.clock(), flag=name, **fields)

    def run(self) -> CallRecord:
        """Place and run the call to the end. Never raises for call-level trouble: it is in the record."""
        self.switch.route(self.uuid, self._on_esl)
        try:
            try:
                self.call.start(self.clock())
                self._drive()
            except Exception as exc:  # a bug or a dead client: record it, hang up, never leave a call open
                log.exception("call failed", extra={"call_uuid": self.uuid})
                self.call.handle(ShellError(f"{type(exc).__name__}: {exc}"), self.clock())
                try:
                    self._drive()
                except Exception:
                    log.exception("call could not be ended cleanly", extra={"call_uuid": self.uuid})
        finally:
            self.time.deadline(None)
            try:
                self.switch.unroute(self.uuid)
            except Exception as exc:  # e.g. the client was stopped first
                log.warning("unroute failed", extra={"call_uuid": self.uuid, "error": str(exc)})
        return self.record

    def _drive(self) -> None:
        """Send, wait, handle, until the call is done."""
        self._send_all()
        while not self.call.done:
            deadline = self.call.next_deadline()
            self.time.deadline(deadline)
            if not self.queue:
                self.time.busy(False)
            event = self.queue.get(None if deadline is None else self.time.wall_delay(deadline))
            now = self.clock()
            if event is not None:
                self.call.handle(event, now)
            elif deadline is not None and now >= deadline:
                self.call.handle(Deadline(), now)
            self._send_all()

    def _send_all(self) -> None:
        """Send every command the call asked for, in order; each reply goes straight back to the call."""
        commands = self.call.commands()
        while commands:
            for command in commands:
                self._send(command)
            commands = self.call.commands()

    def _send(self, command: Command) -> None:
        timeout = self.settings.esl.command_timeout_s
        match command:
            case Api(what=what, command=line):
                try:
                    reply = ApiReply(what, self.switch.api(line, timeout=timeout))
                except EslDisconnected as exc:
                    reply = ApiFailed(what, str(exc), link_down=True)
                except EslError as exc:
                    reply = ApiFailed(what, str(exc), link_down=False)
                self.call.handle(reply, self.clock())
            case Bgapi(command=line, timeout_s=timeout_s):
                _, waiter = self.switch.bgapi_async(line, timeout=timeout_s / self.speed)
                waiter.rawlink(self._job_done)

    def _put(self, event: object) -> None:
        self.time.busy(True)
        self.queue.put(event)

    def _job_done(self, result: Any) -> None:
        if result.successful():
            self._put(OriginateResult(result.value))
        else:
            self._put(OriginateResult(None, error=str(result.exception)))

    def _on_esl(self, event: EslEvent) -> None:
        """Dispatcher callback: translate and queue; never blocks, never does the work itself."""
        self._put(translate(event, self.uuid))
