"""The asyncio WebSocket shell around StreamPipeline: handshake checks, limits, events back, shutdown.

One connection per call from mod_audio_stream. Audio goes into the stream's pipeline; its events
go back as compact JSON text frames on the same socket (the switch relays them to the robot).
A failing stream gets an ``error`` event and a close code; the others keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import socket
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from time import perf_counter
from typing import Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from callbot.events import AudioEvent, Error, Final, Partial, to_json
from callbot.stream import AnsweredMarker, MarkerError, PlaybackMarker, parse_marker
from callbot.audio_server.echo.reference import PromptLoadError, load_prompt_reference
from callbot.audio_server.metrics import AudioMetrics, StageClock, default_audio_metrics, default_metrics
from callbot.audio_server.pipeline.stream import PipelineOutput, StreamPipeline
from callbot.audio_server.stream_params import StreamParams, StreamRequestError, parse_stream_request, redact
from callbot.audio_server.stt.engine import SttEngine
from callbot.audio_server.stt.shell import StreamTranscription
from callbot.config import ConfigError, Settings

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
# Close codes (RFC 6455): policy, message too big, internal error, try again later.
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = 1008, 1009, 1011, 1013
HARD_SIZE_FACTOR = 4  # frames above this many times our own limits are cut by the library (1009, no event)
IDLE_GRACE_S = 0.05  # after the idle deadline, a message already received still counts
# Stream failures that drop the caller's audio (callbot_audio_dropped_total); an idle timeout is a stream's normal end.
DROPPING_FAILURES = frozenset({"too_many_streams", "rate_limited", "message_too_large", "internal_error"})


class ListenError(RuntimeError):
    """The server cannot listen (address in use, not ours, or exposed without a token); one line says why."""


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

    def __init__(self, max_items: int, on_put: Callable[[int], None] | None = None) -> None:
        self.max_items = max_items
        self.queue: asyncio.Queue[tuple[AudioEvent, str]] = asyncio.Queue()  # the event, for the metrics
        self.partials_dropped = 0
        self.on_put = on_put  # AudioServer.on_media_work: one more text on its way to the switch

    def put(self, event: AudioEvent, call: str) -> None:
        if isinstance(event, Partial) and self.queue.qsize() >= self.max_items:
            self.partials_dropped += 1
            return
        self.queue.put_nowait((event, to_json(event, call)))
        if self.on_put is not None:
            self.on_put(1)


class ClassifierStep:
    """The shared speech classifier's batch: one ``SileroBatcher.run`` per event-loop turn, for every stream.

    A stream that queued classifier windows while accepting a message awaits ``next_run``; the
    first one in a turn schedules the run with ``call_soon``, so it comes after every stream whose
    audio arrived in the same turn has accepted it: one ONNX call per 32 ms step for all of them.
    """

    def __init__(self, batcher: object, clock: StageClock | None = None) -> None:
        self.batcher = batcher
        self.clock = clock  # the server's: each run's wall time is the ``classify`` stage
        self.runs = 0
        self._done: asyncio.Future[None] | None = None

    async def next_run(self) -> None:
        if self._done is None:
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            loop.call_soon(self._run)
        await asyncio.shield(self._done)  # a stream cancelled meanwhile must not cancel the others' run

    def _run(self) -> None:
        done, self._done = self._done, None
        assert done is not None
        started = perf_counter()
        try:
            self.batcher.run()  # type: ignore[attr-defined]
        except Exception as exc:  # every waiting stream fails with it (internal_error), the server goes on
            done.set_exception(exc)
        else:
            done.set_result(None)
        if self.clock is not None:
            self.clock.add("classify", perf_counter() - started)
        self.runs += 1


@dataclass
class PromptPlaying:
    """The robot's prompt playing on this call, from its playback markers; times are stream seconds."""

    file: str  # relative to the prompts directory, as the marker named it
    path: Path  # the same file under [prompts] dir
    started_t: float
    paused: bool = False
    reference: bool = False  # the echo gate follows it (False: the file could not be read)


