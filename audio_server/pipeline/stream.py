"""One stream's audio path, in order: reframe → echo gate → VAD → speech classifier → segment → barge-in → AMD → beep.

Segment items (what speech recognition hears) leave only for segments the classifier confirmed.

Sans-I/O: ``feed`` takes a message's bytes and returns what they caused, dated in stream time.
The server only moves bytes in and serialised events out.

The speech classifier (Silero, batched across streams) splits the work in two halves, so that
a server can run one model call for all its streams per loop turn:
``accept(data)`` reframes, judges echo and runs the cheap gate, and queues classifier windows in
the batcher; after ``batcher.run()``, ``advance()`` runs the rest and returns the events.
``feed`` is ``accept`` + run + ``advance`` with the pipeline's own batcher (a batch of one).
Decisions do not depend on how audio is cut into messages or on when the batcher runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callbot.audio_server.amd.beep import BeepDetector
from callbot.audio_server.amd.detector import AmdDetector
from callbot.audio_server.classify.confirm import SpeechConfirmer, SpeechSettings, speech_settings
from callbot.audio_server.echo.gate import NO_REFERENCE, EchoGate, EchoVerdict
from callbot.audio_server.echo.reference import PromptBands, load_prompt_bands
from callbot.audio_server.pipeline.bargein import BargeInDetector
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.held import ConfirmedSegments
from callbot.audio_server.pipeline.reframer import Reframer
from callbot.audio_server.pipeline.segmenter import Segmenter, SegmenterStep
from callbot.audio_server.pipeline.segments import FrameDecision, SegmentClosed, SegmentItem, SegmentOpened
from callbot.audio_server.pipeline.vad import LevelNormaliser, Vad, level_dbfs
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import AudioEvent


@dataclass
class PipelineOutput:
    """Everything one call of ``feed``/``advance``/``flush`` produced, each list in stream order."""

    events: list[AudioEvent] = field(default_factory=list)  # wire events
    frames: list[Frame] = field(default_factory=list)
    decisions: list[FrameDecision] = field(default_factory=list)  # the cascade's: what the segmenter heard
    line: list[FrameDecision] = field(default_factory=list)  # the plain [vad] gate's: what the AMD heard
    segment_items: list[SegmentItem] = field(default_factory=list)
    echo: list[EchoVerdict] = field(default_factory=list)


@dataclass(frozen=True)
class _Accepted:
    frame: Frame
    gate: FrameDecision  # webrtcvad and its guards, echo taken out
    echo: EchoVerdict
    line: FrameDecision  # what AMD hears: the plain [vad] gate, echo left in


class StreamPipeline:
    """The stages of one stream, wired in order; one instance per WebSocket connection.

    ``batcher``: a shared ``SileroBatcher`` the caller runs once per loop turn (then use
    ``accept``/``advance``); without one, the pipeline runs its own after each message.
    ``speech``: the cascade's settings (default: ``settings.speech`` when present, else defaults).
    """

    def __init__(self, params: StreamParams, settings: Settings, batcher: object | None = None,
                 speech: SpeechSettings | None = None) -> None:
        self.params = params
        self.speech = speech or speech_settings(settings)
        # A segment must outlive any pause the barge-in detector bridges, or bridging could never happen.
        vad = dataclasses.replace(settings.vad, hangover_ms=max(settings.vad.hangover_ms, params.bridge_ms))
        normaliser = None
        if self.speech.confirm:  # every segment is confirmed: the gate may open on weaker evidence
            sp = self.speech
            vad = dataclasses.replace(
                vad, min_level_dbfs=vad.min_level_dbfs if sp.gate_min_level_dbfs is None else sp.gate_min_level_dbfs,
                noise_margin_db=vad.noise_margin_db if sp.gate_noise_margin_db is None else sp.gate_noise_margin_db)
            if sp.level_max_gain_db > 0:
                normaliser = LevelNormaliser(vad.frame_ms, sp.level_target_dbfs, sp.level_max_gain_db)
        self.reframer = Reframer(params.rate, vad.frame_ms)
        self.vad = Vad(params.rate, vad, normaliser)
        # AMD keeps mod_amd's view of the line: the plain [vad] gate, no gate made keener for the cascade, and
        # the echo gate only once its path is trusted (before that, its worst-case guess or a chance lock
        # would hide a callee's first "hello?" or a machine's greeting): a trusted path explains the robot's
        # own greeting coming back, which AMD would otherwise take for a machine's long greeting.
        self.line_vad = Vad(params.rate, settings.vad) if vad != settings.vad or normaliser is not None else None
        self.segmenter = Segmenter(params.rate, vad)
        self.bargein = BargeInDetector(params.min_speech_ms, params.bridge_ms)
        self.amd = AmdDetector(params.amd)  # beside barge-in, never in front of it
        self.beep = BeepDetector(settings.amd)
        self.echo = EchoGate(params.rate, self.speech.echo_settings()) if self.speech.echo else None
        self.classifier = None
        self.batcher = batcher
        self._own_batcher = False
        if self.speech.confirm:
            from callbot.audio_server.classify.silero_batch import SileroBatcher, SileroStream

            self.classifier = SileroStream(params.rate)
            if self.batcher is None:
                self.batcher, self._own_batcher = SileroBatcher(), True
        self.confirmer = SpeechConfirmer(self.speech)
        self.held = (ConfirmedSegments(params.rate, vad.frame_ms, vad.pre_speech_ms)
                     if self.classifier is not None else None)
        self._pending: list[_Accepted] = []
        self._stt_speech_end = float("-inf")  # the end of the last segment given to speech recognition
        self._active_frames = max(1, self.speech.active_ms // vad.frame_ms)
        self._since_voiced = self._active_frames  # frames since the gate last voiced one

    @property
    def stream_time(self) -> float:
        """Seconds of audio received so far."""
        return self.reframer.samples_received / self.params.rate

    # --- playback markers (the robot's prompt, for the echo gate) ----------------------------------

    def playback_started(self, prompt: str | Path | np.ndarray | PromptBands, stream_t: float | None = None) -> None:
        """The robot's prompt started at ``stream_t`` (default: now, i.e. where the marker arrived).

        ``prompt``: the prompt WAV's path (read once and cached), its samples at the stream's
        rate, or its ``PromptBands``. Without an echo gate (``speech.echo = false``) this does nothing.
        """
        if self.echo is None:
            return
        if isinstance(prompt, PromptBands):
            bands = prompt
        elif isinstance(prompt, np.ndarray):
            bands = PromptBands.of(prompt, self.params.rate)
        else:
            bands = load_prompt_bands(str(prompt), self.params.rate)
        self.echo.start(bands, self._sample(stream_t))

    def playback_stopped(self, stream_t: float | None = None) -> None:
        if self.echo is not None:
            self.echo.stop(self._sample(stream_t))

    def playback_paused(self, stream_t: float | None = None) -> None:
        if self.echo is not None:
            self.echo.pause(self._sample(stream_t))

    def playback_resumed(self, stream_t: float | None = None) -> None:
        if self.echo is not None:
            self.echo.resume(self._sample(stream_t))

    def _sample(self, stream_t: float | None) -> int:
        return self.reframer.samples_received if stream_t is None else round(stream_t * self.params.rate)

    # --- audio ------------------------------------------------------------------------------------

    @property
    def awaits_batcher(self) -> bool:
        """Classifier windows wait in the shared batcher: run it before ``advance``."""
        return self.classifier is not None and not self._own_batcher and bool(self.classifier.pending)

    def feed(self, data: bytes) -> PipelineOutput:
        """Process one binary message (any size)."""
        self.accept(data)
        return self.advance()

    def accept(self, data: bytes) -> None:
        """First half: reframe, echo gate and the cheap VAD gate; queue classifier windows."""
        for frame in self.reframer.feed(data):
            echo = self.echo.judge(frame.samples, frame.start) if self.echo is not None else NO_REFERENCE
            level = level_dbfs(frame.samples)  # both gates judge the same frame: measured once
            gate = self.vad.decide(frame, echo.caller, level)
            line = self.line_vad.decide(frame, level=level) if self.line_vad is not None else gate
            if line.voiced and not echo.caller and echo.trusted:
                line = FrameDecision(frame=line.frame, voiced=False, level_dbfs=line.level_dbfs)
            if gate.voiced and not echo.caller:
                gate = FrameDecision(frame=gate.frame, voiced=False, level_dbfs=gate.level_dbfs)
            self._since_voiced = 0 if gate.voiced else self._since_voiced + 1
            if self.classifier is not None and self.classifier.push(frame.samples, self._since_voiced < self._active_frames):
                self.batcher.enqueue(self.classifier)  # type: ignore[union-attr]
            self._pending.append(_Accepted(frame, gate, echo, line))

    def advance(self) -> PipelineOutput:
        """Second half, once the batcher has run: classify, segment, detect, AMD, beep."""
        out = PipelineOutput()
        if self.classifier is not None and self.classifier.pending and self._own_batcher:
            self.batcher.run()  # type: ignore[union-attr]
        if self.classifier is not None and self.classifier.results:
            self.confirmer.add_results(self.classifier.results)
            self.classifier.results = []
        pending, self._pending = self._pending, []
        for item in pending:
            frame = item.frame
            decision = self._rescued(item) if self.classifier is not None else item.gate
            step = self.segmenter.feed(decision)
            confirmed = True
            if self.classifier is not None:
                for seg in step.items:
                    if isinstance(seg, SegmentOpened):
                        self.confirmer.open(round(seg.onset_s * self.params.rate))
                confirmed = self.confirmer.advance(frame.start + len(frame.samples))
                if not confirmed and any(isinstance(seg, SegmentClosed) for seg in step.items):
                    confirmed = self.confirmer.short_word()
            out.frames.append(frame)
            out.decisions.append(decision)
            out.line.append(item.line)
            out.echo.append(item.echo)
            self._after_segmenter(step, out, confirmed)
            out.events.extend(self.amd.feed(item.line, self._stt_speech_end if self.segmenter.quiet else None))
            if self.listens_for_beep:
                out.events.extend(self.beep.feed(frame))
        return out

    @property
    def listens_for_beep(self) -> bool:
        """Beeps matter until the AMD calls the line a person: the robot waits for one only on a machine (or
        before any verdict). After ``human`` the screen, an FFT of every loud frame, would cost 10-18 % of
        the server's CPU for events nobody acts on; a tone then in progress is dropped, never reported."""
        decision = self.amd.decision
        return decision is None or decision.result != "human"

    def _rescued(self, item: _Accepted) -> FrameDecision:
        """Inside speech, a frame the guards refused counts when webrtcvad and the classifier both hear speech."""
        gate = item.gate
        if gate.voiced or not self.segmenter.in_speech or not item.echo.caller:
            return gate
        end = item.frame.start + len(item.frame.samples)
        probability = self.confirmer.latest(end)
        if probability < min(self.speech.rescue_probability, self.speech.hold_probability):
            return gate
        floor = self.vad.noise.dbfs if self.vad.noise.dbfs is not None else gate.level_dbfs
        if probability >= self.speech.hold_probability and gate.level_dbfs >= floor + self.speech.hold_margin_db:
            return dataclasses.replace(gate, voiced=True)
        if probability < self.speech.rescue_probability or gate.level_dbfs < floor + 3.0:
            return gate
        return dataclasses.replace(gate, voiced=self.vad.speech_raw(item.frame))

    def flush(self) -> PipelineOutput:
        """End of stream: close an open segment (a partial last frame is dropped)."""
        if self.classifier is not None and self.classifier.pending:
            self.batcher.run()  # type: ignore[union-attr]  # the stream's last windows, shared batcher or not
        out = self.advance() if self._pending else PipelineOutput()
        self._after_segmenter(self.segmenter.flush(), out, self.confirmer.confirmed or self.classifier is None)
        if self.listens_for_beep:
            out.events.extend(self.beep.flush())
        return out

    def _after_segmenter(self, step: SegmenterStep, out: PipelineOutput, confirmed: bool = True) -> None:
        # speech recognition hears only segments the classifier confirmed
        items = step.items if self.held is None else self.held.feed(step.items, confirmed)
        out.segment_items.extend(items)
        for item in items:
            if isinstance(item, SegmentClosed):
                self._stt_speech_end = item.end_s
        out.events.extend(self.bargein.feed(step, confirmed))
