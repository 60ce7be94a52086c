"""Reframer: binary messages of any size (odd byte counts too) in, exact fixed-length Frames out."""

from __future__ import annotations

import numpy as np

from callbot.audio_server.pipeline.frames import Frame


class Reframer:
    """Cuts a little-endian int16 byte stream into frames of ``frame_ms`` at ``rate``.

    It holds at most one frame minus one byte between calls, so its memory is bounded whatever
    the message sizes. Stream time is the count of whole samples received so far.
    """

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        if rate <= 0 or frame_ms <= 0 or rate * frame_ms % 1000:
            raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self._frame_bytes = 2 * self.frame_samples
        self._pending = bytearray()
        self._next_start = 0  # stream sample index of the next frame

    @property
    def samples_received(self) -> int:
        """Whole samples received, framed or still pending."""
        return self._next_start + len(self._pending) // 2

    @property
    def pending_bytes(self) -> int:
        """Bytes held back because they do not yet make a whole frame."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[Frame]:
        """Add one message's bytes; return every frame that is now complete."""
        if not self._pending and len(data) % self._frame_bytes == 0:  # whole frames (the usual message): no copy
            whole = len(data) // self._frame_bytes
            block = np.frombuffer(data, dtype="<i2").astype(np.int16)
        else:
            self._pending += data
            whole = len(self._pending) // self._frame_bytes
            if not whole:
                return []
            cut = whole * self._frame_bytes
            block = np.frombuffer(bytes(self._pending[:cut]), dtype="<i2").astype(np.int16)
            del self._pending[:cut]
        frames = []
        for i in range(whole):
            samples = block[i * self.frame_samples:(i + 1) * self.frame_samples]
            frames.append(Frame(samples=samples, start=self._next_start, rate=self.rate))
            self._next_start += self.frame_samples
        return frames
