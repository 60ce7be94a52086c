"""Prometheus metrics of the audio server's speech recognition, and the endpoints that expose them.

With several worker processes (``callbot.audio_server.serve``) the metrics add up across them
in prometheus_client's multiprocess mode: each worker writes its values to files in a directory
the supervisor owns, and the supervisor's ``/metrics`` reads them all. A dead worker's counters
stay counted after its restart; its gauges go (``livesum``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import (REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               start_http_server)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_RTF_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


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
    finals_suppressed: Counter

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
            finals_suppressed=Counter(
                "callbot_stt_finals_suppressed", "Finals not emitted: noise, empty or a known hallucination.",
                ["reason"], registry=registry,
            ),
        )


_default: SttMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> SttMetrics:
    """The process's metrics in prometheus_client's default registry (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SttMetrics.create(REGISTRY)
        return _default


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
