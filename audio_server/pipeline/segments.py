"""What the VAD and segmenter hand to later stages (STT, AMD): per-frame decisions and speech segments.

These are internal pipeline items, not wire events: the server never sends them. They let the
STT and AMD stages consume the segmenter's output without knowing how it was decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from callbot.audio_server.pipeline.frames import Frame


@dataclass(frozen=True)
class FrameDecision:
    """The VAD's verdict on one frame, after the noise floor and voiced-ratio guards."""

    frame: Frame
    voiced: bool
    level_dbfs: float


@dataclass(frozen=True)
class SegmentOpened:
    """A speech segment began at ``onset_s``; ``preroll`` is the pre-speech buffer from ``preroll_start_s``.

    The preroll (int16, mono) ends where the first ``SegmentAudio`` frame begins.
    """

    segment_id: int
    onset_s: float
    preroll: np.ndarray
    preroll_start_s: float


@dataclass(frozen=True)
class SegmentAudio:
    """One frame that belongs to the open segment (voiced frames and bridged gaps alike).

    ``silent_ms`` is how long the segment has been without voice at the end of this frame (0 while
    speech goes on): STT starts the final's decode early in a pause, before the hangover ends.
    """

    segment_id: int
    frame: Frame
    silent_ms: int = 0


@dataclass(frozen=True)
class SegmentClosed:
    """The segment ended at ``end_s`` (end of its last voiced frame, hangover excluded)."""

    segment_id: int
    end_s: float


SegmentItem = SegmentOpened | SegmentAudio | SegmentClosed
