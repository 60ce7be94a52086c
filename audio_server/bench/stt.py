"""STT benchmark: N concurrent talking streams at real-time pace through the pipeline, the STT stage and the shared engine.

Everything runs in one process and one event loop, as in the audio server: each stream feeds
20 ms messages on a wall-clock schedule (so decodes compete as they would live), the barge-in
path runs inline, and decodes run on the engine's thread pool. Figures are wall-clock measured;
decisions (barge-in, segments) stay in stream time.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from callbot.events import AudioEvent, BargeIn, Final, Partial
from callbot.audio_server.metrics import SttMetrics
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.pipeline.segments import SegmentClosed, SegmentOpened
from callbot.audio_format import frame_samples
from callbot.audio_server.stream_params import StreamParams
from callbot.audio_server.stt.engine import SttEngine
from callbot.audio_server.stt.shell import StreamTranscription
from callbot.config import Settings
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()
BENCH_FIXTURES = ("long_reply", "two_short", "backchannel", "short_yes", "pauses_2500ms")


@dataclass(frozen=True)
class Fixture:
    """A callee recording: mono int16 samples (left channel of a stereo file) and its sidecar."""

    name: str
    samples: np.ndarray
    rate: int
    sidecar: dict

    @classmethod
    def load(cls, path: Path) -> "Fixture":
        with wave.open(str(path)) as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            samples = pcm.reshape(-1, w.getnchannels())[:, 0].copy()
            rate = w.getframerate()
        side = path.with_suffix(".json")
        return cls(path.stem, samples, rate, json.loads(side.read_text()) if side.exists() else {})

    @classmethod
    def named(cls, name: str, directory: Path = FIXTURES) -> "Fixture":
        path = directory / f"{name}.wav"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in directory.glob("*.wav"))) or "none"
            raise FileNotFoundError(f"no fixture {path}; fixtures in {directory}: {known}")
        return cls.load(path)


@dataclass
class StreamRun:
    """What one stream produced: events with the wall time (s since the run's start) they came out."""

    call: str
    speed: float | None = None  # x real time the stream was fed at (None: as fast as possible)
    audio_s: float = 0.0
    started: float = 0.0  # wall time (s since the run's start) the first message was fed
    speech_s: float = 0.0  # total duration of the speech segments (onset to end)
    open_onset_s: float = 0.0  # onset of the segment open now
    events: list[tuple[float, AudioEvent]] = field(default_factory=list)
    closes: dict[float, float] = field(default_factory=dict)  # segment end_s -> wall time its close was fed
    speech_end_wall: dict[float, float] = field(default_factory=dict)  # end_s -> wall time that audio was fed

    def of(self, kind: type) -> list:
        return [e for _, e in self.events if isinstance(e, kind)]

    def final_latencies(self) -> tuple[list[float], list[float]]:
        """(from the segment's close decision, from the fed end of speech) for each final.

        An early final (``stt.early_final_ms``) comes before its segment closes: negative from the close.
        One whose segment went on after it has no close; its end of speech is its ``end_s`` at the feed pace.
        """
        from_close, from_speech = [], []
        for wall, event in self.events:
            if not isinstance(event, Final):
                continue
            if event.end_s in self.closes:
                from_close.append(wall - self.closes[event.end_s])
                from_speech.append(wall - self.speech_end_wall[event.end_s])
            elif self.speed:
                from_speech.append(wall - (self.started + event.end_s / self.speed))
        return from_close, from_speech


async def drive_stream(
    call: str, fixtures: list[Fixture], settings: Settings, engine: SttEngine | None,
    speed: float | None, clock_start: float, settle: bool = False,
) -> StreamRun:
    """Feed the fixtures back to back as one stream, ``speed`` x real time (None: as fast as possible).

    With ``settle`` each message waits until every decode it caused is done: a deterministic
    replay as if the decoder were infinitely fast (used by tests).
    """
    rate = fixtures[0].rate
    if any(f.rate != rate for f in fixtures):
        raise ValueError(f"stream {call}: fixtures must share one sample rate")
    pipeline = StreamPipeline(StreamParams(call, rate, settings.bargein.min_speech_ms, settings.bargein.bridge_ms),
                              settings)
    run = StreamRun(call, speed)
    now = lambda: time.perf_counter() - clock_start  # noqa: E731 - the run's wall clock, in one place
    transcription = None
    if engine is not None:
        transcription = StreamTranscription.open(engine, rate, call, lambda e: run.events.append((now(), e)))
    audio = np.concatenate([f.samples for f in fixtures])
    step = frame_samples(rate)
    started = run.started = now()
    for i in range(0, len(audio), step):
        if speed is not None:
            await asyncio.sleep(max(0.0, started + i / rate / speed - now()))
        out = pipeline.feed(audio[i:i + step].tobytes())
        _record(run, out.events, out.segment_items, now(), started, speed)
        if transcription is not None:
            transcription.feed(out.segment_items)
            if settle:
                await transcription.idle()
    out = pipeline.flush()
    _record(run, out.events, out.segment_items, now(), started, speed)
    run.audio_s = len(audio) / rate
    if transcription is not None:
        transcription.feed(out.segment_items)
        await transcription.finish()
    return run


def _record(run: StreamRun, events: list[AudioEvent], items: list, wall: float, started: float,
            speed: float | None) -> None:
    run.events += [(wall, e) for e in events]
    for item in items:
        if isinstance(item, SegmentOpened):
            run.open_onset_s = item.onset_s
        if isinstance(item, SegmentClosed):
            run.speech_s += item.end_s - run.open_onset_s
            run.closes[item.end_s] = wall
            run.speech_end_wall[item.end_s] = started + item.end_s / speed if speed else wall


async def run_streams(playlists: list[list[Fixture]], settings: Settings, engine: SttEngine | None,
                      speed: float | None = 1.0) -> list[StreamRun]:
    """One stream per playlist, concurrently in this event loop, starts spread evenly over one second."""
    t0 = time.perf_counter()

    async def one(i: int) -> StreamRun:
        await asyncio.sleep(i / len(playlists))
        return await drive_stream(f"stream-{i}", playlists[i], settings, engine, speed, t0)

    return list(await asyncio.gather(*(one(i) for i in range(len(playlists)))))


def _words(text: str) -> list[str]:
    """Lower-case words, punctuation and hyphens dropped ("Uh-huh." and "uh-huh" are the same two words)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_errors(reference: str, hypothesis: str) -> int:
    """Substitutions + deletions + insertions between the two texts' words (Levenshtein over words)."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        diag, row[0] = row[0], i
        for j, said in enumerate(hyp, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (word != said))
    return row[-1]


def wer(runs: list[StreamRun], playlists: list[list[Fixture]]) -> dict:
    """Word error rate of every stream's finals, in order, against its playlist's sidecar transcripts."""
    errors = words = 0
    for run, playlist in zip(runs, playlists):
        reference = " ".join(f.sidecar.get("transcript", "") for f in playlist)
        errors += word_errors(reference, " ".join(e.text for e in run.of(Final)))
        words += len(_words(reference))
    return {"errors": errors, "words": words, "wer": round(errors / words, 4) if words else None}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(1000 * float(np.percentile(values, q)), 1)


async def bench_level(n: int, engine: SttEngine, settings: Settings, fixtures: list[Fixture],
                      duration_s: float) -> dict:
    """One load level: ``n`` streams, each talking for about ``duration_s`` of audio, starts spread over 1 s."""
    engine.metrics = SttMetrics.create(registry := CollectorRegistry())
    per_stream = _playlist(fixtures, duration_s)
    playlists = [per_stream[i % len(per_stream):] + per_stream[:i % len(per_stream)] for i in range(n)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    runs = await run_streams(playlists, settings, engine)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    from_close, from_speech = [], []
    for run in runs:
        c, s = run.final_latencies()
        from_close += c
        from_speech += s

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    decode_s = sum(sample("callbot_stt_decode_seconds_sum", kind=k) for k in ("partial", "final"))
    speech_s = sum(r.speech_s for r in runs)
    audio_s = sum(r.audio_s for r in runs)
    segments = sum(len(r.closes) for r in runs)
    finals = sum(len(r.of(Final)) for r in runs)
    suppressed = sum(v.value for m in registry.collect() if m.name == "callbot_stt_finals_suppressed"
                     for v in m.samples if v.name.endswith("_total"))
    return {
        "streams": n,
        "wall_s": round(wall, 2),
        "audio_s": round(audio_s, 1),
        "speech_s": round(speech_s, 1),
        "segments": segments,
        "finals": finals,
        "finals_suppressed": int(suppressed),
        "finals_lost": segments - finals - int(suppressed),
        "finals_shared_with_partial": int(sample("callbot_stt_finals_shared_total")),
        "finals_early": int(sample("callbot_stt_finals_early_total")),
        "final_latency_ms": {"p50": _pct(from_close, 50), "p95": _pct(from_close, 95), "max": _pct(from_close, 100)},
        "final_latency_from_speech_end_ms": {"p50": _pct(from_speech, 50), "p95": _pct(from_speech, 95)},
        "mean_ms": {f"{what}_{kind}": _mean_ms(registry, f"callbot_stt_{metric}_seconds", kind)
                    for what, metric in (("decode", "decode"), ("wait", "queue_wait"))
                    for kind in ("final", "partial")},
        "rtf": round(decode_s / speech_s, 3) if speech_s else None,
        "cpu_s_per_audio_s": round(cpu / audio_s, 3),
        "partials": sum(len(r.of(Partial)) for r in runs),
        "partials_decoded": int(sample("callbot_stt_decode_seconds_count", kind="partial")),
        "partials_dropped": int(sample("callbot_stt_partials_dropped_total")),
        "barge_ins": sum(len(r.of(BargeIn)) for r in runs),
        "word_errors": wer(runs, playlists),
    }


def _mean_ms(registry: CollectorRegistry, histogram: str, kind: str) -> float | None:
    count = registry.get_sample_value(f"{histogram}_count", {"kind": kind})
    total = registry.get_sample_value(f"{histogram}_sum", {"kind": kind})
    return round(1000 * total / count, 1) if count else None


def _playlist(fixtures: list[Fixture], duration_s: float) -> list[Fixture]:
    out: list[Fixture] = []
    while not out or sum(len(f.samples) / f.rate for f in out) < duration_s:
        out.append(fixtures[len(out) % len(fixtures)])
    return out


def run_bench(settings: Settings, levels: tuple[int, ...], duration_s: float,
              names: tuple[str, ...] = BENCH_FIXTURES, directory: Path = FIXTURES) -> dict:
    """Load the model once, then run each level in turn; returns the JSON-able report."""
    fixtures = [Fixture.named(n, directory) for n in names]
    loaded = time.perf_counter()
    engine = SttEngine(settings.stt, SttMetrics.create(CollectorRegistry()))
    load_s = time.perf_counter() - loaded
    try:
        results = [asyncio.run(bench_level(n, engine, settings, fixtures, duration_s)) for n in levels]
    finally:
        engine.close()
    stt = settings.stt
    return {
        "model": engine.model_path,
        "model_load_s": round(load_s, 2),
        "settings": {"workers": stt.workers, "cpu_threads": stt.cpu_threads, "compute_type": stt.compute_type,
                     "beam_size": stt.beam_size, "partial_interval_ms": stt.partial_interval_ms,
                     "speculative_final_ms": stt.speculative_final_ms, "early_final_ms": stt.early_final_ms,
                     "hangover_ms": settings.vad.hangover_ms},
        "duration_s_per_stream": duration_s,
        "fixtures": list(names),
        "levels": results,
    }
