"""The asyncio WebSocket shell around StreamPipeline: handshake checks, limits, events back, shutdown.

One connection per call from mod_audio_stream. Audio goes into the stream's pipeline; its events
go back as compact JSON text frames on the same socket (the switch relays them to the robot).
A failing stream gets an ``error`` event and a close code; the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import uuid
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from callbot.events import AudioEvent, Error, Final, Partial, to_json
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_params import StreamParams, StreamRequestError, parse_stream_request, redact
from callbot.audio_server.stt.engine import SttEngine
from callbot.audio_server.stt.shell import StreamTranscription
from callbot.audio_server.stt.stage import prompt_from_text_frame
from callbot.config import ConfigError, Settings

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
# Close codes (RFC 6455): policy, message too big, internal error, try again later.
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = 1008, 1009, 1011, 1013
HARD_SIZE_FACTOR = 4  # frames above this many times our own limits are cut by the library (1009, no event)


class StreamFailure(Exception):
    """A stream must end: ``code`` goes in the error event, ``close_code`` on the WebSocket."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.close_code = code, close_code


class Outbox:
    """Transcripts (and the AMD verdicts they trigger), sent in order by one task, off the audio path.

    Bounded: past ``max_items`` queued, a partial is dropped; a final, or anything else, never is
    (finals are at most one per speech segment, so they cannot grow without bound).
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.partials_dropped = 0

    def put(self, event: AudioEvent, call: str) -> None:
        if isinstance(event, Partial) and self.queue.qsize() >= self.max_items:
            self.partials_dropped += 1
            return
        self.queue.put_nowait(to_json(event, call))


@dataclass
class StreamSession:
    """One connection's state. Stages live in ``pipeline``; what the switch must hear comes back as text.

    Barge-in and speech events go back from ``on_audio`` at once. Transcripts come later from
    the STT pool through ``outbox``, so a slow decode never delays a barge-in.
    """

    params: StreamParams
    pipeline: StreamPipeline
    outbox: Outbox
    stt: StreamTranscription | None = None
    metadata: dict | None = None
    messages: int = 0
    texts_ignored: int = 0
    transcripts: int = 0

    def on_audio(self, data: bytes) -> list[str]:
        """Feed one binary message; the text frames to send back, in order."""
        self.messages += 1
        out = self.pipeline.feed(data)
        if self.stt is not None:
            self.stt.feed(out.segment_items)
        return [to_json(e, self.params.call) for e in out.events]

    def on_transcript(self, event: AudioEvent) -> None:
        """A partial or final from the STT pool, then any AMD verdict its words decide."""
        self.transcripts += 1
        self.outbox.put(event, self.params.call)
        if isinstance(event, (Partial, Final)):
            for hint in self.pipeline.on_transcript(event):
                self.outbox.put(hint, self.params.call)

    def on_text(self, text: str, max_bytes: int) -> None:
        """Metadata may come first, late or never; a robot prompt frame is STT context; the rest is ignored."""
        prompt = prompt_from_text_frame(text) if len(text) <= max_bytes else None
        if prompt is not None:
            if self.stt is not None:
                self.stt.set_prompt(prompt)
            return
        try:
            data = json.loads(text) if len(text) <= max_bytes else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.texts_ignored += 1
            log.warning("text frame ignored: not a JSON object of at most %d bytes", max_bytes,
                        extra={"call": self.params.call, "t": round(self.pipeline.stream_time, 3),
                               "head": text[:60]})
            return
        self.metadata = data
        log.info("metadata", extra={"call": self.params.call, "keys": ",".join(sorted(data))[:200]})

    def finish(self) -> list[str]:
        """End of stream: close open speech; decodes still pending can no longer be sent."""
        out = self.pipeline.flush()
        if self.stt is not None:
            self.stt.cancel()
        return [to_json(e, self.params.call) for e in out.events]


class AudioServer:
    """Serves ``/stream/<uuid>`` WebSockets and ``GET /healthz`` on one port."""

    def __init__(self, settings: Settings, engine: SttEngine | None = None) -> None:
        """``engine``: a shared, already loaded STT engine (replays share one); else ``start`` loads one."""
        self.settings = settings
        self.engine = engine
        self.live: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen; bad VAD or barge-in settings fail here, before any stream is accepted."""
        try:
            StreamPipeline(StreamParams.defaults(str(uuid.UUID(int=0)), self.settings), self.settings)
        except ValueError as exc:
            raise ConfigError(f"audio server settings: {exc}") from None
        if self.engine is None and self.settings.stt.enabled:
            self.engine = load_engine(self.settings)  # at start-up, never on the first call
        cfg = self.settings.audio_server
        self._server = await serve(
            self._handle, host or cfg.host, cfg.port if port is None else port,
            process_request=self._process_request, open_timeout=cfg.handshake_timeout_s,
            max_size=max(cfg.max_message_bytes, cfg.max_text_bytes) * HARD_SIZE_FACTOR, compression=None)
        log.info("audio server listening", extra={"host": host or cfg.host, "port": self.port,
                                                  "max_streams": cfg.max_streams})

    def close(self) -> None:
        """Stop accepting; close live streams with 1001 (going away)."""
        if self._server is not None:
            log.info("audio server closing", extra={"streams": len(self.live)})
            self._server.close()

    async def wait_closed(self) -> None:
        assert self._server is not None
        await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer health checks and refuse bad streams with a 4xx before the upgrade."""
        if request.path.split("?", 1)[0] == HEALTH_PATH:
            body = {"status": "ok", "streams": len(self.live),
                    "max_streams": self.settings.audio_server.max_streams}
            response = connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        try:
            params = parse_stream_request(request.path, self.settings, request.headers)
            unknown = self.engine.unknown_language(params.lang) if params.lang and self.engine else None
            if unknown:
                raise StreamRequestError(400, unknown)
        except StreamRequestError as exc:
            log.warning("handshake refused", extra={"status": exc.status, "reason": str(exc),
                                                    "path": redact(request.path)[:160]})
            return connection.respond(exc.status, f"{exc}\n")
        if len(self.live) >= self.settings.audio_server.max_streams:
            return self._too_many(connection)
        return None

    def _too_many(self, connection: ServerConnection) -> Response:
        limit = self.settings.audio_server.max_streams
        log.warning("handshake refused: stream limit", extra={"max_streams": limit})
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                  f"{limit} streams already live (audio_server.max_streams); retry later\n")

    async def _handle(self, ws: ServerConnection) -> None:
        params = parse_stream_request(ws.request.path, self.settings, ws.request.headers or Headers())
        session = StreamSession(params, StreamPipeline(params, self.settings),
                                Outbox(self.settings.audio_server.send_queue_max))
        problem = self.engine.language_problem(params.lang) if params.lang and self.engine else None
        if problem:  # barge-in, AMD and beeps still work; only transcripts are off for this stream
            log.warning("stream without transcripts", extra={"call": params.call, "reason": problem})
            session.outbox.put(Error(t=0.0, code="stt_language_unsupported", message=problem), params.call)
        elif self.engine is not None:
            session.stt = StreamTranscription.open(self.engine, params.rate, params.call, session.on_transcript,
                                                   params.lang)
        sender = asyncio.create_task(_send_outbox(ws, session))
        self.live.add(ws)
        log.info("stream open", extra={"call": params.call, "rate": params.rate, "streams": len(self.live)})
        try:
            if len(self.live) > self.settings.audio_server.max_streams:  # raced past the handshake check
                raise StreamFailure("too_many_streams", "the server is at audio_server.max_streams",
                                    CLOSE_TRY_LATER)
            await self._serve_stream(ws, session)
        except StreamFailure as exc:
            await self._fail(ws, session, exc)
        except ConnectionClosed:
            pass
        except Exception:  # one stream's bug must not take the server down
            log.exception("stream crashed", extra={"call": params.call})
            await self._fail(ws, session, StreamFailure("internal_error", "the audio server failed on "
                                                        "this stream; see its log", CLOSE_INTERNAL))
        finally:
            self.live.discard(ws)
            sender.cancel()
            for text in session.finish():
                log.info("event after close", extra={"call": params.call, "event": text})
            log.info("stream closed", extra={"call": params.call, "t": round(session.pipeline.stream_time, 3),
                                             "messages": session.messages, "transcripts": session.transcripts,
                                             "partials_dropped": session.outbox.partials_dropped,
                                             "code": ws.close_code,
                                             "dropped_bytes": session.pipeline.reframer.pending_bytes})

    async def _serve_stream(self, ws: ServerConnection, session: StreamSession) -> None:
        cfg = self.settings.audio_server
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.idle_timeout_s
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await ws.recv()
            except TimeoutError:
                if await _closing(ws):
                    return
                raise StreamFailure("idle_timeout", f"no audio for {cfg.idle_timeout_s:g} s "
                                    "(audio_server.idle_timeout_s)", CLOSE_POLICY) from None
            if isinstance(message, str):
                session.on_text(message, cfg.max_text_bytes)
                continue
            if len(message) > cfg.max_message_bytes:
                raise StreamFailure("message_too_large", f"binary message of {len(message)} bytes exceeds "
                                    f"audio_server.max_message_bytes={cfg.max_message_bytes}", CLOSE_TOO_BIG)
            deadline = loop.time() + cfg.idle_timeout_s
            for text in session.on_audio(message):
                log.info("event", extra={"call": session.params.call, "event": text})
                if await _closing(ws):
                    return
                await ws.send(text)

    async def _fail(self, ws: ServerConnection, session: StreamSession, exc: StreamFailure) -> None:
        t = session.pipeline.stream_time
        log.warning("stream failed", extra={"call": session.params.call, "code": exc.code, "reason": str(exc),
                                            "t": round(t, 3)})
        try:
            await ws.send(to_json(Error(t=t, code=exc.code, message=str(exc)), session.params.call))
        except ConnectionClosed:
            return
        closing = asyncio.create_task(ws.close(exc.close_code, exc.code))
        await _drain(ws)
        await closing


def load_engine(settings: Settings) -> SttEngine:
    """Load and warm the Whisper model; a missing or unreadable model is a ConfigError at start-up."""
    from callbot.audio_server.metrics import default_metrics
    from callbot.audio_server.stt.engine import SttModelError

    try:
        return SttEngine(settings.stt, default_metrics())
    except SttModelError as exc:
        raise ConfigError(str(exc)) from None


async def _send_outbox(ws: ServerConnection, session: StreamSession) -> None:
    """Send transcripts as they come, until the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            text = await session.outbox.queue.get()
            if ws.state is not State.OPEN:
                return
            log.info("event", extra={"call": session.params.call, "event": text})
            await ws.send(text)


