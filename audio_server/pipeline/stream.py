"""One stream's audio path, in order: reframe → VAD → segment → barge-in (later stages go here too).

Sans-I/O: ``feed`` takes a message's bytes and returns what they caused, dated in stream time.
The server only moves bytes in and serialised events out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from callbot.audio_server.amd.detector import AmdDetector
from callbot.audio_server.pipeline.bargein import BargeInDetector
from callbot.audio_server.amd.beep import BeepDetector
from callbot.events import AudioEvent, Final, Partial
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.reframer import Reframer
from callbot.audio_server.pipeline.segmenter import Segmenter, SegmenterStep
from callbot.audio_server.pipeline.segments import FrameDecision, SegmentItem
from callbot.audio_server.stream_params import StreamParams
from callbot.audio_server.pipeline.vad import Vad
from callbot.config import Settings


@dataclass
class PipelineOutput:
    """Everything one call of ``feed``/``flush`` produced, each list in stream order."""

    events: list[AudioEvent] = field(default_factory=list)  # wire events
    frames: list[Frame] = field(default_factory=list)
    decisions: list[FrameDecision] = field(default_factory=list)
    segment_items: list[SegmentItem] = field(default_factory=list)


class StreamPipeline:
    """The stages of one stream, wired in order; one instance per WebSocket connection."""

    def __init__(self, params: StreamParams, settings: Settings) -> None:
        self.params = params
        # A segment must outlive any pause the barge-in detector bridges, or bridging could never happen.
        vad = dataclasses.replace(settings.vad, hangover_ms=max(settings.vad.hangover_ms, params.bridge_ms))
        self.reframer = Reframer(params.rate, vad.frame_ms)
        self.vad = Vad(params.rate, vad)
        self.segmenter = Segmenter(params.rate, vad)
        self.bargein = BargeInDetector(params.min_speech_ms, params.bridge_ms)
        self.amd = AmdDetector(params.amd)  # beside barge-in, never in front of it
        self.beep = BeepDetector(settings.amd)

    @property
    def stream_time(self) -> float:
        """Seconds of audio received so far."""
        return self.reframer.samples_received / self.params.rate

    def feed(self, data: bytes) -> PipelineOutput:
        """Process one binary message (any size)."""
        out = PipelineOutput()
        for frame in self.reframer.feed(data):
            decision = self.vad.decide(frame)
            step = self.segmenter.feed(decision)
            out.frames.append(frame)
            out.decisions.append(decision)
            self._after_segmenter(step, out)
            out.events.extend(self.amd.feed(decision))
            out.events.extend(self.beep.feed(frame))
        return out

    def flush(self) -> PipelineOutput:
        """End of stream: close an open segment (a partial last frame is dropped)."""
        out = PipelineOutput()
        self._after_segmenter(self.segmenter.flush(), out)
        out.events.extend(self.beep.flush())
        return out

    def on_transcript(self, event: Partial | Final) -> list[AudioEvent]:
        """STT's partials and finals as AMD hints, dated by the stream time they arrive at."""
        return list(self.amd.on_transcript(event.text, self.stream_time, isinstance(event, Final)))

    def _after_segmenter(self, step: SegmenterStep, out: PipelineOutput) -> None:
        out.segment_items.extend(step.items)
        out.events.extend(self.bargein.feed(step))
