"""A client that streams PCM into the audio server the way mod_audio_stream does, and collects its events.

Binary int16 LE messages of 20 ms (or random sizes, odd byte counts included), paced at real time
× ``speed`` (0: as fast as the socket takes them). Used by ``callbot stream``, the tests and benches.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence
from urllib.parse import urlencode

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from callbot.audio_format import frame_bytes


@dataclass
class StreamResult:
    """What the server sent back: its text frames in order, and how it closed (None: we closed first)."""

    texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and rate; the left channel (the callee) of a stereo file."""
    samples, rate = sf.read(str(path), dtype="int16", always_2d=True)
    return np.ascontiguousarray(samples[:, 0]), rate


def chunk_sizes(total: int, rate: int, chunking: str, seed: int = 0) -> Iterator[int]:
    """Message sizes in bytes: ``20ms`` frames, or ``random`` sizes from 1 byte to 60 ms (odd ones too)."""
    frame = frame_bytes(rate)
    rng = np.random.default_rng(seed)
    sent = 0
    while sent < total:
        size = frame if chunking == "20ms" else int(rng.integers(1, 3 * frame))
        size = min(size, total - sent)
        sent += size
        yield size


def stream_url(base: str, call: str | None = None, **query: object) -> str:
    """``base/stream/<call>?k=v...`` with any keys, unchecked (to probe what the server refuses); a fresh uuid
    when ``call`` is None. A robot builds its URL with :func:`callbot.stream.stream_url`, which checks them."""
    q = urlencode({k: v for k, v in query.items() if v is not None})
    return f"{base.rstrip('/')}/stream/{call or uuid.uuid4()}" + (f"?{q}" if q else "")


async def stream_pcm(url: str, samples: np.ndarray, rate: int, *, chunking: str = "20ms", speed: float = 1.0,
                     seed: int = 0, linger_s: float = 2.0, texts: Sequence[tuple[float, str]] = (),
                     on_text: Callable[[str], None] | None = None,
                     headers: dict[str, str] | None = None) -> StreamResult:
    """Stream ``samples``, then wait up to ``linger_s`` for the server to close (e.g. its idle timeout).

    ``texts`` are (stream second, text) pairs: each text frame goes before the audio from that second
    on (metadata first, late, or garbage). Events come back while audio is still being sent; each
    is also given to ``on_text``.
    """
    result = StreamResult()
    data = samples.astype("<i2").tobytes()
    async with connect(url, additional_headers=headers, compression=None, max_size=2**20) as ws:
        async def receive() -> None:
            try:
                async for text in ws:
                    result.texts.append(str(text))
                    if on_text:
                        on_text(str(text))
            except ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        t0, sent = loop.time(), 0
        pending = sorted(texts, key=lambda item: item[0])
        try:
            for size in chunk_sizes(len(data), rate, chunking, seed):
                while pending and pending[0][0] <= sent / (2 * rate):
                    await ws.send(pending.pop(0)[1])
                if speed > 0:
                    delay = t0 + sent / (2 * rate) / speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(data[sent:sent + size])
                sent += size
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(receiver), linger_s)
        except TimeoutError:
            await ws.close()
            await receiver
    if ws.protocol.close_rcvd_then_sent:  # the server closed first: its code says why
        result.close_code, result.close_reason = ws.close_code, ws.close_reason or ""
    return result
