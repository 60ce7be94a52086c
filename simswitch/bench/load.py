"""``callbot simswitch-load``: does the emulator keep pace with N streaming calls at speed S? Prints JSON.

simswitch runs in its own thread and loop, a WebSocket sink (counting frames) in another, and the
ESL driver in the main thread, so each part's CPU time is measured separately (thread CPU time).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

import click

from callbot.esl.protocol import EslParser, parse_event, serialize_command, to_reply
from callbot.loop_thread import LoopThread
from callbot.simswitch.server import DEFAULT_FIXTURES
from callbot.simswitch.thread import SimSwitchThread


class _Sink:
    """A WebSocket server that only answers the upgrade and counts bytes (no frame parsing), so the
    measurement is of the switch, not of the sink."""

    def __init__(self) -> None:
        self.bytes = 0
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while data := await reader.read(1 << 16):
            self.bytes += len(data)


async def _thread_cpu() -> float:
    return time.thread_time()


async def _drive(port: int, calls: int, fixture: str, sink_port: int) -> list[str]:
    """Originate the calls and start a mono 16k stream on each once answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies: asyncio.Queue[Any] = asyncio.Queue()
    answered: set[str | None] = set()
    news = asyncio.Event()

    async def pump() -> None:
        parser = EslParser()
        while data := await reader.read(65536):
            for raw in parser.feed(data):
                r = to_reply(raw)
                if r.content_type.startswith("text/event"):
                    answered.add(parse_event(r).unique_id)
                    news.set()
                else:
                    replies.put_nowait(r)

    async def command(line: str) -> Any:
        writer.write(serialize_command(line))
        return await replies.get()

    task = asyncio.create_task(pump())
    await replies.get()  # auth/request
    for line in ("auth ClueCon", "event plain CHANNEL_ANSWER"):
        await command(line)
    uuids = [str(uuidlib.uuid4()) for _ in range(calls)]
    for u in uuids:
        await command(f"bgapi originate {{origination_uuid={u}}}fixture/{fixture} &park()")
    for u in uuids:
        while u not in answered:
            news.clear()
            await news.wait()
        await command(f"api uuid_audio_stream {u} start ws://127.0.0.1:{sink_port}/stream/{u} mono 16k")
    task.cancel()
    writer.close()
    return uuids


@click.command("simswitch-load")
@click.option("--calls", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--speed", type=float, default=10.0, show_default=True)
@click.option("--seconds", type=float, default=10.0, show_default=True, help="Virtual seconds to measure.")
@click.option("--fixture", default=str(DEFAULT_FIXTURES / "long_reply.wav"), show_default=True,
              help="Callee WAV (absolute path or a name under the fixtures dir).")
def simswitch_load(calls: int, speed: float, seconds: float, fixture: str) -> None:
    """Run N calls streaming mono 16k to a sink and print whether the media tick kept pace (JSON)."""
    if not speed > 0:
        raise click.BadParameter(f"--speed must be > 0, got {speed}")
    if not Path(fixture).is_absolute() and not (DEFAULT_FIXTURES / fixture).exists():
        raise click.BadParameter(f"fixture {fixture} not found")
    sink, sink_thread = _Sink(), LoopThread("sink")
    with sink_thread, SimSwitchThread(speed=speed) as sim:
        sink_thread.run(sink.start())
        uuids = asyncio.run(_drive(sim.esl_port, calls, fixture, sink.port))
        assert sim.switch is not None
        switch = sim.switch
        sim.call(lambda: setattr(switch, "max_tick_lag_s", 0.0))
        bytes0 = sink_thread.run(asyncio.sleep(0, sink.bytes))
        cpu0 = (sim.thread.run(_thread_cpu()), sink_thread.run(_thread_cpu()))
        v0, w0 = sim.call(switch.clock.now), time.monotonic()
        time.sleep(seconds / speed)
        v1, w1 = sim.call(switch.clock.now), time.monotonic()
        cpu1 = (sim.thread.run(_thread_cpu()), sink_thread.run(_thread_cpu()))
        bytes1 = sink_thread.run(asyncio.sleep(0, sink.bytes))
        live = sim.call(lambda: len(switch.live))
        lag = sim.call(lambda: switch.max_tick_lag_s)
        sink_thread.run(_close(sink))
    wall = w1 - w0
    out = {"calls": calls, "speed": speed, "live_calls": live, "virtual_s": round(v1 - v0, 3),
           "wall_s": round(wall, 3), "audio_bytes_received": bytes1 - bytes0,
           "audio_bytes_expected": int(round(len(uuids) * (v1 - v0) * 50 * (640 + 8))),
           "max_tick_lag_ms": round(lag * 1000, 1),
           "cpu_s": {"switch": round(cpu1[0] - cpu0[0], 3), "ws_sink": round(cpu1[1] - cpu0[1], 3)},
           "switch_cpu_per_wall_s": round((cpu1[0] - cpu0[0]) / wall, 3)}
    click.echo(json.dumps(out))


async def _close(sink: _Sink) -> None:
    sink.server.close()
    for writer in sink.writers:
        writer.close()
    await asyncio.sleep(0.05)  # let each connection task see its EOF and end
    await sink.server.wait_closed()
