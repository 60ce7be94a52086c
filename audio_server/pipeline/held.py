"""Segment items for speech recognition, passed on only once the speech classifier has confirmed their segment.

The cheap gate opens segments on music, tones and alerts too; the classifier never confirms
those, and Whisper should never see them (it hears words in hold music, and they would cost
decodes). A segment's items are held until it is confirmed, then released in order; a segment
that closes unconfirmed is dropped whole. While held, only the last ``max_held_s`` are kept: the
released segment then starts at its first kept frame, with the frames before it as pre-roll.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from callbot.audio_server.pipeline.segments import SegmentAudio, SegmentClosed, SegmentItem, SegmentOpened


class ConfirmedSegments:
    """One stream's hold on unconfirmed segment items (see the module docstring)."""

    def __init__(self, rate: int, frame_ms: int, pre_speech_ms: int, max_held_s: float = 5.0) -> None:
        self._max_frames = max(1, round(max_held_s * 1000 / frame_ms))
        self._pre_frames = max(0, pre_speech_ms // frame_ms)
        self._rate = rate
        self._opened: SegmentOpened | None = None  # the held segment's opening, None when nothing is held
        self._held: collections.deque[SegmentAudio] = collections.deque()
        self._dropped: collections.deque[SegmentAudio] = collections.deque(maxlen=max(1, self._pre_frames))
        self._passing = False  # the open segment is confirmed: its items go straight through

    def feed(self, items: list[SegmentItem], confirmed: bool) -> list[SegmentItem]:
        """One frame's segment items and the classifier's verdict after that frame; the items to pass on."""
        out: list[SegmentItem] = []
        for item in items:
            if isinstance(item, SegmentOpened):
                self._opened, self._passing = item, False
                self._held.clear()
                self._dropped.clear()
            elif self._passing:
                out.append(item)
                self._passing = not isinstance(item, SegmentClosed)
            elif self._opened is None:
                continue  # the rest of a segment that was dropped (cannot happen: a close ends it)
            elif isinstance(item, SegmentAudio):
                self._held.append(item)
                if len(self._held) > self._max_frames:
                    self._dropped.append(self._held.popleft())
            else:  # closed while held: released if this very frame confirmed it, else dropped whole
                if confirmed:
                    out += self._release()
                    out.append(item)
                self._opened = None
                self._held.clear()
        if confirmed and self._opened is not None:
            out += self._release()
            self._passing = True
        return out

    def _release(self) -> list[SegmentItem]:
        released: list[SegmentItem] = [self._release_opening(), *self._held]
        self._opened = None
        self._held.clear()
        return released

    def _release_opening(self) -> SegmentOpened:
        """The held segment's opening; after a trim, re-dated to its first kept frame."""
        opened = self._opened
        assert opened is not None
        if not self._dropped:
            return opened
        first = self._held[0].frame if self._held else self._dropped[-1].frame
        pre = list(self._dropped)[-self._pre_frames:] if self._pre_frames else []
        preroll = np.concatenate([d.frame.samples for d in pre]) if pre else np.zeros(0, np.int16)
        return dataclasses.replace(opened, onset_s=first.t, preroll=preroll,
                                   preroll_start_s=pre[0].frame.t if pre else first.t)
