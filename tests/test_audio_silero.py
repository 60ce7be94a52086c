"""The optional Silero backend (vad.backend=silero) on the call fixtures: same decisions, later onsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbot.events import BargeIn, SpeechStarted
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.audio_server.pipeline.vad import speech_classifier
from callbot.config import Settings
from callbot.resources import demo_calls_dir
from audio_testkit import MIN_SPEECH_S, utterances

FIXTURES = demo_calls_dir()
SETTINGS = Settings().replace(**{"vad.backend": "silero"})

try:
    speech_classifier(16000, SETTINGS.vad)
    MISSING = None
except (ImportError, FileNotFoundError) as exc:
    MISSING = str(exc)

pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"the Silero model is not available: {MISSING}")


@pytest.mark.parametrize("wav", sorted(FIXTURES.glob("*.wav")), ids=lambda p: p.stem)
def test_silero_backend_decides_barge_in_like_the_sidecar(wav: Path) -> None:
    samples, rate = read_wav(wav)
    sidecar = json.loads(wav.with_suffix(".json").read_text())
    params = StreamParams("5b0e8a4e-2a43-4a4f-b1f0-6d0c5bb0f0a1", rate, 1500, 300)
    pipeline = StreamPipeline(params, SETTINGS)
    data = samples.astype("<i2").tobytes()
    step = rate // 50 * 2
    events = [e for i in range(0, len(data), step) for e in pipeline.feed(data[i:i + step]).events]
    barges = [e for e in events if isinstance(e, BargeIn)]
    started = [e for e in events if isinstance(e, SpeechStarted)]
    long_ones = [u for u in utterances(sidecar["speech"]) if u[1] - u[0] >= MIN_SPEECH_S]  # one barge-in each
    assert bool(barges) == sidecar["expect"]["barge_in"] and len(barges) == len(long_ones)
    assert bool(started) == bool(sidecar["speech"])
    if started:  # Silero's probability rises later than webrtcvad's: onsets come up to ~130 ms late
        assert 0 <= started[0].t - sidecar["speech"][0][0] <= 0.15, started[0]


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="rnnoise"):  # refused by the settings, or by the stage
        speech_classifier(16000, Settings().replace(**{"vad.backend": "rnnoise"}).vad)
