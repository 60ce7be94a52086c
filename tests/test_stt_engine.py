"""Speech recognition with the real model (tiny.en) on the call fixtures, the engine's queue under load, model errors."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stt_model import shared_engine

from callbot.events import Final, Partial
from callbot.audio_server.metrics import SttMetrics, start_metrics_server
from callbot.audio_server.bench.stt import Fixture, StreamRun, drive_stream
from callbot.audio_server.stt.engine import SttEngine, SttModelError
from callbot.audio_server.stt.stage import DecodeJob
from callbot.audio_server.stt.text import normalise
from callbot.config import Settings, SttSettings


def replay(name: str, settings: Settings | None = None) -> StreamRun:
    """Deterministic replay: every decode finishes before the next 20 ms message is fed."""
    return asyncio.run(drive_stream(name, [Fixture.named(name)], settings or Settings(), shared_engine(),
                                    speed=None, clock_start=time.perf_counter(), settle=True))


@pytest.mark.slow  # the real Whisper model
def test_long_reply_final_has_key_words_and_partials_are_earlier_prefixes() -> None:
    fixture = Fixture.named("long_reply")
    run = replay("long_reply")
    (final,) = run.of(Final)
    text = normalise(final.text)
    for word in fixture.sidecar["expect"]["contains"]:
        assert word in text.split(), f"{word!r} missing from final {final.text!r}"
    (start, end), = fixture.sidecar["speech"]
    assert abs(final.start_s - start) < 0.15 and abs(final.end_s - end) < 0.3
    assert final.avg_logprob > -1.0 and final.no_speech_prob < 0.6
    kinds = [type(e) for _, e in run.events if isinstance(e, (Partial, Final))]
    partials = run.of(Partial)
    assert len(partials) >= 3 and kinds[-1] is Final  # partials came, all before the final
    final_words = text.split()
    for partial in partials:
        words = normalise(partial.text).split()
        assert words[:-1] == final_words[: len(words) - 1], f"partial {partial.text!r} vs final {final.text!r}"
        assert partial.start_s == final.start_s
    for earlier, later in zip(partials, partials[1:]):
        assert later.text.startswith(earlier.text)  # the stable prefix never flickers


@pytest.mark.slow  # the real Whisper model
@pytest.mark.parametrize("name", ["short_yes", "two_short"])
def test_the_robots_prompt_as_context_sends_no_reply_into_a_loop(name: str) -> None:
    """Given the greeting as context, tiny.en made "Yes? Yes? Yes? ..." of one short "yes" and twelve "Who is
    this?" of one; the engine then decodes the same audio again without it."""
    fixture = Fixture.named(name)
    samples, rate = fixture.samples, fixture.rate
    start, end = fixture.sidecar["speech"][-1]
    reply = samples[round((start - 0.3) * rate):round((end + 0.3) * rate)]
    greeting = ("Hello, this is the Acme clinic calling about your appointment next Tuesday at ten in the morning. "
                "Can you still make it? Please say yes or no.")
    engine = shared_engine()
    counted = engine.metrics.redecoded.labels("final")
    before = counted._value.get()
    result = asyncio.run(engine.transcribe(DecodeJob("s", 0, 0, "final", 1, reply, rate, start, end, greeting, None)))
    assert result is not None and normalise(result.text) in {"yes", "who is this"}, result
    assert result.no_speech_prob < 0.6 and result.avg_logprob > -1.0
    assert result.redecoded or name != "short_yes"  # short_yes loops with the greeting (the old engine's text)
    assert counted._value.get() - before == result.redecoded


@pytest.mark.slow  # the real Whisper model
def test_8k_stream_is_transcribed() -> None:
    """tiny.en hears "Tuesday afternoon" at 8 kHz as "Zoom after Zoom" (with any resampler): check the rest."""
    (final,) = replay("long_reply_8k").of(Final)
    assert "next week" in normalise(final.text)
    assert abs(final.start_s - 1.5) < 0.15 and abs(final.end_s - 5.7) < 0.3


@pytest.mark.slow  # the real Whisper model
def test_short_yes_is_transcribed() -> None:
    (final,) = replay("short_yes").of(Final)
    assert normalise(final.text) == "yes"


@pytest.mark.slow  # the real Whisper model
@pytest.mark.parametrize("name", ["silence", "noise"])
def test_silence_and_noise_give_no_transcript(name: str) -> None:
    run = replay(name)
    assert run.of(Final) == [] and run.of(Partial) == []


