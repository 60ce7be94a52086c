"""Barge-in detector: segmenter output in, speech_started / barge_in / speech_short / speech_stopped out.

An utterance is confirmed speech whose gaps are at most ``bridge_ms``. When it reaches
``min_speech_ms`` (measured from its onset, bridged gaps included) ``barge_in`` fires, once,
on the very frame that crosses the mark. A segment that ends without one is ``speech_short``.

With a speech classifier in front (``confirmed`` per frame), a segment is only speech once the
classifier has confirmed it: ``speech_started`` (still dated to the onset) waits for that, a
barge-in that reached the mark unconfirmed fires on the first confirmed frame that extends it,
and a segment never confirmed ends without any event (music, tones, alerts).
"""

from __future__ import annotations

from callbot.events import AudioEvent, BargeIn, SpeechShort, SpeechStarted, SpeechStopped
from callbot.audio_server.pipeline.segmenter import SegmenterStep
from callbot.audio_server.pipeline.segments import SegmentClosed, SegmentOpened

EPS = 1e-6  # seconds; stream times are sample counts over the rate, so only float noise is absorbed


class BargeInDetector:
    """Per-stream barge-in decisions, in stream time only."""

    def __init__(self, min_speech_ms: int, bridge_ms: int) -> None:
        self._min_speech = min_speech_ms / 1000.0
        self._bridge = bridge_ms / 1000.0
        self._segment_onset: float | None = None
        self._fired_in_segment = False
        self._utterance: tuple[float, float] | None = None  # (onset, end) of bridged speech
        self._fired = False
        self._started = False  # speech_started sent for the open segment

    def feed(self, step: SegmenterStep, confirmed: bool = True) -> list[AudioEvent]:
        """Events for one frame's segmenter step, in order; ``confirmed``: the classifier's verdict so far."""
        events: list[AudioEvent] = []
        for item in step.items:
            if isinstance(item, SegmentOpened):
                self._segment_onset = item.onset_s
                self._fired_in_segment = self._started = False
        if confirmed and self._segment_onset is not None and not self._started:
            self._started = True
            events.append(SpeechStarted(t=self._segment_onset))
        if step.speech is not None:
            events.extend(self._extend(*step.speech, confirmed=confirmed))
        for item in step.items:
            if isinstance(item, SegmentClosed):
                closed = self._closed(item.end_s)
                if closed is not None:
                    events.append(closed)
        return events

    def _extend(self, start: float, end: float, confirmed: bool = True) -> list[AudioEvent]:
        if self._utterance is None or start - self._utterance[1] > self._bridge + EPS:
            self._utterance, self._fired = (start, end), False
        else:
            self._utterance = (self._utterance[0], end)
        onset = self._utterance[0]
        if self._fired or not confirmed or end - onset < self._min_speech - EPS:
            return []
        self._fired = self._fired_in_segment = True
        return [BargeIn(t=end, onset_s=onset, duration_ms=round((end - onset) * 1000))]

    def _closed(self, end_s: float) -> AudioEvent | None:
        onset = self._segment_onset if self._segment_onset is not None else end_s
        duration_ms = round((end_s - onset) * 1000)
        self._utterance, self._segment_onset = None, None
        if not self._started:
            return None  # never confirmed as speech: no event at all
        if self._fired_in_segment:
            return SpeechStopped(t=end_s, duration_ms=duration_ms)
        return SpeechShort(t=end_s, duration_ms=duration_ms)
