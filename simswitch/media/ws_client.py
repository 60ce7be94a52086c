"""An asyncio WebSocket client that behaves like libwsc (mod_audio_stream's client) on the wire.

- one handshake timeout (default 1 s, wall) over TCP connect and the 101 response;
- frames sent while connecting are queued (capped) and flushed right after the upgrade;
- after the connection is gone, frames are dropped;
- a server Close is echoed with the same code and reason (``on_close``);
- EOF without a Close is error 1 (``on_error``), a refused connect error 6, a timeout error 10.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from typing import Callable

from callbot.simswitch.media.ws_frames import (
    ERR_CONNECT_FAILED, ERR_IO, ERR_PROTOCOL, ERR_TIMEOUT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
    WsError, WsFrameParser, WsUrl, close_payload, encode_frame, handshake_ok, handshake_request,
)

log = logging.getLogger(__name__)

MAX_HANDSHAKE_RESPONSE = 16384
MAX_WRITE_BUFFER = 4 * 1024 * 1024  # beyond this the server is not reading: drop frames


def _strerror(exc: OSError) -> str:
    """libwsc's text for a socket error: ``strerror + " (system error N)"``."""
    if exc.errno is None:
        return str(exc)
    return f"{os.strerror(exc.errno)} (system error {exc.errno})"


class WsClient:
    """One client connection. States: connecting → open → closing → closed."""

    def __init__(self, url: WsUrl, *, handshake_timeout: float = 1.0, close_timeout: float = 1.0,
                 queue_max: int = 1024, max_message: int = 1 << 20,
                 extra_headers: list[tuple[str, str]] | None = None, heartbeat_s: float = 0.0,
                 on_text: Callable[[str], None], on_close: Callable[[int, str], None],
                 on_error: Callable[[int, str], None]) -> None:
        self.url = url
        self.extra_headers = extra_headers or []
        self.heartbeat_s = heartbeat_s
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.state = "connecting"
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self._queue: collections.deque[bytes] = collections.deque(maxlen=queue_max)
        self._parser = WsFrameParser(max_message)
        self._on_text, self._on_close, self._on_error = on_text, on_close, on_error
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._peer_closed = asyncio.Event()
        self.frames_sent = 0
        self.pings_sent = 0
        self.frames_dropped = 0

    async def connect(self) -> None:
        """Open and upgrade; raises WsError(6 or 10) like libwsc's connect callback would report."""
        if self.url.secure:
            log.warning("wss:// without TLS support: proceeding in insecure mode", extra={"host": self.url.host})
        try:
            async with asyncio.timeout(self.handshake_timeout):
                reader, writer = await asyncio.open_connection(self.url.host, self.url.port)
                request, _key = handshake_request(self.url, self.extra_headers)
                writer.write(request)
                response = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            self.state = "closed"
            raise WsError(ERR_TIMEOUT, "Timeout") from None
        except OSError as exc:
            self.state = "closed"
            raise WsError(ERR_CONNECT_FAILED, _strerror(exc)) from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.state = "closed"
            raise WsError(ERR_CONNECT_FAILED, "WebSocket upgrade failed") from None
        if len(response) > MAX_HANDSHAKE_RESPONSE or not handshake_ok(response):
            writer.close()
            self.state = "closed"
            raise WsError(ERR_CONNECT_FAILED, "WebSocket upgrade failed")
        self._writer = writer
        self.state = "open"
        while self._queue:  # frames captured during the handshake go first
            self._write(self._queue.popleft())
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        if self.heartbeat_s > 0:
            self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """``STREAM_HEART_BEAT``: a ping with payload "ping" every N (wall) seconds, as libwsc sendPing."""
        while self.state == "open":
            await asyncio.sleep(self.heartbeat_s)
            if self.state == "open":
                self._write(encode_frame(OP_PING, b"ping"))
                self.pings_sent += 1

    def send_binary(self, payload: bytes) -> None:
        self._send(encode_frame(OP_BINARY, payload))

    def send_text(self, text: str) -> None:
        self._send(encode_frame(OP_TEXT, text.encode("utf-8")))

    def _send(self, frame: bytes) -> None:
        if self.state == "connecting":
            if len(self._queue) == self._queue.maxlen:
                self.frames_dropped += 1
            self._queue.append(frame)
        elif self.state == "open":
            self._write(frame)
        else:
            self.frames_dropped += 1

    def _write(self, frame: bytes) -> None:
        w = self._writer
        if w is None or w.is_closing():
            self.frames_dropped += 1
            return
        if w.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self.frames_dropped += 1
            return
        w.write(frame)
        self.frames_sent += 1

    async def close(self, code: int = 1000, reason: str = "Normal closure") -> None:
        """Send Close and wait (up to close_timeout, wall) for the peer's Close; never raises."""
        if self.state == "connecting":
            self.state = "closed"
            return
        if self.state != "open":
            return
        self.state = "closing"
        self._write(encode_frame(OP_CLOSE, close_payload(code, reason)))
        try:
            await asyncio.wait_for(self._peer_closed.wait(), self.close_timeout)
        except TimeoutError:
            pass
        self._shutdown()

    def abort(self) -> None:
        """Drop the connection without a Close (used when the emulator stops)."""
        self.state = "closed"
        self._shutdown()

    def _shutdown(self) -> None:
        self.state = "closed"
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
        for task in (self._reader_task, self._heartbeat_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    if self.state == "open":
                        self._fail(ERR_IO, "Connection closed without WebSocket CLOSE (abnormal EOF)")
                    self._peer_closed.set()
                    return
                for op, payload in self._parser.feed(data):
                    if not self._handle(op, payload):
                        return
        except WsError as exc:
            self._fail(exc.code, exc.message)
        except OSError as exc:
            if self.state == "open":
                self._fail(ERR_IO, _strerror(exc))
        finally:
            self._peer_closed.set()

    def _handle(self, op: int, payload: bytes) -> bool:
        """One server message; False once the connection is finished."""
        if op == OP_TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._fail(ERR_PROTOCOL, f"WebSocket invalid UTF-8 (1007): {exc.reason}")
                return False
            if self.state == "open":
                self._on_text(text)
        elif op == OP_PING:
            self._write(encode_frame(OP_PONG, payload))
        elif op == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", errors="replace")
            if self.state == "open":  # server-initiated: echo it, then report it
                self._write(encode_frame(OP_CLOSE, payload[:125]))
                self._shutdown()
                self._on_close(code, reason)
            self._peer_closed.set()
            self._shutdown()
            return False
        return True  # binary and pong frames are ignored, as in mod_audio_stream

    def _fail(self, code: int, message: str) -> None:
        was_open = self.state == "open"
        self._shutdown()
        if was_open:
            self._on_error(code, message)
