"""The audio format every part shares: L16 mono PCM at 8 or 16 kHz, moved in 20 ms frames.

mod_audio_stream sends the callee's audio as little-endian int16 mono at 8000 or 16000 Hz, one
20 ms frame per media tick (DESIGN section 2); the switch plays prompts on the same tick. These
numbers are stated here once; every other module derives its sizes from them.
"""

from __future__ import annotations

FRAME_MS = 20  # one media tick of the switch: what mod_audio_stream sends per message
FRAMES_PER_S = 1000 // FRAME_MS
RATES = (8000, 16000)  # the stream and prompt rates callbot handles (mod_audio_stream's 8k and 16k)
DEFAULT_RATE = 16000
SAMPLE_BYTES = 2  # int16


def frame_samples(rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one frame of ``frame_ms`` at ``rate`` Hz (320 for 20 ms at 16 kHz)."""
    return rate * frame_ms // 1000


def frame_bytes(rate: int, frame_ms: int = FRAME_MS) -> int:
    """Bytes in one frame of ``frame_ms`` at ``rate`` Hz (640 for 20 ms at 16 kHz)."""
    return SAMPLE_BYTES * frame_samples(rate, frame_ms)


def check_rate(rate: int, what: str = "sample rate") -> int:
    """``rate`` if callbot handles it, else a ValueError naming the rates it does."""
    if rate not in RATES:
        raise ValueError(f"{what} {rate} Hz: use {' or '.join(map(str, RATES))}")
    return rate
