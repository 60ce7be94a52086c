"""Barge-in in line hiss: per-band evidence inside confirmed speech (``[vad] band_*``, docs/bargein.md).

A weak phoneme under -42 dBFS white hiss is under the hiss's broadband level but not under the floor
of the few low bands it is in; the cascade counts such frames inside confirmed speech, so an
utterance no longer splits at the 300 ms bridge. Steady sound (music) is not bridged that way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from callbot.app.eval.fixtures import load
from callbot.app.eval.run import run_one
from callbot.audio_server.echo.reference import band_energies
from callbot.audio_server.pipeline.vad import BandFloor, level_dbfs
from callbot.config import ConfigError, Settings, load_settings
from callbot.resources import prompts_dir

RATE = 16000
FRAME = RATE // 50
EVAL = Path(__file__).parent / "fixtures" / "eval"


def _hiss(rng: np.random.Generator, n: int, dbfs: float = -42.0) -> np.ndarray:
    return rng.standard_normal(n) * 32768.0 * 10 ** (dbfs / 20)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _bands(x: np.ndarray) -> np.ndarray:
    return band_energies(x[None, :].astype(np.float32), RATE)[0]


def test_a_weak_voiced_sound_under_the_hiss_level_stands_out_of_its_bands_floor() -> None:
    s = Settings().vad
    rng = np.random.default_rng(7)
    floor = BandFloor(s.frame_ms, every=8, margin_db=s.band_margin_db)
    for _ in range(40):
        floor.update(_bands(_int16(_hiss(rng, FRAME))), rises=True)
    # white hiss alone never counts
    hiss_only = [floor.excess_db(_bands(_int16(_hiss(rng, FRAME)))) for _ in range(300)]
    assert max(hiss_only) < s.band_snr_db
    # a 120 Hz voice (harmonics 240-600 Hz) 1 dB under the hiss's broadband level: the line stands only
    # 2-4 dB over its floor, which the gate's broadband margin (6 dB) refuses
    t = np.arange(FRAME) / RATE
    voice = sum(np.sin(2 * np.pi * 120 * k * t + k) / k for k in range(2, 6))
    voice *= 32768.0 * 10 ** (-43.0 / 20) / np.sqrt(np.mean(voice ** 2))
    frames = [_int16(_hiss(rng, FRAME) + voice) for _ in range(200)]
    assert max(level_dbfs(frame) for frame in frames) < -42.0 + 6.0
    counted = [floor.excess_db(_bands(frame)) >= s.band_snr_db for frame in frames]
    assert sum(counted) >= 0.9 * len(frames)


def test_the_floor_follows_the_line_down_fast_and_up_slowly() -> None:
    floor = BandFloor(20, every=8, margin_db=3.0)
    loud, quiet = np.full(13, 1e6), np.full(13, 1e4)
    floor.update(loud, rises=True)
    for _ in range(8):
        floor.update(quiet, rises=True)
    assert np.allclose(floor.power, quiet)  # 20 dB down within 8 updates (3 dB each)
    floor.update(loud, rises=False)
    assert np.allclose(floor.power, quiet)  # speech never raises it
    floor.update(loud, rises=True)
    assert np.allclose(floor.power, quiet * 10 ** (5.0 * 8 * 0.02 / 10))  # 5 dB/s: 0.8 dB per 8 frames


def _fixture(name: str, version: str):
    return next(f for f in load(EVAL, (version,)) if f.name.startswith(name))


@pytest.mark.parametrize("name", ["speech_real_09", "doubletalk_09"])
def test_weak_phonemes_under_the_hiss_no_longer_split_an_utterance_at_the_bridge(name: str) -> None:
    fixture = _fixture(name, "hiss")
    settings = Settings()
    assert run_one(fixture, "cascade", settings, prompts_dir()).hit is not None
    without = dataclasses.replace(settings, vad=dataclasses.replace(settings.vad, band_snr_db=60.0))
    assert run_one(fixture, "cascade", without, prompts_dir()).hit is None  # what the band rule recovers


def test_steady_music_inside_a_confirmed_segment_is_not_bridged_by_its_bands() -> None:
    # Silero confirms a segment of this quiet, steady piece; its bands stand out of the floor all along,
    # but its level barely moves, so the gate's modulation guard keeps the band rule out.
    outcome = run_one(_fixture("music_real_04", "clean"), "cascade", Settings(), prompts_dir())
    assert outcome.barge_onsets == []


@pytest.mark.parametrize("key, value", [("vad.band_snr_db", 99.0), ("vad.band_margin_db", -1.0),
                                        ("vad.band_peak_range_db", 200.0)])
def test_band_settings_are_range_checked(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(env={}, overrides={key: value})
