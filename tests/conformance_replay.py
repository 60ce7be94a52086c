"""Replays a conformance capture's client session against simswitch and normalises both sides for comparison.

The capture (``shared/conformance/NAME.jsonl``) holds every byte the client sent, per connection,
with times. Replay sends the same commands (paths, WS URLs and loopback destinations rewritten to
local equivalents), paced by the captured gaps scaled by the switch speed, and waits for the
replies (and, where the capture did, for CHANNEL_ANSWER) before each next command. A small
WebSocket server replays the captured server's text frames and close.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from callbot.config import SimSwitchSettings
from callbot.esl.protocol import EslEvent, EslParser, Reply, parse_event, to_reply
from callbot.simswitch import SimSwitch
from simswitch_testkit import RecordingWsServer

from tests.shared_paths import CONFORMANCE
SPEED = 10.0
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LOOPBACK = {  # loopback dialplan destinations of the capture → simulated callees with the same outcome
    "loopback/callee/default": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}",
    "loopback/nosuchext/default": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?reject=NORMAL_CLEARING&answer_delay_ms=0",
    "loopback/nosuchext/conformance": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?reject=NO_ROUTE_DESTINATION&answer_delay_ms=0",
    "loopback/nosuchext/nosuchcontext": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?reject=NO_ROUTE_DESTINATION&answer_delay_ms=0",
    "loopback/busy/default": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?reject=USER_BUSY",
    "loopback/reject/default": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?reject=CALL_REJECTED",
    "loopback/ringforever/default": f"fixture/{CONFORMANCE / 'audio' / 'callee.wav'}?answer=false",
}


@dataclass
class Session:
    """What one ESL connection received, as replies and events."""

    replies: list[tuple[str, str]] = field(default_factory=list)
    events: list[EslEvent] = field(default_factory=list)


def split_messages(data: bytes) -> list[Reply]:
    return [to_reply(m) for m in EslParser().feed(data)]


def sessions_from(messages: list[Reply]) -> Session:
    s = Session()
    for r in messages:
        if r.content_type.startswith("text/event-"):
            s.events.append(parse_event(r))
        elif r.content_type == "command/reply":
            s.replies.append((r.content_type, r.reply_text))
        else:
            s.replies.append((r.content_type, r.text))
    return s


def captured(name: str) -> dict[int, Session]:
    """The capture's rx bytes per connection, decoded."""
    rx: dict[int, bytes] = {}
    for line in (CONFORMANCE / f"{name}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["dir"] == "rx":
            rx[rec["conn"]] = rx.get(rec["conn"], b"") + rec["data"].encode("latin-1")
    return {conn: sessions_from(split_messages(data)) for conn, data in rx.items()}


def sent_api_commands(name: str) -> set[str]:
    """The command names the client ran with ``api``/``bgapi`` in the capture."""
    out = set()
    for line in (CONFORMANCE / f"{name}.tx.bin").read_text(encoding="latin-1").split("\n"):
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("api", "bgapi"):
            out.add(parts[1])
    return out


def normalise(text: str) -> str:
    text = UUID_RE.sub("<uuid>", text)
    return re.sub(r"\d+", "N", text) if text.startswith("UP ") else text


async def _ws_script(name: str, rec, t0: float, start: float) -> None:
    """Send what the captured WS server sent, at the captured times (same clock as the ESL log)."""
    path = CONFORMANCE / f"{name}.ws1.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    for r in records:
        if r.get("dir") == "tx" or (r.get("type") == "close" and r.get("rcvd_then_sent") is False):
            await asyncio.sleep(max(0.0, (r["t"] - t0) / SPEED - (time.monotonic() - start)))
            if r.get("type") == "close":
                await rec.conn.close(*r["close_sent_by_server"])
            else:
                await rec.conn.send(r["data"])


async def replay(name: str) -> tuple[dict[int, Session], list]:
    """Run the capture's client side against a fresh simswitch: what each ESL connection received,
    and the WebSocket server's records (WsRecord)."""
    records = [json.loads(x) for x in (CONFORMANCE / f"{name}.jsonl").read_text().splitlines()]
    sw = SimSwitch(SimSwitchSettings(esl_port=0, speed=SPEED, answer_delay_ms=20))
    await sw.start()
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    refused_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    has_ws = (CONFORMANCE / f"{name}.ws1.jsonl").exists()
    out: dict[int, bytearray] = {}
    records = [r for r in records if "conn" in r]
    t_first = records[0]["t"]
    start = time.monotonic()
    script = (lambda rec: _ws_script(name, rec, t_first, start)) if has_ws else None
    try:
        async with RecordingWsServer(on_open=script) as ws:
            rewrites = [(k, v) for k, v in LOOPBACK.items()] + [
                ("/srv/capture/audio/", f"{CONFORMANCE / 'audio'}/"),
                ("ws://127.0.0.1:8090", ws.url("")), ("ws://127.0.0.1:8099", f"ws://127.0.0.1:{refused_port}")]
            conns: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
            readers: dict[int, asyncio.Task] = {}
            seen: dict[int, list[Reply]] = {}
            cap_seen: dict[int, list[Reply]] = {}
            cap_parser: dict[int, EslParser] = {}

            async def pump(conn_id: int, reader: asyncio.StreamReader) -> None:
                parser = EslParser()
                while data := await reader.read(65536):
                    out[conn_id] += data
                    seen[conn_id] += [to_reply(m) for m in parser.feed(data)]

            async def caught_up(conn_id: int) -> None:
                """Wait until we have as many replies (and CHANNEL_ANSWERs) as the capture had by now."""
                def count(msgs: list[Reply], answers: bool) -> int:
                    return sum(1 for m in msgs if (m.content_type.startswith("text/event") and
                                                   b"Event-Name: CHANNEL_ANSWER\n" in m.body and
                                                   b"loopback/callee-a" not in m.body) == answers
                               and (answers or not m.content_type.startswith("text/event")))
                for answers in (False, True):
                    want = count(cap_seen[conn_id], answers)
                    if answers:  # the capture's A-leg answers (B legs are not emulated)
                        want = sum(1 for m in cap_seen[conn_id] if m.content_type.startswith("text/event")
                                   and b"Event-Name: CHANNEL_ANSWER\n" in m.body and b"callee-a" in m.body)
                    for _ in range(1000):
                        have = count(seen[conn_id], answers) if not answers else sum(
                            1 for m in seen[conn_id] if m.content_type.startswith("text/event")
                            and b"Event-Name: CHANNEL_ANSWER\n" in m.body)
                        if have >= want:
                            break
                        await asyncio.sleep(0.005)

            for r in records:
                c = r["conn"]
                await asyncio.sleep(max(0.0, (r["t"] - t_first) / SPEED - (time.monotonic() - start)))
                if r["dir"] == "connect":
                    conns[c] = await asyncio.open_connection("127.0.0.1", sw.esl_port)
                    out[c], seen[c], cap_seen[c], cap_parser[c] = bytearray(), [], [], EslParser()
                    readers[c] = asyncio.create_task(pump(c, conns[c][0]))
                elif r["dir"] == "rx":
                    cap_seen[c] += [to_reply(m) for m in cap_parser[c].feed(r["data"].encode("latin-1"))]
                elif r["dir"] == "tx":
                    await caught_up(c)
                    data = r["data"]
                    for old, new in rewrites:
                        data = data.replace(old, new)
                    conns[c][1].write(data.encode("latin-1"))
            ws_records = ws.records
            for rec in ws_records:
                await asyncio.wait_for(rec.closed.wait(), 5)
            for c, task in readers.items():
                try:
                    await asyncio.wait_for(task, 5)
                except TimeoutError:
                    conns[c][1].close()
    finally:
        await sw.stop()
    return {c: sessions_from(split_messages(bytes(data))) for c, data in out.items()}, ws_records


def captured_ws(name: str) -> dict | None:
    """The capture's WebSocket side: texts received, binary sizes, the close, request header names."""
    path = CONFORMANCE / f"{name}.ws1.jsonl"
    if not path.exists():
        return None
    records = [json.loads(x) for x in path.read_text().splitlines()]
    return {"headers": [h[0] for h in records[0]["request_headers"]],
            "texts": [r["data"] for r in records if r.get("dir") == "rx" and r.get("type") == "text"],
            "sizes": {r["len"] for r in records if r.get("dir") == "rx" and r.get("type") == "binary"},
            "close": next(tuple(r["close_rcvd_from_client"]) for r in records if r.get("type") == "close")}
