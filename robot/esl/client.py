"""The robot's Event Socket client: greenswitch's InboundESL with real bodies, timeouts, jobs, routing and reconnection.

greenswitch keeps the surface (``connect()``, ``send()``, ``register_handle()``) but its parser
URL-decodes whole payloads and drops bodies, its ``send`` has no timeout, and it never reconnects
(wire-facts section 5). This subclass replaces the I/O loop with :mod:`callbot.esl.protocol`.

Threading: the client lives in ONE OS thread with its own gevent hub (see
:mod:`robot.gevent_thread`); gevent objects are not thread-safe, so every public method checks
that it is called from the thread that connected it.

Events are dispatched in one dispatcher greenlet, in arrival order: first to the callback routed
for the event's ``Unique-ID`` (:meth:`EslClient.route`), then to greenswitch-style handlers
registered by key (event name, or subclass for CUSTOM), and to ``'*'`` if nobody else took it.
Callbacks must not block (a call session puts the event on its own queue). Routed callbacks also
receive the synthetic markers of :mod:`robot.esl_errors` (ESL_DISCONNECTED, ESL_RECONNECTED,
CHANNEL_GONE) around a reconnection.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
import uuid as uuidlib
from typing import Callable

import gevent
import gevent.socket
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from greenswitch.esl import InboundESL

from callbot.config import EslSettings
from callbot.esl.protocol import EslEvent, EslParser, EslProtocolError, Reply, parse_event, serialize_command, to_reply
from callbot.robot.esl.commands import (
    AUDIO_STREAM_SUBCLASSES, CALL_EVENTS, check_api_command, parse_show_channels_json, subscription_command,
)
from callbot.robot.esl.errors import (  # noqa: F401 (re-exported: callers import them from here)
    CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, SYNTHETIC_HEADER, EslAuthError, EslCommandError,
    EslConnectError, EslDisconnected, EslError, EslTimeout,
)
from callbot.robot.esl.routing import EventCallback, EventRouter, call_safely

log = logging.getLogger(__name__)

READ_CHUNK = 65536


def _tune_socket(sock: gevent.socket.socket, idle_s: float) -> None:
    """No Nagle delay (a uuid_break must leave at once); TCP keepalive, so a switch that vanished
    without a FIN (host down, cable cut) ends the connection."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the OS defaults apply
        idle = max(1, int(idle_s))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class EslClient(InboundESL):
    """An inbound ESL connection for one robot process; see the module docstring for the rules."""

    def __init__(self, settings: EslSettings, *, events: tuple[str, ...] = CALL_EVENTS,
                 subclasses: tuple[str, ...] = AUDIO_STREAM_SUBCLASSES, reconnect: bool = True) -> None:
        if not settings.password:
            raise EslAuthError("no ESL password configured: set CALLBOT_ESL_PASSWORD or [esl].password to the "
                               "password in FreeSWITCH's autoload_configs/event_socket.conf.xml")
        super().__init__(settings.host, settings.port, settings.password, timeout=settings.connect_timeout_s)
        self.settings = settings
        self.subscription = subscription_command(events, subclasses)
        self.reconnect_enabled = reconnect
        self.ready = False  # authenticated and subscribed: public commands may be sent
        self.sock: gevent.socket.socket | None = None
        self.on_disconnect: list[Callable[[str], None]] = []
        self.on_reconnect: list[Callable[[], None]] = []
        self._owner: int | None = None
        self._pending: collections.deque[AsyncResult] = collections.deque()
        self._jobs: dict[str, AsyncResult] = {}
        self.router = EventRouter(self.event_handlers, settings.max_routes)
        self._events: Queue = Queue(maxsize=settings.event_queue_max)
        self._auth_event = Event()
        self._rejected: str | None = None
        self._dispatcher: gevent.Greenlet | None = None
        self._supervisor: gevent.Greenlet | None = None
        self._stopping = False
        self._dropped_at: float | None = None

    # ---- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, authenticate and subscribe; raise EslConnectError / EslAuthError with the fix."""
        self._check_thread()
        self._stopping = False
        self._open()
        if self._dispatcher is None or self._dispatcher.dead:
            self._dispatcher = gevent.spawn(self._dispatch_loop)

    def authenticate(self) -> None:
        """Send ``auth``; greenswitch's version has no timeout and a bare ValueError."""
        reply = self._request(f"auth {self.password}", require_ready=False)
        if reply.reply_text != "+OK accepted":
            raise EslAuthError(f"the Event Socket at {self.host}:{self.port} refused the password "
                               f"({reply.reply_text or 'connection closed'}): set CALLBOT_ESL_PASSWORD or "
                               "[esl].password to the password in event_socket.conf.xml")

    def _open(self) -> None:
        where = f"{self.host}:{self.port}"
        try:
            sock = gevent.socket.create_connection((self.host, self.port), timeout=self.settings.connect_timeout_s)
        except ConnectionRefusedError:
            raise EslConnectError(f"cannot reach the Event Socket at {where}: connection refused. Is FreeSWITCH "
                                  "running, with mod_event_socket listening there (freeswitch_conf/"
                                  "autoload_configs/event_socket.conf.xml)? Check [esl].host and [esl].port."
                                  ) from None
        except TimeoutError:
            raise EslConnectError(f"connecting to the Event Socket at {where} timed out after "
                                  f"{self.settings.connect_timeout_s} s: check [esl].host and any firewall") from None
        except OSError as exc:
            raise EslConnectError(f"cannot reach the Event Socket at {where}: {exc}") from None
        sock.settimeout(None)
        _tune_socket(sock, self.settings.keepalive_s)
        self.sock, self.connected, self.ready = sock, True, False
        self._auth_event, self._rejected = Event(), None
        gevent.spawn(self._read_loop, sock)  # ends by itself when the socket closes
        try:
            greeted = self._auth_event.wait(timeout=self.settings.connect_timeout_s)
            if self._rejected is not None:
                raise EslConnectError(f"{where} refused this host ({self._rejected.strip()!r}): add it to the "
                                      "apply-inbound-acl list in event_socket.conf.xml")
            if not greeted or not self.connected:
                raise EslConnectError(f"{where} sent no auth/request within {self.settings.connect_timeout_s} s: "
                                      "is that port FreeSWITCH's Event Socket?")
            self.authenticate()
            self._subscribe()
        except BaseException:
            self._close_socket(sock)
            raise
        self.ready = True
        log.info("esl connected", extra={"esl": where})

    def _subscribe(self) -> None:
        self._request(self.subscription, require_ready=False, check=True)
        if not self.settings.filter_by_call:
            return
        self._request("filter Event-Name BACKGROUND_JOB", require_ready=False, check=True)
        done: set[str] = set()
        while todo := [u for u in self.router if u not in done]:  # calls routed meanwhile get theirs too
            for call_uuid in todo:
                self._request(f"filter Unique-ID {call_uuid}", require_ready=False, check=True)
                done.add(call_uuid)

    def stop(self) -> None:
        """Say ``exit``, close the socket, stop every greenlet; pending commands and jobs fail."""
        self._check_thread()
        self._stopping = True
        if self.ready:
            try:
                self._request("exit", timeout=1.0)
            except EslError:
                pass
        if self.sock is not None:
            self._connection_lost(self.sock, "stopped")
        for greenlet in (self._supervisor, self._dispatcher):
            if greenlet is not None:
                greenlet.kill(block=False)
        self._fail_jobs(EslDisconnected("the ESL client was stopped"))

    def _close_socket(self, sock: gevent.socket.socket) -> None:
        try:
            sock.close()
        except OSError:
            pass
        if sock is self.sock:
            self.connected = self.ready = False
            self._fail_pending(EslDisconnected(f"the Event Socket at {self.host}:{self.port} closed"))

    # ---- reading ---------------------------------------------------------------------------

    def _read_loop(self, sock: gevent.socket.socket) -> None:
        """One per connection: frame bytes with the sans-I/O parser and hand each message on."""
        parser = EslParser()
        reason = "closed by the switch"
        while True:
            try:
                data = sock.recv(READ_CHUNK)
            except OSError as exc:
                reason = f"read error: {exc}"
                break
            if not data:
                break
            try:
                messages = parser.feed(data)
            except EslProtocolError as exc:
                reason = f"protocol error: {exc}"
                break
            for raw in messages:
                self._on_message(to_reply(raw))
        self._connection_lost(sock, reason)

    def _on_message(self, reply: Reply) -> None:
        ctype = reply.content_type
        if ctype in ("command/reply", "api/response"):
            if not self._pending:
                log.warning("esl reply with no command waiting", extra={"content_type": ctype})
                return
            waiter = self._pending.popleft()
            if not waiter.ready():  # a timed-out command keeps its slot, so later replies stay aligned
                waiter.set(reply)
        elif ctype.startswith("text/event-"):
            try:
                event = parse_event(reply)
            except EslProtocolError as exc:
                log.warning("esl event dropped: %s", exc)
                return
            if self._events.full():
                log.warning("esl event queue full; reading paused", extra={"max": self.settings.event_queue_max})
            self._events.put(event)
        elif ctype == "auth/request":
            self._auth_event.set()
        elif ctype == "text/rude-rejection":
            self._rejected = reply.text
            self._auth_event.set()
        elif ctype == "text/disconnect-notice":
            log.info("esl disconnect notice", extra={"disposition": reply.headers.get("Content-Disposition", "")})
        elif ctype != "log/data":
            log.warning("esl message of unknown type ignored", extra={"content_type": ctype})

    def _connection_lost(self, sock: gevent.socket.socket, reason: str) -> None:
        if sock is not self.sock:
            return  # an older connection's reader finishing late
        was_ready = self.ready
        self._close_socket(sock)
        self._auth_event.set()  # wake a connect() still waiting for auth/request
        self.sock = None
        if not was_ready:
            return
        if self._stopping:
            log.info("esl connection closed", extra={"reason": reason})
        else:
            log.warning("esl connection lost", extra={"reason": reason, "calls": len(self.router)})
        self._dropped_at = time.monotonic()
        self._fail_jobs(EslDisconnected(f"ESL connection lost ({reason}) before the job finished; "
                                        "the call's route gets ESL_RECONNECTED or CHANNEL_GONE after reconnecting"))
        for marker in self.router.disconnect_markers(reason):
            self._events.put(marker)
        for callback in self.on_disconnect:
            call_safely(callback, reason)
        if self.reconnect_enabled and not self._stopping:
            self._supervisor = gevent.spawn(self._reconnect_loop)

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            waiter = self._pending.popleft()
            if not waiter.ready():
                waiter.set_exception(exc)

    def _fail_jobs(self, exc: Exception) -> None:
        jobs, self._jobs = self._jobs, {}
        for waiter in jobs.values():
            if not waiter.ready():
                waiter.set_exception(exc)

    # ---- reconnection ----------------------------------------------------------------------

    def _reconnect_loop(self) -> None:
        """Retry with exponential backoff, resubscribe, then reconcile the routed calls."""
        delay = self.settings.reconnect_min_s
        attempt = 0
        while not self._stopping:
            gevent.sleep(delay)
            attempt += 1
            try:
                self._open()
                break
            except EslError as exc:
                log.warning("esl reconnect failed", extra={"attempt": attempt, "error": str(exc), "retry_s": delay})
                delay = min(delay * 2, self.settings.reconnect_max_s)
        else:
            return
        outage = time.monotonic() - (self._dropped_at or time.monotonic())
        log.info("esl reconnected", extra={"attempts": attempt, "outage_s": round(outage, 3)})
        self.reconcile(outage)
        for callback in self.on_reconnect:
            call_safely(callback)

    def reconcile(self, outage_s: float = 0.0) -> None:
        """Ask the switch which routed calls still exist; tell each route (CHANNEL_GONE / ESL_RECONNECTED)."""
        if not len(self.router):
            return
        try:
            markers = self.router.reconcile_markers(parse_show_channels_json(self.api("show channels as json")),
                                                    outage_s)
        except (EslError, ValueError) as exc:
            log.error("esl reconcile failed", extra={"error": str(exc)})
            markers = self.router.reconcile_markers(None, outage_s, error=str(exc))
        for marker in markers:
            self._events.put(marker)

    # ---- commands --------------------------------------------------------------------------

    def send(self, data: str) -> Reply:  # greenswitch's name, with a timeout and real parsing
        """Send one raw command line and return the switch's reply (a Reply, not greenswitch's event)."""
        return self.command(data)

    def command(self, line: str, timeout: float | None = None, check: bool = False) -> Reply:
        """A plain command (``event``, ``filter``...); ``check`` turns a ``-ERR`` reply into EslCommandError."""
        return self._request(line, timeout=timeout, check=check)

    def api(self, cmd: str, timeout: float | None = None) -> str:
        """``api <cmd>``, returning the output text (``-ERR ...`` replies are returned, not raised)."""
        check_api_command(cmd)
        return self._request(f"api {cmd}", timeout=timeout).text

    def bgapi_async(self, cmd: str, timeout: float | None = None) -> tuple[str, AsyncResult]:
        """``bgapi <cmd>`` with our own Job-UUID; the AsyncResult gets the job's output text.

        The result fails with EslTimeout after ``timeout`` (default ``job_timeout_s``) and with
        EslDisconnected if the connection drops first. Use it for originate.
        """
        check_api_command(cmd)
        if len(self._jobs) >= self.settings.max_pending_jobs:
            raise EslError(f"{len(self._jobs)} bgapi jobs already pending (esl.max_pending_jobs)")
        job = str(uuidlib.uuid4())
        waiter = AsyncResult()
        self._jobs[job] = waiter
        try:
            reply = self._request(f"bgapi {cmd}", headers=[("Job-UUID", job)])
        except BaseException:
            self._jobs.pop(job, None)
            raise
        echoed = reply.headers.get("Job-UUID", job)
        if not reply.reply_text.startswith("+OK"):
            self._jobs.pop(job, None)
            raise EslCommandError(f"bgapi {cmd.split(' ', 1)[0]} refused: {reply.reply_text}")
        if echoed != job:  # the switch ignored our header: follow its id
            log.warning("switch chose its own Job-UUID", extra={"ours": job, "theirs": echoed})
            self._jobs[echoed] = self._jobs.pop(job)
            job = echoed
        expiry = gevent.spawn_later(timeout or self.settings.job_timeout_s, self._expire_job, job)
        waiter.rawlink(lambda _: expiry.kill(block=False))
        return job, waiter

    def bgapi(self, cmd: str, timeout: float | None = None) -> str:
        """``bgapi <cmd>`` and wait for its BACKGROUND_JOB body (e.g. ``+OK <uuid>\\n``)."""
        _, waiter = self.bgapi_async(cmd, timeout)
        return waiter.get()

    def _expire_job(self, job: str) -> None:
        waiter = self._jobs.pop(job, None)
        if waiter is not None and not waiter.ready():
            waiter.set_exception(EslTimeout(f"bgapi job {job} got no BACKGROUND_JOB in time (esl.job_timeout_s)"))

    def _request(self, line: str, headers: list[tuple[str, str]] | None = None, timeout: float | None = None,
                 require_ready: bool = True, check: bool = False) -> Reply:
        self._check_thread()
        verb = line.split(" ", 2)[:2] if line.startswith("api ") else line.split(" ", 1)[:1]
        what = " ".join(verb)
        if self.sock is None or not self.connected or (require_ready and not self.ready):
            raise EslDisconnected(f"cannot send {what!r}: not connected to {self.host}:{self.port}")
        data = serialize_command(line, headers or [])
        waiter = AsyncResult()
        self._pending.append(waiter)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self._connection_lost(self.sock, f"write error: {exc}")
            raise EslDisconnected(f"cannot send {what!r}: {exc}") from None
        limit = self.settings.command_timeout_s if timeout is None else timeout
        try:
            reply: Reply = waiter.get(timeout=limit)
        except gevent.Timeout:
            raise EslTimeout(f"{what!r} got no reply from {self.host}:{self.port} within {limit} s") from None
        if check and reply.reply_text.startswith("-ERR"):
            raise EslCommandError(f"{what!r} failed: {reply.reply_text}")
        return reply

    # ---- routing and dispatch --------------------------------------------------------------

    def route(self, call_uuid: str, callback: EventCallback) -> None:
        """Send the call's events to ``callback``; call it BEFORE originating (it adds the switch-side filter).

        It may block briefly (the ``filter`` command), so call it from a call's greenlet, not a callback.
        """
        self._check_thread()
        self.router.add(call_uuid, callback)
        if self.settings.filter_by_call and self.ready:
            try:
                self._request(f"filter Unique-ID {call_uuid}", check=True)
            except EslDisconnected:
                pass  # the resubscription after the reconnect adds it

    def unroute(self, call_uuid: str) -> None:
        """Stop routing the call's events; the switch-side filter is removed in the background."""
        self._check_thread()
        if self.router.remove(call_uuid) and self.settings.filter_by_call and self.ready:
            gevent.spawn(self._drop_filter, call_uuid)

    def _drop_filter(self, call_uuid: str) -> None:
        try:
            self._request(f"filter delete Unique-ID {call_uuid}")
        except EslError as exc:
            log.debug("filter delete failed", extra={"call_uuid": call_uuid, "error": str(exc)})

    def _dispatch_loop(self) -> None:
        while True:
            self._dispatch(self._events.get())

    def _dispatch(self, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            waiter = self._jobs.pop(event.get("Job-UUID") or "", None)
            if waiter is not None and not waiter.ready():
                waiter.set(event.body or "")
        self.router.dispatch(event)

    def _check_thread(self) -> None:
        ident = threading.get_ident()
        if self._owner is None:
            self._owner = ident
        elif ident != self._owner:
            raise RuntimeError("EslClient used from another OS thread; it belongs to the thread that connected it "
                               "(submit work through robot.gevent_thread.GeventThread)")