@dataclass
class StreamSession:
    """One connection's state. Stages live in ``pipeline``; what the switch must hear comes back as text.

    Barge-in and speech events go back from ``on_audio`` (or ``accept`` then ``advance``, with the
    server's shared classifier run between them) at once. Transcripts come later from the STT pool
    through ``outbox``, so a slow decode never delays a barge-in.
    """

    params: StreamParams
    pipeline: StreamPipeline
    outbox: Outbox
    stt: StreamTranscription | None = None
    prompts_dir: Path | None = None  # [prompts] dir: where a marker's file is
    metadata: dict | None = None
    prompt: PromptPlaying | None = None  # what the robot plays now: the echo gate's reference
    messages: int = 0
    texts_ignored: int = 0
    transcripts: int = 0

    def on_audio(self, data: bytes) -> list[str]:
        """Feed one binary message and run the classifier now; the text frames to send back, in order."""
        self.accept(data)
        if self.pipeline.awaits_batcher:
            self.pipeline.batcher.run()  # type: ignore[union-attr]
        return self.advance()

    def accept(self, data: bytes) -> None:
        """First half of a message: reframe, echo gate, VAD gate; classifier windows queue in the batcher."""
        self.messages += 1
        self.pipeline.accept(data)

    def advance(self) -> list[str]:
        """Second half, once the batcher has run: the text frames to send back, in order."""
        return [to_json(e, self.params.call) for e in self.advance_output().events]

    def advance_output(self) -> PipelineOutput:
        """``advance`` for the server, which counts the frames and each event it sends."""
        out = self.pipeline.advance()
        if self.stt is not None:
            self.stt.feed(out.segment_items)
        return out

    def on_transcript(self, event: AudioEvent) -> None:
        """A partial or final from the STT pool, then any AMD verdict its words decide.

        The words are hints about the audio they describe, so the AMD dates them by the
        transcript's own stream time (``event.t``), not by how far the stream has got meanwhile.
        """
        self.transcripts += 1
        self.outbox.put(event, self.params.call)
        if isinstance(event, (Partial, Final)):
            for hint in self.pipeline.amd.on_transcript(event.text, event.t, isinstance(event, Final)):
                self.outbox.put(hint, self.params.call)

    def on_wordless_final(self, end_s: float) -> None:
        """STT suppressed a final (no words): the AMD need not wait for a transcript of that speech."""
        for verdict in self.pipeline.amd.heard(end_s):
            self.outbox.put(verdict, self.params.call)

    def on_text(self, text: str, max_bytes: int) -> list[str]:
        """A playback marker (the robot's prompt, STT context), or metadata (first, late or never); the
        rest is ignored. Returns the text frames to send back: an ``error`` for a bad marker (the
        stream goes on)."""
        t = self.pipeline.stream_time
        if len(text) > max_bytes:
            return self._ignored(text, f"longer than audio_server.max_text_bytes={max_bytes}")
        try:
            marker = parse_marker(text)
        except MarkerError as exc:
            self.texts_ignored += 1
            log.warning("playback marker refused", extra={"call": self.params.call, "t": round(t, 3),
                                                           "reason": str(exc)})
            return [to_json(Error(t=t, code="bad_marker", message=str(exc)), self.params.call)]
        if isinstance(marker, AnsweredMarker):
            return self.on_answered(marker, t)
        if marker is not None:
            return self.on_marker(marker, t)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._ignored(text, "not a JSON object")
        if data.get("type") == "prompt":  # before DESIGN section 2's playback markers
            return self._ignored(text, "a prompt frame: send a playback marker instead (DESIGN section 2)")
        self.metadata = data
        log.info("metadata", extra={"call": self.params.call, "keys": ",".join(sorted(data))[:200]})
        return []

    def on_answered(self, marker: AnsweredMarker, t: float) -> list[str]:
        """The answer's true offset before sample 0: the AMD times its rules from it (a verdict it now reaches
        goes out in order with the transcripts); one already sent stands."""
        call = self.params.call
        log.info("answer offset", extra={"call": call, "t": round(t, 3), "ago_ms": marker.ago_ms,
                                         "amd_decided": self.pipeline.amd.decision is not None})
        for verdict in self.pipeline.amd.answered(marker.ago_ms):
            self.outbox.put(verdict, call)
        return []

    def on_marker(self, marker: PlaybackMarker, t: float) -> list[str]:
        """Follow the robot's prompt: the echo gate's reference, and its words as the decoder's context.

        The file is read under ``[prompts] dir``; one that is missing or unreadable gets an
        ``error`` event (``prompt_not_found``, ``prompt_unreadable``) and the stream goes on
        without an echo reference until the next start marker.
        """
        call = self.params.call
        replies: list[str] = []
        if marker.state == "start":
            assert marker.file is not None
            base = self.prompts_dir or Path(".")
            self.prompt = PromptPlaying(marker.file, base / marker.file, t)
            if self.stt is not None:  # a prompt without words leaves no stale context behind
                self.stt.set_prompt(marker.text)
            try:
                reference = load_prompt_reference(base, marker.file, self.params.rate)
            except PromptLoadError as exc:
                self.pipeline.playback_stopped(t)  # an earlier prompt's reference must not linger
                log.warning("prompt without echo reference", extra={"call": call, "t": round(t, 3),
                                                                    "file": marker.file, "reason": str(exc)})
                replies.append(to_json(Error(t=t, code=exc.code, message=str(exc)), call))
            else:
                self.pipeline.playback_started(reference, t)
                self.prompt.reference = True
            log.info("prompt started", extra={"call": call, "t": round(t, 3), "file": marker.file,
                                              "reference": self.prompt.reference})
        elif self.prompt is None:
            log.info("playback marker with no prompt playing", extra={"call": call, "t": round(t, 3),
                                                                      "state": marker.state})
        elif marker.state == "stop":  # its words stay the context: the reply that follows answers them
            log.info("prompt stopped", extra={"call": call, "t": round(t, 3), "file": self.prompt.file})
            self.pipeline.playback_stopped(t)
            self.prompt = None
        elif marker.state == "pause":
            self.prompt.paused = True
            self.pipeline.playback_paused(t)
        else:
            self.prompt.paused = False
            self.pipeline.playback_resumed(t)
        return replies

    def _ignored(self, text: str, why: str) -> list[str]:
        self.texts_ignored += 1
        log.warning("text frame ignored: %s", why, extra={"call": self.params.call,
                                                          "t": round(self.pipeline.stream_time, 3), "head": text[:60]})
        return []

    def finish(self) -> list[str]:
        """End of stream: close open speech; decodes still pending can no longer be sent."""
        out = self.pipeline.flush()
        if self.stt is not None:
            self.stt.cancel()
        return [to_json(e, self.params.call) for e in out.events]


