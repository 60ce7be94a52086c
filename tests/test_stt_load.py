"""Acceptance under load: 8 streams talking at once at real-time pace; barge-in is unaffected and no final is lost.

Runs the audio path as the server does (pipeline + STT stage + shared engine, one event loop, decodes
on the engine's threads). server.py does not host the STT stage yet, so this drives the
pipeline directly rather than through a WebSocket.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from stt_model import shared_engine

from callbot.events import BargeIn, Final
from callbot.audio_server.metrics import SttMetrics
from callbot.audio_server.bench.stt import Fixture, run_streams
from callbot.config import Settings

PLAYLIST = ("long_reply", "two_short", "pauses_2500ms", "long_reply", "backchannel", "short_yes", "long_reply",
            "two_short")

pytestmark = pytest.mark.slow  # the real Whisper model under eight talking streams


def test_eight_talking_streams_keep_barge_in_decisions_and_every_final() -> None:
    engine = shared_engine()
    settings = Settings()
    playlists = [[Fixture.named(name)] for name in PLAYLIST]
    unloaded = asyncio.run(run_streams(playlists, settings, engine=None, speed=None))
    saved = engine.metrics
    engine.metrics = SttMetrics.create(registry := CollectorRegistry())
    try:
        loaded = asyncio.run(run_streams(playlists, settings, engine, speed=1.0))
    finally:
        engine.metrics = saved

    assert sum(len(r.of(BargeIn)) for r in unloaded) >= 4  # the comparison is not vacuous
    for quiet, busy in zip(unloaded, loaded):
        assert busy.of(BargeIn) == quiet.of(BargeIn)  # same stream-time decisions, to the sample
    # Barge-in events left the pipeline as soon as their audio was fed, not after queued decodes
    # (a decode takes 0.1-0.5 s and 8 streams queue several): a generous bound, not a timing test.
    delays = [wall - (busy.started + e.t) for busy in loaded for wall, e in busy.events if isinstance(e, BargeIn)]
    print(f"barge-in delay after its audio was due, under load: max {1000 * max(delays):.1f} ms")
    assert delays and max(delays) < 0.5, f"barge-in delays under STT load: {delays}"

    segments = sum(len(r.closes) for r in loaded)
    finals = sum(len(r.of(Final)) for r in loaded)
    suppressed = sum(s.value for m in registry.collect() if m.name == "callbot_stt_finals_suppressed"
                     for s in m.samples if s.name.endswith("_total"))
    assert segments == sum(len(r.closes) for r in unloaded) >= 8  # same segments as the unloaded run
    assert finals + suppressed == segments  # every segment got its final (or was judged noise)
    assert finals >= segments - 2
    long_finals = [f.text.lower() for r, name in zip(loaded, PLAYLIST) if name == "long_reply" for f in r.of(Final)]
    assert len(long_finals) == 3 and all("interested" in t for t in long_finals)


def test_word_errors_count_substitutions_deletions_and_insertions_over_normalised_words() -> None:
    from callbot.audio_server.bench.stt import word_errors

    assert word_errors("uh-huh okay right", "Uh-huh. Okay, right!") == 0  # case, punctuation, hyphens aside
    assert word_errors("fine for me next monday", "for the next Monday.") == 2  # "fine" dropped, "me" -> "the"
    assert word_errors("yes", "yes yes") == 1
    assert word_errors("", "hello") == 1 and word_errors("hello", "") == 1
