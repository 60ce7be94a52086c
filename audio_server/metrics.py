"""Prometheus metrics of the audio server (its decisions, stages, drops; its speech recognition), and their endpoints.

With several worker processes (``callbot.audio_server.serve``) the metrics add up across them
in prometheus_client's multiprocess mode: each worker writes its values to files in a directory
the supervisor owns, and the supervisor's ``/metrics`` reads them all. A dead worker's counters
stay counted after its restart; its gauges go (``livesum``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, TypeVar

from prometheus_client import (REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               start_http_server)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from callbot.events import Amd, AudioEvent, BargeIn, Beep, Error

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
# Fine below the barge-in's 40 ms budget, up to 1 s.
_SEND_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
                 0.25, 0.5, 1.0)
TIMED_DECISIONS = (BargeIn, Amd, Beep)  # decisions the robot acts on at once: their receive-to-send time is timed
STAGES = ("accept", "classify", "advance", "send")  # the shell's per-message work (audio_server/server.py)
FLUSH_MESSAGES = 50  # StageClock's batch: at most this many messages' stage times wait for a scrape


@dataclass(frozen=True)
class SttMetrics:
    """The STT metrics, registered once per registry (the default one in a server process)."""

    queue_depth: Gauge
    in_flight: Gauge
    decode_seconds: Histogram
    rtf: Histogram
    wait_seconds: Histogram
    audio_seconds: Counter
    partials_dropped: Counter
    finals: Counter
    finals_shared: Counter
    finals_early: Counter
    finals_suppressed: Counter
    redecoded: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "SttMetrics":
        return cls(
            queue_depth=Gauge("callbot_stt_queue_depth", "Decode jobs waiting for a worker.", registry=registry,
                              multiprocess_mode="livesum"),
            in_flight=Gauge("callbot_stt_in_flight", "Decodes running now.", registry=registry,
                            multiprocess_mode="livesum"),
            decode_seconds=Histogram(
                "callbot_stt_decode_seconds", "Wall time of one Whisper decode.", ["kind"],
                buckets=_LATENCY_BUCKETS, registry=registry,
            ),
            rtf=Histogram(
                "callbot_stt_real_time_factor", "Decode time divided by the audio's duration.", ["kind"],
                buckets=_RTF_BUCKETS, registry=registry,
            ),
            wait_seconds=Histogram(
                "callbot_stt_queue_wait_seconds", "Time a job waited in the queue.", ["kind"],
                buckets=_LATENCY_BUCKETS, registry=registry,
            ),
            audio_seconds=Counter(
                "callbot_stt_audio_seconds", "Seconds of audio decoded.", ["kind"], registry=registry
            ),
            partials_dropped=Counter(
                "callbot_stt_partials_dropped", "Partial decodes dropped because the queue was full or stale.",
                registry=registry,
            ),
            finals=Counter("callbot_stt_finals", "Final transcripts emitted.", registry=registry),
            finals_shared=Counter(
                "callbot_stt_finals_shared", "Finals that took the result of a partial decode (finished or running) that had heard all their speech.",
                registry=registry,
            ),
            finals_early=Counter(
                "callbot_stt_finals_early", "Finals sent before their segment closed (adaptive end of speech, stt.early_final_ms).",
                registry=registry,
            ),
            finals_suppressed=Counter(
                "callbot_stt_finals_suppressed", "Finals not emitted: noise, empty or a known hallucination.",
                ["reason"], registry=registry,
            ),
            redecoded=Counter(
                "callbot_stt_redecoded", "Decodes done again without the robot's prompt as context: the first one "
                "repeated a sentence (Whisper's loop).", ["kind"], registry=registry,
            ),
        )


@dataclass(frozen=True)
class AudioMetrics:
    """The stream shell's metrics: what it decided and sent, how fast, where its time went, what it dropped.

    All add up across worker processes (counters and a histogram; no gauge).
    """

    decisions: Counter
    decision_send_seconds: Histogram
    stage_seconds: Counter
    frames: Counter
    dropped: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "AudioMetrics":
        return cls(
            decisions=Counter(
                "callbot_audio_decisions", "Events the server decided and sent on the stream, by kind (the "
                "event's wire type: barge_in, amd, beep, speech_started, speech_stopped, final...; errors are not "
                "counted).", ["kind"], registry=registry,
            ),
            decision_send_seconds=Histogram(
                "callbot_audio_decision_send_seconds", "Wall time from receiving the binary message whose audio "
                "decided a barge_in, amd or beep to the return of ws.send of its text frame.", ["kind"],
                buckets=_SEND_BUCKETS, registry=registry,
            ),
            stage_seconds=Counter(
                "callbot_audio_stage_seconds", "Wall seconds (perf_counter around each call, so time the loop's "
                "thread lost to other threads or processes counts too) of the shell's per-message work: accept, "
                "classify (the shared Silero batch), advance, send (events of the audio path; not transcripts).",
                ["stage"], registry=registry,
            ),
            frames=Counter(
                "callbot_audio_frames", "20 ms frames processed; stage seconds / frames = time per frame.",
                registry=registry,
            ),
            dropped=Counter(
                "callbot_audio_dropped", "What the server dropped or refused: tail_bytes (bytes short of a frame "
                "at close), partials (transcripts not sent, the send queue full), and streams refused or cut, by "
                "error code (too_many_streams, rate_limited, message_too_large, internal_error).", ["what"],
                registry=registry,
            ),
        )

    def sent(self, event: AudioEvent, since_received: float | None = None) -> None:
        """``event`` went out; ``since_received``: seconds since the message whose audio decided it arrived."""
        if isinstance(event, Error):
            return
        kind = type(event).type
        self.decisions.labels(kind).inc()
        if since_received is not None and isinstance(event, TIMED_DECISIONS):
            self.decision_send_seconds.labels(kind).observe(since_received)


class StageClock:
    """The shell's seconds per stage and frames, summed in plain numbers and moved to the counters in batches.

    In multiprocess mode each counter ``inc`` writes a memory-mapped file: once per message and
    stage it would cost more than the smaller stages it measures. So the server adds here and
    flushes every ``flush_every`` messages and when a stream closes. One event loop thread per
    process adds: no lock.
    """

    def __init__(self, metrics: AudioMetrics, flush_every: int = FLUSH_MESSAGES) -> None:
        self.metrics, self.flush_every = metrics, flush_every
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.frames = self.messages = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def message(self, frames: int) -> None:
        """One binary message handled, with its frames; a flush every ``flush_every`` of them."""
        self.frames += frames
        self.messages += 1
        if self.messages >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Move the sums to the counters (a scrape sees them from now) and start again."""
        for stage, seconds in self.seconds.items():
            if seconds:
                self.metrics.stage_seconds.labels(stage).inc(seconds)
                self.seconds[stage] = 0.0
        if self.frames:
            self.metrics.frames.inc(self.frames)
        self.frames = self.messages = 0


class _Metrics(Protocol):
    """What ``_default`` makes: a dataclass of metrics that registers them with ``create``."""

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "_Metrics": ...


M = TypeVar("M", bound=_Metrics)
_defaults: dict[type, object] = {}
_default_lock = threading.Lock()


def _default(kind: type[M]) -> M:
    """``kind``'s metrics in prometheus_client's default registry, created on first use (once per process)."""
    with _default_lock:
        if kind not in _defaults:
            _defaults[kind] = kind.create(REGISTRY)
        return _defaults[kind]  # type: ignore[return-value]


def default_metrics() -> SttMetrics:
    """The process's STT metrics in the default registry."""
    return _default(SttMetrics)


def default_audio_metrics() -> AudioMetrics:
    """The process's stream shell metrics in the default registry."""
    return _default(AudioMetrics)


def workers_exposition(multiprocess_dir: str, own: CollectorRegistry) -> bytes:
    """``/metrics`` of a multi-process server: every worker's values summed, then the supervisor's ``own``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)
    return generate_latest(registry) + generate_latest(own)


def forget_process(pid: int, multiprocess_dir: str) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay counted)."""
    mark_process_dead(pid, multiprocess_dir)


def start_metrics_server(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> int:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the bound port (useful with port 0)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