async def _drain(ws: ServerConnection) -> None:
    """Read and drop queued messages until the connection is closed.

    A Close from the peer waits behind the audio already queued, and reads stay paused for flow
    control until that queue drains; without this a close would stall for the library's timeout.
    """
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()


async def _closing(ws: ServerConnection) -> bool:
    """True (after letting the close finish) when the connection is no longer open.

    A close we or the peer started, or the server's shutdown (1001), is drained to completion. A
    connection the library failed (a frame over its hard size cap, bad UTF-8) is dropped at once:
    it no longer reads, so only its close timeout would end it.
    """
    if ws.state is State.OPEN:
        return False
    sent = ws.protocol.close_sent
    if sent is not None and sent.code not in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
        ws.transport.abort()
    else:
        await _drain(ws)
    return True


async def serve_until_signal(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then close every stream with 1001 and return."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # one line per stream event, not per handshake
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    server = AudioServer(settings)
    await server.start()
    if settings.audio_server.metrics_port is not None:
        from callbot.audio_server.metrics import start_metrics_server

        bound = start_metrics_server(settings.audio_server.host, settings.audio_server.metrics_port)
        log.info("metrics listening", extra={"host": settings.audio_server.host, "port": bound})
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.close)
    await server.wait_closed()
    log.info("audio server stopped")
