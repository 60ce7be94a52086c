"""Test helpers for simswitch: a raw asyncio ESL client and a recording WebSocket server."""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection, serve

from callbot.esl.protocol import EslEvent, EslParser, RawMessage, Reply, parse_event, to_reply
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()


class RawEsl:
    """A byte-exact ESL client on a real socket: send lines, read framed messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = EslParser()
        self.pending: list[RawMessage] = []
        self.raw = bytearray()
        self.events: list[EslEvent] = []

    @classmethod
    async def listening(cls, port: int) -> "RawEsl":
        """Connected, authenticated, and subscribed to every event (plain)."""
        c = await cls.connect(port)
        await c.command("event plain ALL")
        return c

    @classmethod
    async def connect(cls, port: int, password: str | None = "ClueCon") -> "RawEsl":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        c = cls(reader, writer)
        greeting = await c.next_message()
        assert to_reply(greeting).content_type == "auth/request"
        if password is not None:
            reply = await c.command(f"auth {password}")
            assert reply.reply_text == "+OK accepted", reply
        return c

    async def next_message(self, timeout: float = 5.0) -> RawMessage:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("switch closed the connection")
            self.raw += data
            self.pending += self.parser.feed(data)
        return self.pending.pop(0)

    async def next_reply(self, timeout: float = 5.0) -> Reply:
        """The next non-event message; events met on the way are kept in ``events``."""
        while True:
            r = to_reply(await self.next_message(timeout))
            if r.content_type.startswith("text/event-"):
                self.events.append(parse_event(r))
                continue
            return r

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\n\n")

    async def command(self, line: str) -> Reply:
        self.send(line)
        return await self.next_reply()

    async def api(self, line: str) -> str:
        return (await self.command(f"api {line}")).text

    async def wait_event(self, pred: Callable[[EslEvent], bool], timeout: float = 10.0) -> EslEvent:
        for e in self.events:
            if pred(e):
                self.events.remove(e)
                return e
        deadline = time.monotonic() + timeout
        while True:
            r = to_reply(await self.next_message(max(0.01, deadline - time.monotonic())))
            if r.content_type.startswith("text/event-"):
                e = parse_event(r)
                if pred(e):
                    return e
                self.events.append(e)

    async def call(self, endpoint: str, variables: str = "", until: str | None = "CHANNEL_PARK") -> str:
        """``bgapi originate`` with a fresh origination_uuid (``variables``: more ``a=b,…``); waits for the
        ``until`` event of that call (CHANNEL_PARK: from then on a uuid_broadcast plays) and returns the uuid."""
        uuid = str(uuidlib.uuid4())
        extra = f",{variables}" if variables else ""
        await self.command(f"bgapi originate {{origination_uuid={uuid}{extra}}}{endpoint} &park()")
        if until is not None:
            await self.wait_event(named(until, uuid))
        return uuid

    async def close(self) -> None:
        self.writer.close()


def named(key: str, uuid: str | None = None) -> Callable[[EslEvent], bool]:
    """Predicate: event key (name or CUSTOM subclass), optionally for one Unique-ID."""
    return lambda e: e.key == key and (uuid is None or e.unique_id == uuid)


@dataclass
class WsRecord:
    """What the recording server saw on one connection."""

    path: str = ""
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[float, Any]] = field(default_factory=list)  # (monotonic, str|bytes)
    close: tuple[int | None, str | None] | None = None
    conn: ServerConnection | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def texts(self) -> list[str]:
        return [m for _, m in self.messages if isinstance(m, str)]

    @property
    def audio(self) -> bytes:
        return b"".join(m for _, m in self.messages if isinstance(m, bytes))


class RecordingWsServer:
    """A websockets server on a free port that records everything and can talk back."""

    def __init__(self, on_open: Callable[[WsRecord], Any] | None = None) -> None:
        self.records: list[WsRecord] = []
        self.on_open = on_open
        self.port = 0
        self._server: Any = None
        self.new_connection = asyncio.Event()

    async def __aenter__(self) -> "RecordingWsServer":
        self._server = await serve(self._handler, "127.0.0.1", 0, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _handler(self, conn: ServerConnection) -> None:
        rec = WsRecord(path=conn.request.path, request_headers=list(conn.request.headers.raw_items()), conn=conn)
        self.records.append(rec)
        rec.opened.set()
        self.new_connection.set()
        if self.on_open is not None:
            asyncio.get_running_loop().create_task(self.on_open(rec))
        try:
            async for msg in conn:
                rec.messages.append((time.monotonic(), msg))
        except Exception:
            pass
        finally:
            rcvd = conn.protocol.close_rcvd
            rec.close = (rcvd.code if rcvd else None, rcvd.reason if rcvd else None)
            rec.closed.set()

    async def first(self, timeout: float = 5.0) -> WsRecord:
        await asyncio.wait_for(self.new_connection.wait(), timeout)
        return self.records[0]