class AudioServer:
    """Serves ``/stream/<uuid>`` WebSockets and ``GET /healthz`` on one port."""

    def __init__(self, settings: Settings, engine: SttEngine | None = None,
                 metrics: AudioMetrics | None = None) -> None:
        """``engine``: a shared, already loaded STT engine (replays share one); else ``start`` loads one.
        ``metrics``: in a registry of the caller's (tests); else the process's default registry."""
        self.settings = settings
        self.engine = engine
        self.metrics = metrics or default_audio_metrics()
        self.clock = StageClock(self.metrics)
        self.classifier: ClassifierStep | None = None  # the speech classifier all streams share (start())
        self.live: set[ServerConnection] = set()
        self._server: Server | None = None
        # An in-process replay's lockstep (callbot.app.lockstep): told +n for every text frame on its way
        # to the switch and -1 for every binary message handled, so the switch's clock waits for both.
        self.on_media_work: Callable[[int], None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen; bad VAD or barge-in settings fail here, before any stream is accepted."""
        try:
            probe = StreamPipeline(StreamParams.defaults(str(uuid.UUID(int=0)), self.settings), self.settings)
        except ValueError as exc:
            raise ConfigError(f"audio server settings: {exc}") from None
        if probe.classifier is not None and self.classifier is None:  # one batcher for every stream of the process
            from callbot.audio_server.classify.silero_batch import SileroBatcher

            self.classifier = ClassifierStep(SileroBatcher(), self.clock)
        cfg = self.settings.audio_server
        host = cfg.host if host is None else host
        port = cfg.port if port is None else port
        check_exposure(host, cfg.token, cfg.insecure_no_token)
        if self.engine is None and self.settings.stt.enabled:
            self.engine = load_engine(self.settings)  # at start-up, never on the first call
        try:
            self._server = await serve(
                self._handle, host, port, process_request=self._process_request,
                open_timeout=cfg.handshake_timeout_s,
                max_size=max(cfg.max_message_bytes, cfg.max_text_bytes) * HARD_SIZE_FACTOR, compression=None)
        except OSError as exc:
            raise ListenError(listen_problem("audio server", host, port, exc, "--port / audio_server.port")) from None
        log.info("audio server listening", extra={"host": host, "port": self.port, "max_streams": cfg.max_streams,
                                                  "token": cfg.token is not None})

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
        self.metrics.dropped.labels("too_many_streams").inc()
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                  f"{limit} streams already live (audio_server.max_streams); retry later\n")

    async def _handle(self, ws: ServerConnection) -> None:
        params = parse_stream_request(ws.request.path, self.settings, ws.request.headers or Headers())
        problem = self.engine.language_problem(params.lang) if params.lang and self.engine else None
        transcribed = self.engine is not None and not problem
        if transcribed:  # the AMD waits for the words of the speech before its verdict (amd.hint_wait_ms)
            params = dataclasses.replace(params, amd=dataclasses.replace(params.amd, transcripts=True))
        batcher = self.classifier.batcher if self.classifier is not None else None
        session = StreamSession(params, StreamPipeline(params, self.settings, batcher=batcher),
                                Outbox(self.settings.audio_server.send_queue_max, self.on_media_work),
                                prompts_dir=self.settings.prompts.path())
        if problem:  # barge-in, AMD and beeps still work; only transcripts are off for this stream
            log.warning("stream without transcripts", extra={"call": params.call, "reason": problem})
            session.outbox.put(Error(t=0.0, code="stt_language_unsupported", message=problem), params.call)
        elif self.engine is not None:
            session.stt = StreamTranscription.open(self.engine, params.rate, params.call, session.on_transcript,
                                                   params.lang, session.on_wordless_final)
        sender = asyncio.create_task(_send_outbox(ws, session, self.metrics))
        self.live.add(ws)
        log.info("stream open", extra={"call": params.call, "rate": params.rate, "streams": len(self.live)})
        failure: str | None = None  # the error code the stream ended with
        try:
            if len(self.live) > self.settings.audio_server.max_streams:  # raced past the handshake check
                raise StreamFailure("too_many_streams", "the server is at audio_server.max_streams",
                                    CLOSE_TRY_LATER)
            await self._serve_stream(ws, session)
        except StreamFailure as exc:
            failure = exc.code
            await self._fail(ws, session, exc)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:  # the library cut a frame over its hard cap
                failure = "message_too_large"
        except Exception:  # one stream's bug must not take the server down
            log.exception("stream crashed", extra={"call": params.call})
            failure = "internal_error"
            await self._fail(ws, session, StreamFailure("internal_error", "the audio server failed on "
                                                        "this stream; see its log", CLOSE_INTERNAL))
        finally:
            self._metrics_at_close(failure, session)
            self.live.discard(ws)
            sender.cancel()
            for text in session.finish():
                log.info("event after close", extra={"call": params.call, "event": text})
            log.info("stream closed", extra={"call": params.call, "t": round(session.pipeline.stream_time, 3),
                                             "messages": session.messages, "transcripts": session.transcripts,
                                             "partials_dropped": session.outbox.partials_dropped,
                                             "code": ws.close_code,
                                             "dropped_bytes": session.pipeline.reframer.pending_bytes})

    def _metrics_at_close(self, failure: str | None, session: StreamSession) -> None:
        """A closed stream's drops, and its stage times flushed (so a scrape after the close sees them all)."""
        dropped = self.metrics.dropped
        if failure in DROPPING_FAILURES:
            dropped.labels(failure).inc()
        if session.pipeline.reframer.pending_bytes:
            dropped.labels("tail_bytes").inc(session.pipeline.reframer.pending_bytes)
        if session.outbox.partials_dropped:
            dropped.labels("partials").inc(session.outbox.partials_dropped)
        self.clock.flush()

    async def _serve_stream(self, ws: ServerConnection, session: StreamSession) -> None:
        """Each message through the session; events back at once. Every stage is timed on ``self.clock``, and a
        barge_in, amd or beep from the time its message was received to its send (the pipeline reads no clock)."""
        cfg = self.settings.audio_server
        clock = self.clock
        loop = asyncio.get_running_loop()
        pace = RateCap(cfg.replay_max_speed if session.params.replay else cfg.max_speed, cfg.speed_headroom_s,
                       "audio_server.replay_max_speed" if session.params.replay else "audio_server.max_speed")
        reframer = session.pipeline.reframer
        idle = IdleTimer(loop, loop.time() + cfg.idle_timeout_s)
        try:
            while True:
                message = await idle.recv(ws)
                if message is None:
                    if await _closing(ws):
                        return
                    try:  # a loop busy with other streams may read this one's audio in the same turn as its deadline
                        message = await asyncio.wait_for(ws.recv(), IDLE_GRACE_S)
                    except TimeoutError:
                        raise StreamFailure("idle_timeout", f"no audio for {cfg.idle_timeout_s:g} s "
                                            "(audio_server.idle_timeout_s)", CLOSE_POLICY) from None
                received_at = perf_counter()
                replies: list[tuple[AudioEvent | None, str]]
                if isinstance(message, str):
                    replies = [(None, text) for text in session.on_text(message, cfg.max_text_bytes)]  # errors only
                    work = len(replies)
                else:
                    if len(message) > cfg.max_message_bytes:
                        raise StreamFailure("message_too_large", f"binary message of {len(message)} bytes exceeds "
                                            f"audio_server.max_message_bytes={cfg.max_message_bytes}", CLOSE_TOO_BIG)
                    received = reframer.samples_received
                    arriving = (2 * received + reframer.pending_bytes % 2 + len(message)) // 2
                    pace.check(arriving / session.params.rate, loop.time())
                    started = perf_counter()
                    session.accept(message)
                    clock.add("accept", perf_counter() - started)
                    if session.pipeline.awaits_batcher and self.classifier is not None:
                        await self.classifier.next_run()  # with every other stream's windows of this turn
                    started = perf_counter()
                    out = session.advance_output()
                    clock.add("advance", perf_counter() - started)
                    clock.message(len(out.frames))
                    replies = [(event, to_json(event, session.params.call)) for event in out.events]
                    if reframer.samples_received > received:  # audio, not an empty or one-byte frame, keeps it alive
                        idle.deadline = loop.time() + cfg.idle_timeout_s
                    work = len(replies) - 1  # this message is handled; its replies are on their way
                if work and self.on_media_work is not None:
                    self.on_media_work(work)
                for event, text in replies:
                    log.info("event", extra={"call": session.params.call, "event": text})
                    if ws.state is not State.OPEN:
                        if _failed(ws):
                            return
                        # The peer's Close came behind audio still queued here (a hang-up, a stopped stream):
                        # that audio is read and decided all the same, its events go nowhere. The next recv
                        # returns it, then raises ConnectionClosed.
                        break
                    started = perf_counter()
                    await ws.send(text)
                    sent_at = perf_counter()
                    clock.add("send", sent_at - started)
                    if event is not None:
                        self.metrics.sent(event, sent_at - received_at)
        finally:
            idle.cancel()

    async def _fail(self, ws: ServerConnection, session: StreamSession, exc: StreamFailure) -> None:
        t = session.pipeline.stream_time
        log.warning("stream failed", extra={"call": session.params.call, "code": exc.code, "reason": str(exc),
                                            "t": round(t, 3)})
        if self.on_media_work is not None:
            self.on_media_work(1)
        try:
            await ws.send(to_json(Error(t=t, code=exc.code, message=str(exc)), session.params.call))
        except ConnectionClosed:
            return
        closing = asyncio.create_task(ws.close(exc.close_code, exc.code))
        await _drain(ws)
        await closing


class IdleTimer:
    """A stream's idle deadline as one lazy timer: an ``asyncio.timeout_at`` around each ``recv`` cost 5-8 % of
    the server's CPU at 200 streams (Timeout.__aenter__, current_task, reschedule on every 20 ms message).

    ``deadline`` (loop time) may move on every message; the timer re-arms only when it fires after a move.
    At the deadline it cancels a pending ``recv`` only (safe in websockets: the message stays queued), never
    a message's processing, the classifier await or a send: the next ``recv`` then sees the deadline.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.loop, self.deadline, self._task = loop, deadline, task
        self._cancelling = task.cancelling()  # cancels from elsewhere (shutdown) are not ours to swallow
        self._handle: asyncio.Handle | None = None
        self._armed = deadline
        self._waiting = self._expired = False

    async def recv(self, ws: ServerConnection) -> str | bytes | None:
        """The next message, or None when the deadline passed while waiting for it."""
        if self._handle is None:
            self._arm()
        self._waiting = True
        try:
            return await ws.recv()
        except asyncio.CancelledError:
            if not self._expired or self._task.uncancel() > self._cancelling:
                raise
            self._expired = False
            return None
        finally:
            self._waiting = False

    def cancel(self) -> None:
        """The stream is over: no timer is left behind."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self) -> None:  # as asyncio.Timeout.reschedule: a deadline already past fires on the next turn
        self._armed = self.deadline
        if self.deadline > self.loop.time():
            self._handle = self.loop.call_at(self.deadline, self._on_idle)
        else:
            self._handle = self.loop.call_soon(self._on_idle)

    def _on_idle(self) -> None:
        if self.deadline > self._armed:
            self._arm()
            return
        self._handle = None  # armed again before the next recv when it did not interrupt this one
        if self._waiting:
            self._expired = True
            self._task.cancel()


class RateCap:
    """Refuses a stream whose audio runs more than ``speed`` times ahead of real time.

    Measured from the wall time at which the stream's first audio arrived; ``headroom_s`` of audio
    may be ahead beyond that (frames the switch queued while connecting, two frames in one read).
    """

    def __init__(self, speed: float, headroom_s: float, setting: str) -> None:
        self.speed, self.headroom_s, self.setting = speed, headroom_s, setting
        self._first_at: float | None = None

    def check(self, stream_s: float, now: float) -> None:
        """``stream_s`` of audio received by wall time ``now``; StreamFailure when too far ahead."""
        if self._first_at is None:
            self._first_at = now
        elapsed = now - self._first_at
        if stream_s > self.speed * elapsed + self.headroom_s:
            raise StreamFailure("rate_limited", f"{stream_s:.2f} s of audio in {elapsed:.2f} s: more than "
                                f"{self.setting}={self.speed:g} x real time", CLOSE_POLICY)


def check_exposure(host: str, token: str | None, insecure_no_token: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless the operator said so (insecure_no_token)."""
    if token is not None or insecure_no_token or _loopback_only(host):
        return
    raise ListenError(f"audio server: refusing to listen on {host or 'every address'!s} without a token; set "
                      "--token (audio_server.token), bind 127.0.0.1, or pass --insecure-no-token")


def _loopback_only(host: str) -> bool:
    """True when every address ``host`` names is a loopback one (``localhost``, 127.0.0.1, ::1)."""
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def listen_problem(what: str, host: str, port: int, exc: OSError, fix: str) -> str:
    """One line for a failed bind: the address, the OS's reason, and what to change."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
        return f"{what}: cannot listen on {host}:{port}: the port is in use (another server?); " \
               f"choose another with {fix}"
    return f"{what}: cannot listen on {host}:{port}: {reason}; check the address and {fix}"


def load_engine(settings: Settings) -> SttEngine:
    """Load and warm the Whisper model; a missing or unreadable model is a ConfigError at start-up."""
    from callbot.audio_server.stt.engine import SttModelError

    try:
        return SttEngine(settings.stt, default_metrics())
    except SttModelError as exc:
        raise ConfigError(str(exc)) from None


async def _send_outbox(ws: ServerConnection, session: StreamSession, metrics: AudioMetrics) -> None:
    """Send transcripts as they come, until the connection closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            event, text = await session.outbox.queue.get()
            if ws.state is not State.OPEN:
                return
            log.info("event", extra={"call": session.params.call, "event": text})
            await ws.send(text)
            metrics.sent(event)


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
    if not _failed(ws):
        await _drain(ws)
    return True


def _failed(ws: ServerConnection) -> bool:
    """True, and the connection dropped, when the library failed it rather than closing it (see ``_closing``)."""
    sent = ws.protocol.close_sent
    if sent is not None and sent.code not in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY):
        ws.transport.abort()
        return True
    return False
