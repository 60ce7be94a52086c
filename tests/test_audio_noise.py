"""Noise robustness of the whole pipeline: noise, clicks and breaths neither start nor extend speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from callbot.events import AudioEvent, BargeIn, SpeechStarted, SpeechStopped
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.resources import demo_calls_dir

FIXTURES = demo_calls_dir()
RATE = 16000
SETTINGS = Settings()


def _events(samples: np.ndarray) -> list[AudioEvent]:
    """The speech events only: the AMD verdict on a noise-only stream (notsure) is not speech."""
    pipeline = StreamPipeline(StreamParams.defaults("7d3c52a6-1f5e-4a43-9d63-0c1f2f3b9a10", SETTINGS), SETTINGS)
    data = samples.astype("<i2").tobytes()
    events = [e for i in range(0, len(data), 640) for e in pipeline.feed(data[i:i + 640]).events]
    return [e for e in events + pipeline.flush().events if e.type != "amd"]


def _floor(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return 0.0018 * rng.standard_normal(int(seconds * RATE))  # -55 dBFS line noise


def _pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 32768, -32768, 32767).astype(np.int16)


def _add_clicks(x: np.ndarray, times: list[float]) -> np.ndarray:
    y = x.copy()
    for t in times:  # 2 ms pops at -6 dBFS peak
        at = int(t * RATE)
        y[at:at + 32] += 0.5 * np.hanning(32)
    return y


def test_steady_noise_fixture_never_starts_speech() -> None:
    samples, _ = read_wav(FIXTURES / "noise.wav")
    assert _events(samples) == []


def test_noise_that_starts_mid_stream_makes_no_barge_in() -> None:
    rng = np.random.default_rng(11)
    x = _floor(6, rng)
    x[2 * RATE:] += 0.1 * rng.standard_normal(4 * RATE)  # a loud -20 dBFS hiss from 2 s on (webrtcvad: speech)
    assert not any(isinstance(e, BargeIn) for e in _events(_pcm(x)))


def test_clicks_neither_start_nor_extend_speech() -> None:
    rng = np.random.default_rng(12)
    assert _events(_pcm(_add_clicks(_floor(5, rng), [1 + 0.37 * k for k in range(10)]))) == []
    samples, _ = read_wav(FIXTURES / "long_reply.wav")
    clean_end = json.loads((FIXTURES / "long_reply.json").read_text())["speech"][-1][1]
    clicked = _add_clicks(samples / 32768, [clean_end + 0.12 + 0.1 * k for k in range(8)])
    before, after = _events(samples), _events(_pcm(clicked))
    assert after == before and isinstance(after[-1], SpeechStopped)


def test_breaths_do_not_start_speech() -> None:
    rng = np.random.default_rng(13)
    x = _floor(5, rng)
    for k in range(3):  # 450 ms of band-limited breath noise, -40 dBFS RMS
        n = int(0.45 * RATE)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[(f < 300) | (f > 3000)] = 0
        breath = np.fft.irfft(spectrum, n) * np.hanning(n)
        breath *= 0.01 / np.sqrt(np.mean(breath**2))
        at = int((1 + 1.2 * k) * RATE)
        x[at:at + n] += breath
    assert _events(_pcm(x)) == []


def test_speech_over_moderate_noise_still_barges_in_on_time() -> None:
    rng = np.random.default_rng(14)
    samples, _ = read_wav(FIXTURES / "long_reply.wav")
    onset = json.loads((FIXTURES / "long_reply.json").read_text())["speech"][0][0]
    noisy = samples / 32768 + 0.01 * rng.standard_normal(len(samples))  # -40 dBFS white noise throughout
    events = _events(_pcm(noisy))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    barges = [e for e in events if isinstance(e, BargeIn)]
    assert len(started) == 1 and abs(started[0].t - onset) <= 0.06
    assert len(barges) == 1 and abs(barges[0].t - (onset + 1.5)) <= 0.06
