"""Segmenter: per-frame voice decisions in, speech segments (with pre-speech audio and hangover) out.

Speech starts when the last ``start_window_ms`` are at least ``start_ratio`` voiced (one click
never is); its onset is dated back to the first voiced frame of that run, not to the decision.
Inside speech, only ``continue_frames`` consecutive voiced frames extend it, so an isolated
click in a pause neither extends nor revives it. The segment ends once nothing has extended it
for ``hangover_ms``. All arithmetic is in samples of stream time.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import numpy as np

from callbot.audio_server.pipeline.segments import FrameDecision, SegmentAudio, SegmentClosed, SegmentItem, SegmentOpened
from callbot.config import VadSettings


@dataclass
class SegmenterStep:
    """What one frame produced: segment items, and the confirmed speech span it added (seconds)."""

    items: list[SegmentItem] = field(default_factory=list)
    speech: tuple[float, float] | None = None


class Segmenter:
    """Turns one stream's FrameDecisions into SegmentOpened / SegmentAudio / SegmentClosed."""

    def __init__(self, rate: int, settings: VadSettings) -> None:
        self._rate = rate
        frame = settings.frame_ms
        self._window = max(1, settings.start_window_ms // frame)
        self._need = max(1, math.ceil(settings.start_ratio * self._window - 1e-9))
        self._pre_frames = settings.pre_speech_ms // frame
        self._onset_gap = settings.onset_gap_ms // frame
        self._continue = max(1, settings.continue_frames)
        self._hangover = settings.hangover_ms * rate // 1000
        # Enough history to find an onset and still have pre-speech audio before it.
        self._history: collections.deque[FrameDecision] = collections.deque(
            maxlen=self._pre_frames + self._window + self._onset_gap + 1)
        self._segment_id = 0
        self._open = False
        self._voiced_end = 0  # sample where the last confirmed voiced frame ends
        self._run_start = 0  # first sample of the current consecutive voiced frames
        self._run_frames = 0
        self._since_voiced = self._window + self._onset_gap + 1  # frames since the last voiced one

    @property
    def in_speech(self) -> bool:
        return self._open

    @property
    def quiet(self) -> bool:
        """No segment is open, and none that opens later can date its onset back before now (no voiced frame
        within the start window and the onset's allowed gap)."""
        return not self._open and self._since_voiced > self._window + self._onset_gap

    def feed(self, decision: FrameDecision) -> SegmenterStep:
        """Fold in the next frame's decision."""
        self._history.append(decision)
        frame = decision.frame
        if decision.voiced:
            if not self._run_frames:
                self._run_start = frame.start
            self._run_frames += 1
            self._since_voiced = 0
        else:
            self._run_frames = 0
            self._since_voiced += 1
        if not self._open:
            return self._maybe_open(decision)
        return self._continue_segment(decision)

    def flush(self) -> SegmenterStep:
        """End of stream: close an open segment at its last voiced frame."""
        step = SegmenterStep()
        if self._open:
            step.items.append(self._close())
        return step

    def _maybe_open(self, decision: FrameDecision) -> SegmenterStep:
        if not decision.voiced:
            return SegmenterStep()
        recent = list(self._history)[-self._window:]
        if sum(d.voiced for d in recent) < self._need:
            return SegmenterStep()
        history = list(self._history)
        first = self._onset_index(history)
        onset = history[first].frame
        pre = history[max(0, first - self._pre_frames):first]
        preroll = (np.concatenate([d.frame.samples for d in pre]) if pre
                   else np.zeros(0, dtype=np.int16))
        self._segment_id += 1
        self._open = True
        self._voiced_end = decision.frame.start + len(decision.frame.samples)
        step = SegmenterStep(speech=(onset.t, self._voiced_end / self._rate))
        step.items.append(SegmentOpened(segment_id=self._segment_id, onset_s=onset.t, preroll=preroll,
                                        preroll_start_s=pre[0].frame.t if pre else onset.t))
        step.items.extend(SegmentAudio(self._segment_id, d.frame) for d in history[first:])
        return step

    def _onset_index(self, history: list[FrameDecision]) -> int:
        """Index of the first voiced frame of the run ending now, gaps up to ``onset_gap`` frames allowed."""
        first, gap = len(history) - 1, 0
        for i in range(len(history) - 2, -1, -1):
            if history[i].voiced:
                first, gap = i, 0
            else:
                gap += 1
                if gap > self._onset_gap:
                    break
        return first

    def _continue_segment(self, decision: FrameDecision) -> SegmenterStep:
        frame = decision.frame
        frame_end = frame.start + len(frame.samples)
        if self._run_frames >= self._continue:
            span_start = max(self._run_start, self._voiced_end)
            self._voiced_end = frame_end
            return SegmenterStep(items=[SegmentAudio(self._segment_id, frame)],
                                 speech=(span_start / self._rate, frame_end / self._rate))
        silent_for = frame_end - self._voiced_end
        step = SegmenterStep(items=[SegmentAudio(self._segment_id, frame, silent_ms=1000 * silent_for // self._rate)])
        run_may_save_it = self._run_frames and self._run_start - self._voiced_end <= self._hangover
        if silent_for > self._hangover and not run_may_save_it:
            step.items.append(self._close())
        return step

    def _close(self) -> SegmentClosed:
        self._open = False
        return SegmentClosed(segment_id=self._segment_id, end_s=self._voiced_end / self._rate)
