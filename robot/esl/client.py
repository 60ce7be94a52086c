"""The robot's Event Socket client: greenswitch's InboundESL with real bodies, timeouts, jobs, routing and reconnection.

greenswitch keeps the surface (``connect()``, ``send()``, ``register_handle()``) but its parser
URL-decodes whole payloads and drops bodies, its ``send`` has no timeout, and it never reconnects
(wire-facts section 5). This subclass is a thin gevent shell around the sans-I/O core: framing and
event decoding in :mod:`callbot.esl.protocol`, reply and job matching in :mod:`callbot.esl.matching`.

Robustness: a malformed message (a bad event, an oversize body) is logged and dropped, and the
reader goes on. A reader that ends for any reason (EOF, read error, a framing error it cannot
resynchronise from, a bug) drops the connection and starts the reconnection; so does a switch that
answers none of ``stalled_commands`` timed-out commands in a row. The client never claims to be
connected while nothing reads its socket.

Threading: the client lives in ONE OS thread with its own gevent hub (see
:mod:`callbot.robot.shell.gevent_thread`); gevent objects are not thread-safe, so every public method checks
that it is called from the thread that connected it.

Events are dispatched in one dispatcher greenlet, in arrival order: first to the callback routed
for the event's ``Unique-ID`` (:meth:`EslClient.route`), then to greenswitch-style handlers
registered by key (event name, or subclass for CUSTOM), and to ``'*'`` if nobody else took it.
Callbacks must not block (a call session puts the event on its own queue). Routed callbacks also
receive the synthetic markers of :mod:`callbot.robot.esl.errors` (ESL_DISCONNECTED, ESL_RECONNECTED,
CHANNEL_GONE) around a reconnection.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuidlib
from typing import Callable

import gevent
import gevent.lock
import gevent.socket
from gevent.event import AsyncResult, Event
from gevent.queue import Queue
from greenswitch.esl import InboundESL

from callbot.config import EslSettings
from callbot.esl.matching import Answered, JobDone, ReplyMatcher, Unsolicited
from callbot.esl.protocol import (
    MAX_BODY_BYTES, MAX_HEADER_BYTES, EslEvent, EslParser, EslProtocolError, RawMessage, Reply, parse_event,
    serialize_command, to_reply,
)
from callbot.robot.esl.commands import (
    AUDIO_STREAM_SUBCLASSES, CALL_EVENTS, check_api_command, parse_show_channels_json, subscription_command,
)
from callbot.robot.esl.connect import open_socket
from callbot.robot.esl.errors import (  # noqa: F401 (re-exported: callers import them from here)
    CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, SYNTHETIC_HEADER, EslAuthError, EslCommandError,
    EslConnectError, EslDisconnected, EslError, EslTimeout,
)
from callbot.robot.esl.routing import EventCallback, EventRouter, call_safely

log = logging.getLogger(__name__)

READ_CHUNK = 65536
STALLED_COMMANDS = 3  # timed-out commands in a row with no reply: the switch has stopped answering


class EslClient(InboundESL):
    """An inbound ESL connection for one robot process; see the module docstring for the rules."""

    def __init__(self, settings: EslSettings, *, events: tuple[str, ...] = CALL_EVENTS,
                 subclasses: tuple[str, ...] = AUDIO_STREAM_SUBCLASSES, reconnect: bool = True,
                 max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES,
                 stalled_commands: int = STALLED_COMMANDS) -> None:
        """``max_header_bytes`` caps a message's header block (over it, the connection is dropped and
        made again: the stream cannot be resynchronised); ``max_body_bytes`` caps a body (an event
        over it is dropped unread, a reply over it fails its command); ``stalled_commands``
        timed-out commands in a row with no reply drop the connection too."""
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
        self.max_header_bytes, self.max_body_bytes = max_header_bytes, max_body_bytes
        self.stalled_commands = max(1, stalled_commands)
        self.matcher: ReplyMatcher[AsyncResult] = ReplyMatcher()
        self.router = EventRouter(self.event_handlers, settings.max_routes)
        self._events: Queue = Queue(maxsize=settings.event_queue_max)
        self._auth_event = Event()
        self._rejected: str | None = None
        self._dispatcher: gevent.Greenlet | None = None
        self._reader: gevent.Greenlet | None = None
        self._supervisor: gevent.Greenlet | None = None
        self._send_lock = gevent.lock.Semaphore()  # a nudge never lands inside a command's bytes
        self._stopping = False
        self._dropped_at: float | None = None

    # ---- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, authenticate and subscribe; raise EslConnectError / EslAuthError with the fix."""
        self._check_thread()
        self._stopping = False
        self._open()

    def authenticate(self) -> None:
        """Send ``auth``; greenswitch's version has no timeout and a bare ValueError."""
        reply = self._request(f"auth {self.password}", require_ready=False)
        if reply.reply_text != "+OK accepted":
            raise EslAuthError(f"the Event Socket at {self.host}:{self.port} refused the password "
                               f"({reply.reply_text or 'connection closed'}): set CALLBOT_ESL_PASSWORD or "
                               "[esl].password to the password in event_socket.conf.xml")

    def _open(self) -> None:
        where = f"{self.host}:{self.port}"
        sock = open_socket(self.settings)
        self.sock, self.connected, self.ready = sock, True, False
        self._auth_event, self._rejected = Event(), None
        if self._dispatcher is None or self._dispatcher.dead:
            self._dispatcher = gevent.spawn(self._dispatch_loop)
        self._reader = gevent.spawn(self._read_loop, sock)  # ends by itself when the socket closes
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
        if self.settings.nudge_ms:
            gevent.spawn(self._nudge_loop, sock)
        log.info("esl connected", extra={"esl": where})

    def _nudge_loop(self, sock: gevent.socket.socket) -> None:
        """Every ``esl.nudge_ms``, a lone newline that wakes the switch's event socket (see EslSettings)."""
        every = self.settings.nudge_ms / 1000
        while sock is self.sock and self.connected:
            gevent.sleep(every)
            try:
                with self._send_lock:
                    if sock is self.sock:
                        sock.sendall(b"\n")
            except OSError:
                return  # the reader notices the broken connection

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

    def _close_socket(self, sock: gevent.socket.socket, reason: str = "closed") -> None:
        """Close ``sock``; if it is the current one, fail every command and job still waiting on it."""
        try:
            sock.close()
        except OSError:
            pass
        if sock is not self.sock:
            return
        self.connected = self.ready = False
        lost = self.matcher.connection_lost()
        closed = EslDisconnected(f"the Event Socket at {self.host}:{self.port} closed ({reason})")
        for waiter in lost.commands:
            if not waiter.ready():
                waiter.set_exception(closed)
        gone = EslDisconnected(f"ESL connection lost ({reason}) before the job finished; "
                               "the call's route gets ESL_RECONNECTED or CHANNEL_GONE after reconnecting")
        for waiter in lost.jobs:
            if not waiter.ready():
                waiter.set_exception(gone)

    # ---- reading ---------------------------------------------------------------------------

    def _read_loop(self, sock: gevent.socket.socket) -> None:
        """One per connection: frame bytes with the sans-I/O parser and hand each message on.

        However it ends (EOF, read error, framing error, a bug, a kill), the connection is
        dropped and, unless stopping, made again: never a reader dead behind a live client.
        """
        parser = EslParser(max_body=self.max_body_bytes, max_header=self.max_header_bytes, skip_oversize_body=True)
        reason = "closed by the switch"
        try:
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
                    log.error("esl stream cannot be framed; reconnecting", extra={"error": str(exc)})
                    break
                for raw in messages:
                    self._on_raw(raw)
        except gevent.GreenletExit:
            reason = "reader killed"
            raise
        except Exception as exc:  # a bug must not leave a client that says it is connected
            log.exception("esl reader crashed; reconnecting")
            reason = f"reader crashed: {type(exc).__name__}: {exc}"
        finally:
            self._connection_lost(sock, reason)

    def _on_raw(self, raw: RawMessage) -> None:
        """One framed message; whatever goes wrong with it is logged and the message dropped."""
        try:
            self._on_message(to_reply(raw))
        except Exception:
            log.exception("esl message dropped: handling it raised", extra={"headers": raw.lines[:4]})

    def _on_message(self, reply: Reply) -> None:
        ctype = reply.content_type
        if ctype in ("command/reply", "api/response"):
            self._on_reply(reply)
        elif ctype.startswith("text/event-"):
            if reply.skipped:
                log.warning("esl event dropped: body over the limit",
                            extra={"bytes": reply.skipped, "max_body_bytes": self.max_body_bytes})
                return
            try:
                event = parse_event(reply)
            except EslProtocolError as exc:
                log.warning("esl event dropped: %s", exc, extra={"content_type": ctype})
                return
            done = self.matcher.receive(event)
            if self._events.full():
                log.warning("esl event queue full; reading paused", extra={"max": self.settings.event_queue_max})
            self._events.put((event, done if isinstance(done, JobDone) else None))
        elif ctype == "auth/request":
            self._auth_event.set()
        elif ctype == "text/rude-rejection":
            self._rejected = reply.text
            self._auth_event.set()
        elif ctype == "text/disconnect-notice":
            log.info("esl disconnect notice", extra={"disposition": reply.headers.get("Content-Disposition", "")})
        elif ctype != "log/data":
            log.warning("esl message of unknown type ignored", extra={"content_type": ctype})

    def _on_reply(self, reply: Reply) -> None:
        match self.matcher.receive(reply):
            case Answered(tag=waiter, abandoned=False):
                if not waiter.ready():
                    waiter.set(reply)
            case Answered(sent=sent):
                log.info("esl late reply dropped (its command had timed out)",
                         extra={"sent": sent.value, "reply": reply.reply_text or reply.text[:80]})
            case Unsolicited():
                log.warning("esl reply with no command waiting", extra={"content_type": reply.content_type})

    def _connection_lost(self, sock: gevent.socket.socket, reason: str) -> None:
        if sock is not self.sock:
            return  # an older connection's reader finishing late
        was_ready = self.ready
        self._close_socket(sock, reason)
        self._auth_event.set()  # wake a connect() still waiting for auth/request
        self.sock = None
        if not was_ready:
            return
        if self._stopping:
            log.info("esl connection closed", extra={"reason": reason})
        else:
            log.warning("esl connection lost", extra={"reason": reason, "calls": len(self.router)})
        self._dropped_at = time.monotonic()
        for marker in self.router.disconnect_markers(reason):
            self._events.put((marker, None))
        for callback in self.on_disconnect:
            call_safely(callback, reason)
        if self.reconnect_enabled and not self._stopping:
            self._supervisor = gevent.spawn(self._reconnect_loop)

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
            self._events.put((marker, None))

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
        reply = self._request(f"api {cmd}", timeout=timeout)
        if reply.skipped:
            raise EslError(f"'api {cmd.split(' ', 1)[0]}' output of {reply.skipped} bytes was dropped: it is over "
                           f"the client's {self.max_body_bytes}-byte limit (max_body_bytes)")
        return reply.text if reply.content_type == "api/response" else reply.reply_text

    def bgapi_async(self, cmd: str, timeout: float | None = None) -> tuple[str, AsyncResult]:
        """``bgapi <cmd>`` with our own Job-UUID; the AsyncResult gets the job's output text.

        The result fails with EslTimeout after ``timeout`` (default ``job_timeout_s``) and with
        EslDisconnected if the connection drops first. Use it for originate.
        """
        check_api_command(cmd)
        if self.matcher.jobs_waiting >= self.settings.max_pending_jobs:
            raise EslError(f"{self.matcher.jobs_waiting} bgapi jobs already pending (esl.max_pending_jobs)")
        job = str(uuidlib.uuid4())
        waiter = AsyncResult()
        reply = self._request(f"bgapi {cmd}", headers=[("Job-UUID", job)], job=(job, waiter))
        if not reply.reply_text.startswith("+OK"):
            raise EslCommandError(f"bgapi {cmd.split(' ', 1)[0]} refused: {reply.reply_text}")
        echoed = self.matcher.job_uuid(waiter) or reply.headers.get("Job-UUID") or job
        if echoed != job:  # the switch ignored our header: the matcher follows its id
            log.warning("switch chose its own Job-UUID", extra={"ours": job, "theirs": echoed})
        if not waiter.ready():
            expiry = gevent.spawn_later(timeout or self.settings.job_timeout_s, self._expire_job, waiter, echoed)
            waiter.rawlink(lambda _: expiry.kill(block=False))
        return echoed, waiter

    def bgapi(self, cmd: str, timeout: float | None = None) -> str:
        """``bgapi <cmd>`` and wait for its BACKGROUND_JOB body (e.g. ``+OK <uuid>\\n``)."""
        _, waiter = self.bgapi_async(cmd, timeout)
        return waiter.get()

    def _expire_job(self, waiter: AsyncResult, job: str) -> None:
        self.matcher.forget_job(waiter)
        if not waiter.ready():
            waiter.set_exception(EslTimeout(f"bgapi job {job} got no BACKGROUND_JOB in time (esl.job_timeout_s)"))

    def _request(self, line: str, headers: list[tuple[str, str]] | None = None, timeout: float | None = None,
                 require_ready: bool = True, check: bool = False,
                 job: tuple[str, AsyncResult] | None = None) -> Reply:
        """Send one command and wait for the reply the matcher says is its own.

        ``job`` (Job-UUID, result waiter) marks a bgapi whose BACKGROUND_JOB the matcher will watch for.
        """
        self._check_thread()
        verb = line.split(" ", 2)[:2] if line.startswith("api ") else line.split(" ", 1)[:1]
        what = " ".join(verb)
        sock = self.sock
        if sock is None or not self.connected or (require_ready and not self.ready):
            raise EslDisconnected(f"cannot send {what!r}: not connected to {self.host}:{self.port}")
        data = serialize_command(line, headers or [])
        waiter = AsyncResult()
        if job is not None:
            self.matcher.bgapi_sent(waiter, *job)
        elif line.startswith("api "):
            self.matcher.api_sent(waiter)
        else:
            self.matcher.command_sent(waiter)
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as exc:
            self._connection_lost(sock, f"write error: {exc}")
            raise EslDisconnected(f"cannot send {what!r}: {exc}") from None
        limit = self.settings.command_timeout_s if timeout is None else timeout
        try:
            reply: Reply = waiter.get(timeout=limit)
        except gevent.Timeout:
            self._timed_out(waiter, sock)
            raise EslTimeout(f"{what!r} got no reply from {self.host}:{self.port} within {limit} s") from None
        except BaseException:  # killed while waiting: the reply, when it comes, is nobody's
            self.matcher.abandon(waiter)
            raise
        if check and reply.reply_text.startswith("-ERR"):
            raise EslCommandError(f"{what!r} failed: {reply.reply_text}")
        return reply

    def _timed_out(self, waiter: AsyncResult, sock: gevent.socket.socket) -> None:
        """A command timed out: it keeps its place in the FIFO; several in a row unanswered means a
        switch that stopped answering, so the connection is dropped and made again."""
        self.matcher.abandon(waiter)
        stalled = self.matcher.abandoned_waiting
        if stalled >= self.stalled_commands and sock is self.sock:
            log.error("esl switch stopped answering; reconnecting", extra={"unanswered": stalled})
            self._connection_lost(sock, f"{stalled} commands in a row got no reply")

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
        """One per client: events in arrival order; a failure is logged and the next event goes on."""
        while True:
            event, done = self._events.get()
            try:
                self._dispatch(event, done)
            except Exception:
                log.exception("esl dispatch failed", extra={"event": event.key, "uuid": event.unique_id})

    def _dispatch(self, event: EslEvent, done: JobDone[AsyncResult] | None = None) -> None:
        """Complete the bgapi a BACKGROUND_JOB answers (in event order, after the call's earlier
        events), then route the event."""
        if done is not None and not done.tag.ready():
            done.tag.set(done.body)
        self.router.dispatch(event)

    def _check_thread(self) -> None:
        ident = threading.get_ident()
        if self._owner is None:
            self._owner = ident
        elif ident != self._owner:
            raise RuntimeError("EslClient used from another OS thread; it belongs to the thread that connected it "
                               "(submit work through callbot.robot.shell.gevent_thread.GeventThread)")
