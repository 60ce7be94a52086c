"""The inbound Event Socket listener: one asyncio task per connection, replies as mod_event_socket does.

- greeting ``auth/request``; a connection that has not authenticated 25 s after it opened gets the
  disconnect notice (FreeSWITCH times out only the first packet: one garbage packet would hold a
  slot for ever, see CONFORMANCE.md);
- before auth only ``auth`` and ``exit`` work (others: ``-ERR command not found``); a wrong
  password gets ``-ERR invalid``, the disconnect notice, and the socket closes;
- ``api`` runs inline and no event is written to this socket until it returns;
- ``bgapi`` replies ``+OK Job-UUID: …`` first; the BACKGROUND_JOB follows when the job ends;
- events go through a bounded per-connection queue; after too many lost events the listener
  is killed, as FreeSWITCH does.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import re
import uuid as uuidlib
from typing import Callable

from callbot.esl.protocol import (
    AUTH_REQUEST, DISCONNECT_NOTICE, Command, EslEvent, EslParser, EslProtocolError, frame_api_response,
    frame_command_reply, frame_event, serialize_event, to_command,
)

from callbot.simswitch.calls.registry import CallRegistry
from callbot.simswitch.esl.api_commands import ApiCommands
from callbot.simswitch.esl.subscriptions import Subscription
from callbot.simswitch.host import SwitchHost

log = logging.getLogger(__name__)

RUDE_REJECTION = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
_JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class EslConnection:
    """One client of the Event Socket."""

    def __init__(self, switch: SwitchHost, api: ApiCommands, registry: CallRegistry,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_close: Callable[["EslConnection"], None]) -> None:
        self.switch = switch
        self.api = api
        self.registry = registry
        self.on_close = on_close
        self.reader, self.writer = reader, writer
        self.peer = writer.get_extra_info("peername")
        self.authed = False
        self.sub = Subscription()
        self.myevents_uuid: str | None = None
        self._events: collections.deque[bytes] = collections.deque()
        self._has_events = asyncio.Event()
        self._api_running = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.lost_events = 0
        self.closed = False

    # ---- event delivery ---------------------------------------------------------------------

    def offer(self, event: EslEvent, serialized: dict[str, bytes]) -> None:
        """Queue an event if this listener wants it (``serialized`` caches payloads per format)."""
        if self.closed or not self.sub.wants(event):
            return
        fmt = self.sub.fmt
        if fmt == "xml":
            return  # not implemented: xml listeners receive no events (see CONFORMANCE.md)
        assert fmt is not None
        payload = serialized.get(fmt)
        if payload is None:
            payload = serialized[fmt] = serialize_event(event, fmt)
        if len(self._events) >= self.switch.settings.event_queue_max:
            self.lost_events += 1
            if self.lost_events >= self.switch.settings.lost_events_max:
                log.warning("killed listener because of lost events", extra={"peer": str(self.peer)})
                self.close()
            return
        self._events.append(frame_event(payload, fmt))
        self._has_events.set()
        if self.switch.on_event_queued is not None:
            self.switch.on_event_queued()

    async def _pump(self) -> None:
        """Write queued events whenever no ``api`` is running on this connection."""
        while not self.closed:
            await self._has_events.wait()
            await self._idle.wait()
            while self._events and not self._api_running:
                self.writer.write(self._events.popleft())
            if not self._events:
                self._has_events.clear()
            await self.writer.drain()

    # ---- the connection ---------------------------------------------------------------------

    async def run(self) -> None:
        pump = asyncio.create_task(self._pump())
        parser = EslParser()
        loop = asyncio.get_running_loop()
        auth_deadline = loop.time() + self.switch.settings.first_packet_timeout_s
        try:
            self.writer.write(AUTH_REQUEST)
            while not self.closed:
                timeout = None if self.authed else max(0.0, auth_deadline - loop.time())
                try:
                    data = await asyncio.wait_for(self.reader.read(65536), timeout)
                except TimeoutError:
                    log.info("no auth in time, disconnecting", extra={"peer": str(self.peer)})
                    self._disconnect()
                    return
                if not data:
                    return
                try:
                    messages = parser.feed(data)
                except EslProtocolError as exc:
                    log.warning("bad ESL input, disconnecting", extra={"peer": str(self.peer), "error": str(exc)})
                    self._disconnect()
                    return
                for raw in messages:
                    await self.handle(to_command(raw))
                    if self.closed:
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            pump.cancel()
            self.close()

    def _reply(self, text: str, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.writer.write(frame_command_reply(text, extra))

    def _disconnect(self) -> None:
        """The disconnect notice, then close."""
        if not self.closed:
            self.writer.write(DISCONNECT_NOTICE)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._has_events.set()
        self._idle.set()
        self.on_close(self)
        if not self.writer.is_closing():
            self.writer.close()

    async def handle(self, cmd: Command) -> None:
        verb, args = cmd.verb, cmd.args
        if verb in ("exit", "..."):
            self._reply("+OK bye")
            self._disconnect()
            return
        if verb == "auth":
            if hmac.compare_digest(args.encode(), self.switch.settings.password.encode()):
                self.authed = True
                self._reply("+OK accepted")
            else:
                self._reply("-ERR invalid")
                self._disconnect()
            return
        if not self.authed:
            self._reply("-ERR command not found")
            return
        if verb == "api":
            await self._api(args)
        elif verb == "bgapi":
            self._bgapi(args, cmd.headers.get("Job-UUID", ""))
        elif verb == "event":
            self._reply(self.sub.event(args))
        elif verb == "nixevent":
            self._reply(self.sub.nixevent(args))
        elif verb == "noevents":
            self._reply(self.sub.noevents())
        elif verb == "filter":
            self._reply(self.sub.filter(args))
        elif verb == "myevents":
            self._reply(self._myevents(args))
        elif verb in ("linger", "nolinger"):
            self._reply("-ERR not controlling a session")
        elif verb == "sendmsg":
            self._reply(self._sendmsg(args, cmd.headers))
        else:
            self._reply("-ERR command not found")

    async def _api(self, line: str) -> None:
        cmd, _, args = line.partition(" ")
        self._api_running = True
        self._idle.clear()
        try:
            body = await self.api.execute(cmd, args.strip())
            if not self.closed:
                self.writer.write(frame_api_response(body))
        finally:
            self._api_running = False
            self._idle.set()

    def _bgapi(self, line: str, job_uuid: str) -> None:
        if not job_uuid or not _JOB_ID.match(job_uuid):
            job_uuid = str(uuidlib.uuid4())
        self._reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])
        cmd, _, args = line.partition(" ")
        self.switch.keep(asyncio.create_task(self._job(job_uuid, cmd, args.strip())))

    async def _job(self, job_uuid: str, cmd: str, args: str) -> None:
        body = await self.api.execute(cmd, args)
        post = [("Job-UUID", job_uuid), ("Job-Command", cmd)] + ([("Job-Command-Arg", args)] if args else [])
        self.switch.publish(self.switch.events.make("BACKGROUND_JOB", post=post, body=body or "-ERR no reply\n"))

    def _myevents(self, args: str) -> str:
        argv = args.split()
        if self.myevents_uuid is not None:
            return "-ERR aready enabled."
        if not argv:
            return "-ERR invalid uuid"
        uuid = argv[0]
        if uuid not in self.registry.live and len(argv) > 1:
            return "-ERR invalid uuid"
        self.myevents_uuid = uuid
        if self.sub.fmt is None:
            self.sub.fmt = "plain"
        self.sub.all = True
        self.sub.filters.append(("Unique-ID", uuid))
        return "+OK Events Enabled"

    def on_channel_gone(self, uuid: str) -> None:
        """A ``myevents`` socket is tied to its channel: it is disconnected when the channel goes."""
        if self.myevents_uuid == uuid and not self.closed:
            asyncio.get_running_loop().call_soon(self._after_events_disconnect)

    def _after_events_disconnect(self) -> None:
        while self._events:
            self.writer.write(self._events.popleft())
        self._disconnect()

    def _sendmsg(self, args: str, headers: dict[str, str]) -> str:
        uuid = args.strip()
        channel = self.registry.live.get(uuid)
        if channel is None:
            return f"-ERR invalid session id [{uuid}]"
        command = headers.get("call-command", "")
        if command == "hangup":
            channel.hangup(headers.get("hangup-cause", "NORMAL_CLEARING").upper(), "robot")
        elif command == "execute" and headers.get("execute-app-name") == "playback":
            channel.broadcast(headers.get("execute-app-arg", ""))
        return "+OK"