@pytest.mark.slow  # the real Whisper model
def test_finals_survive_a_flooded_queue_while_partials_are_dropped() -> None:
    """queue_max=2 and 12 streams at once: every final comes back, some partials are dropped (None)."""
    shared_engine()  # skips, saying why, when the model is unavailable
    engine = SttEngine(SttSettings(queue_max=2), SttMetrics.create(registry := CollectorRegistry()))
    samples = Fixture.named("short_yes").samples[int(1.1 * 16000):int(1.8 * 16000)]

    async def flood() -> list:
        jobs = [DecodeJob(f"s{i}", 1, 0, kind, i, samples, 16000, 1.1, 1.8, None, None)
                for i in range(12) for kind in ("partial", "final")]
        return list(zip(jobs, await asyncio.gather(*(engine.transcribe(j) for j in jobs))))

    try:
        results = asyncio.run(flood())
    finally:
        engine.close()
    finals = [r for j, r in results if j.kind == "final"]
    assert len(finals) == 12 and all(r is not None and normalise(r.text) == "yes" for r in finals)
    dropped = sum(1 for j, r in results if j.kind == "partial" and r is None)
    assert dropped >= 8
    assert registry.get_sample_value("callbot_stt_partials_dropped_total") == dropped
    decoded = registry.get_sample_value("callbot_stt_decode_seconds_count", {"kind": "final"}) or 0
    assert decoded + registry.get_sample_value("callbot_stt_finals_shared_total") == 12


@pytest.mark.slow  # the real Whisper model
def test_a_final_shares_its_segments_running_partial_only_when_that_covers_all_speech() -> None:
    shared_engine()  # skips, saying why, when the model is unavailable
    engine = SttEngine(SttSettings(), SttMetrics.create(registry := CollectorRegistry()))
    samples = Fixture.named("short_yes").samples[int(1.1 * 16000):int(1.9 * 16000)]

    def job(stream: str, kind: str, end_s: float) -> DecodeJob:
        return DecodeJob(stream, 1, 0, kind, 1, samples, 16000, 1.1, end_s, None, None)

    async def both(partial_end_s: float) -> tuple:
        partial = asyncio.ensure_future(engine.transcribe(job(str(partial_end_s), "partial", partial_end_s)))
        await asyncio.sleep(0)  # the partial starts decoding
        final = await engine.transcribe(job(str(partial_end_s), "final", 1.7))
        return await partial, final

    try:
        covering, final = asyncio.run(both(1.9))  # the partial's audio reaches past the speech end
        assert final is covering and normalise(final.text) == "yes"
        assert registry.get_sample_value("callbot_stt_finals_shared_total") == 1
        short, final = asyncio.run(both(1.5))  # the partial stops before the speech ends: decode again
        assert final is not short and normalise(final.text) == "yes"
        assert registry.get_sample_value("callbot_stt_finals_shared_total") == 1
        assert registry.get_sample_value("callbot_stt_decode_seconds_count", {"kind": "final"}) == 1
    finally:
        engine.close()


def test_metrics_endpoint_serves_the_stt_metrics() -> None:
    registry = CollectorRegistry()
    metrics = SttMetrics.create(registry)
    metrics.queue_depth.set(3)
    port = start_metrics_server("127.0.0.1", 0, registry)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "callbot_stt_queue_depth 3.0" in body
    assert 'callbot_stt_finals_total 0.0' in body


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SttModelError, match=r"model\.bin is missing.*stt\.model"):
        SttEngine(SttSettings(model=str(tmp_path / "nope")), SttMetrics.create(CollectorRegistry()))
    (tmp_path / "model.bin").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SttModelError, match=r"cannot load Whisper model"):
        SttEngine(SttSettings(model=str(tmp_path)), SttMetrics.create(CollectorRegistry()))


@pytest.mark.slow  # the real Whisper model
def test_english_only_model_with_french_says_a_multilingual_model_is_needed() -> None:
    with pytest.raises(SttModelError, match=r"English-only.*'fr'.*multilingual"):
        SttEngine(SttSettings(language="fr"), SttMetrics.create(CollectorRegistry()))
    path = shared_engine().model_path  # the same model given as a directory: found out after loading
    with pytest.raises(SttModelError, match=r"English-only.*multilingual"):
        SttEngine(SttSettings(model=path, language="fr"), SttMetrics.create(CollectorRegistry()))


def test_unknown_language_is_a_clear_error() -> None:
    with pytest.raises(SttModelError, match=r"'english' is not a Whisper language code"):
        SttEngine(SttSettings(language="english"), SttMetrics.create(CollectorRegistry()))


def test_to_model_audio_upsamples_8k() -> None:
    from callbot.audio_server.stt.engine import to_model_audio

    tone = (10000 * np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000)).astype(np.int16)
    out = to_model_audio(tone, 8000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert abs(float(np.max(np.abs(out))) - 10000 / 32768) < 0.01
