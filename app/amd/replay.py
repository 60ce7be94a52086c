"""Replay one fixture WAV through the AMD and beep stages, or through a whole replayed call, into a FixtureOutcome.

:func:`replay_pipeline` ("pipeline" mode) drives the audio stages directly (WAV → StreamPipeline →
AmdDetector + BeepDetector), optionally with real Whisper decodes feeding transcript hints;
there is no switch or robot, so the voicemail prompt is not measured. :func:`robot_replay`
("replay" mode) places the call with ``robot.replay.replay`` (simswitch, the audio server and the
robot acting on AMD, in this process) and also reports where the voicemail prompt started at the switch.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import soundfile as sf

from callbot.audio_server.amd.detector import AmdDetector, AmdParams
from callbot.audio_server.amd.beep import BeepDetector
from callbot.events import Amd, BargeIn, Beep, Final, Partial
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.audio_server.stt.queue import DecodeQueue
from callbot.audio_server.stt.stage import DecodeJob, DecodeResult, SegmentTranscriber
from callbot.audio_format import RATES, frame_bytes
from callbot.config import Settings

if TYPE_CHECKING:  # loading faster-whisper is slow: only --stt pays for it
    from callbot.audio_server.stt.engine import SttEngine


@dataclass
class FixtureOutcome:
    """What one replay observed, in seconds from answer."""

    amd: Amd | None
    beeps: list[Beep] = field(default_factory=list)
    prompt_started_s: float | None = None  # the voicemail prompt's PLAYBACK_START (robot replays only)
    transcripts: list[dict[str, Any]] = field(default_factory=list)  # STT output offered to the AMD: t (arrival),
    # audio_t (the end of the audio it describes, by which the AMD dates it), final, text
    barge_in_s: float | None = None  # the first barge_in detection: AMD runs beside it and must not delay it
    acted_after_s: float | None = None  # from the verdict to the robot acting on it, call time (robot replays only)
    frames: int = 0
    cpu_s: dict[str, float] = field(default_factory=lambda: {"amd": 0.0, "beep": 0.0})  # in the stages only


ReplayFn = Callable[[Path, Settings], FixtureOutcome]


class FixtureError(ValueError):
    """A fixture that cannot be scored; the message names the file and what to fix."""


def read_callee(wav: Path) -> tuple[np.ndarray, int]:
    """The callee's int16 samples (left channel of a stereo fixture) and the rate, or a FixtureError."""
    try:
        samples, rate = read_wav(wav)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise FixtureError(f"{wav}: not a readable WAV ({exc})") from None
    if rate not in RATES:
        raise FixtureError(f"{wav}: {rate} Hz; fixtures must be {' or '.join(map(str, RATES))} Hz")
    return samples, rate


class WhisperInTheLoop:
    """Real Whisper decodes for a replay that runs faster than real time, on one worker.

    Each job is decoded when the worker takes it, but its result reaches the AMD only when stream
    time passes the moment it would have arrived live: when the worker took it plus the decode's
    measured wall time (or ``latency_s``, for results that do not depend on the machine's load). The
    worker takes jobs as the engine does (``DecodeQueue``: finals first, and a final drops its
    segment's queued partials), and a final shares a running partial decode that heard all its
    speech (dropping them too). So hints are as late as they would be live with one decode at a time.
    """

    def __init__(self, engine: SttEngine, transcriber: SegmentTranscriber, latency_s: float | None = None) -> None:
        self.engine = engine
        self.transcriber = transcriber
        self.latency_s = latency_s
        self._queue = DecodeQueue(engine.settings.queue_max)
        self._pending: list[tuple[float, int, DecodeJob, DecodeResult | None]] = []  # heap by arrival
        self._running: tuple[float, DecodeJob, DecodeResult] | None = None  # (done at, job, its result)
        self._seq = 0

    def submit(self, jobs: list[DecodeJob], now: float) -> None:
        for job in jobs:
            running = self._running
            if running is not None and job.can_take(running[1]):
                self._arrive(running[0], job, running[2])
                dropped = self._queue.drop_stale(job)
            else:
                dropped = self._queue.push(job)
            for stale in dropped:
                self._arrive(now, stale, None)
        self._take(now)

    def due(self, now: float) -> list[tuple[float, Partial | Final]]:
        """Transcripts that have arrived by stream time ``now``, with their arrival times."""
        out: list[tuple[float, Partial | Final]] = []
        while True:
            arrives = self._pending[0][0] if self._pending else float("inf")
            free = self._running[0] if self._running is not None else float("inf")
            if min(arrives, free) > now:
                return out
            if free <= arrives:  # the worker is done: it takes the next job at once
                self._running = None
                self._take(free)
                continue
            at, _, job, result = heapq.heappop(self._pending)
            step = self.transcriber.on_result(job, result)
            self.submit(step.jobs, at)
            out += [(at, event) for event in step.events]

    def _take(self, now: float) -> None:
        job = self._queue.pop() if self._running is None else None
        if job is not None:
            result = self.engine.decode(job)
            done = now + (result.decode_s if self.latency_s is None else self.latency_s)
            self._running = (done, job, result)
            self._arrive(done, job, result)

    def _arrive(self, at: float, job: DecodeJob, result: DecodeResult | None) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (at, self._seq, job, result))


def replay_pipeline(wav: Path, settings: Settings, engine: SttEngine | None = None,
                    latency_s: float | None = None) -> FixtureOutcome:
    """Feed the WAV in 20 ms messages through the audio pipeline, the AMD and the beep detector;
    with ``engine``, partials and finals from real Whisper decodes reach the AMD as hints."""
    samples, rate = read_callee(wav)
    params = dataclasses.replace(StreamParams.defaults(str(uuid.uuid4()), settings), rate=rate)
    pipeline = StreamPipeline(params, settings)
    amd = AmdDetector(AmdParams(settings.amd, transcripts=engine is not None))
    beeper = BeepDetector(settings.amd)
    stt = engine and WhisperInTheLoop(engine, SegmentTranscriber(settings.stt, rate, params.call), latency_s)
    outcome = FixtureOutcome(amd=None)
    data = samples.astype("<i2").tobytes()
    step = frame_bytes(rate)  # what mod_audio_stream sends per message
    for offset in range(0, len(data), step):
        out = pipeline.feed(data[offset: offset + step])
        for decision in out.line:  # what the pipeline's own AMD hears: the plain [vad] gate
            for at, event in stt.due(decision.frame.t) if stt else []:
                outcome.transcripts.append({"t": round(at, 3), "audio_t": event.t, "final": isinstance(event, Final),
                                            "text": event.text})
                amd.on_transcript(event.text, event.t, isinstance(event, Final))  # dated by its audio
            started = time.perf_counter()
            amd.feed(decision)
            outcome.cpu_s["amd"] += time.perf_counter() - started
        for frame in out.frames:
            started = time.perf_counter()
            outcome.beeps += beeper.feed(frame)
            outcome.cpu_s["beep"] += time.perf_counter() - started
        outcome.frames += len(out.frames)
        if outcome.barge_in_s is None:
            outcome.barge_in_s = next((e.t for e in out.events if isinstance(e, BargeIn)), None)
        if stt:
            stt.submit(stt.transcriber.feed(out.segment_items).jobs, pipeline.stream_time)
    pipeline.flush()
    amd.flush()
    outcome.beeps += beeper.flush()
    outcome.amd = amd.decision
    return outcome


def pipeline_replay(engine: SttEngine | None) -> ReplayFn:
    """The "pipeline" ReplayFn, with Whisper hints when ``engine`` is given."""
    return functools.partial(replay_pipeline, engine=engine)


def load_engine(settings: Settings) -> SttEngine:
    """The configured Whisper model (stt section), loaded once for a whole report."""
    from prometheus_client import CollectorRegistry

    from callbot.audio_server.metrics import SttMetrics
    from callbot.audio_server.stt.engine import SttEngine

    return SttEngine(settings.stt, SttMetrics.create(CollectorRegistry()))


def outcome_from_replay(doc: Mapping[str, Any]) -> FixtureOutcome:
    """Read a ``callbot replay --json`` document (DESIGN section 5): the audio ``amd`` and ``beep``
    events of its timeline, and the voicemail prompt, i.e. the first prompt started at or after a
    ``machine`` decision (a prompt started before the beep shows up as a negative offset)."""
    try:
        audio = [e for e in doc["events"] if e.get("source") == "audio"]
        verdict = next((e for e in audio if e.get("type") == "amd"), None)
        amd = None if verdict is None else Amd(t=verdict["t"], result=verdict["result"], cause=verdict["cause"],
                                               decided_at_s=verdict["decided_at_s"])
        acted = next((e["t"] for e in doc["events"] if e.get("source") == "robot" and e.get("type") == "amd_result"),
                     None)
        beeps = [Beep(t=e["t"], freq_hz=e["freq_hz"], duration_ms=e["duration_ms"])
                 for e in audio if e.get("type") == "beep"]
        started = sorted(p["started_s"] for p in doc["prompts"])
        barge_in = min((b["detected_s"] for b in doc["barge_ins"]), default=None)
    except (KeyError, TypeError) as exc:
        raise FixtureError(f"callbot replay output lacks {exc}; see DESIGN section 5") from None
    prompt = None
    if amd is not None and amd.result == "machine":
        prompt = next((t for t in started if t >= amd.decided_at_s), None)
    # the verdict's row is dated where it was decided, the robot's where it acted: both call time
    acted_after = None if verdict is None or acted is None else round(acted - verdict["t"], 3)
    return FixtureOutcome(amd=amd, beeps=beeps, prompt_started_s=prompt, barge_in_s=barge_in, acted_after_s=acted_after)


def robot_replay(audio_port: int, scenario: Path | None, speed: float) -> ReplayFn:
    """A ReplayFn that replays the call in this process (``robot.replay.replay``: simswitch, the robot
    acting on AMD, and the audio server already listening on ``audio_port``, shared by all fixtures).
    The voicemail prompt's start is the switch's ground truth (when it really started playing)."""
    from callbot.app.replay import ReplayError, replay  # the callbot.robot side is only needed for this mode

    def run(wav: Path, settings: Settings) -> FixtureOutcome:
        truths: list[dict[str, Any]] = []
        try:
            doc = replay(str(wav), settings.replace(**{"robot.act_on_amd": True}), speed=speed,
                         scenario=str(scenario) if scenario else None, audio_port=audio_port, on_truth=truths.append)
        except ReplayError as exc:
            raise FixtureError(f"{wav}: {exc}") from None
        if not truths:
            raise FixtureError(f"{wav}: the replayed call was not answered (flags {doc.get('flags')})")
        return outcome_from_replay({**doc, "prompts": truths[0]["prompts"]})

    return run


