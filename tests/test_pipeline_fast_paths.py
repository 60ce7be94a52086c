"""The audio path's cheaper formulations give the plain ones' results bit for bit (pipeline-bench cost work).

Each fast path is compared with the formulation it replaced, on random inputs: a decision may never
depend on which one ran.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from callbot.audio_server.classify.confirm import SpeechConfirmer, SpeechSettings
from callbot.audio_server.classify.silero_batch import CONTEXT, WINDOW, SileroStream
from callbot.audio_server.echo.gate import EchoGate, _sum_bands
from callbot.audio_server.echo.reference import COARSE, PromptBands, _rfft, band_energies, band_matrix, coarse_bands
from callbot.audio_server.pipeline.reframer import Reframer
from callbot.audio_server.pipeline.vad import level_dbfs


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_the_fft_and_band_energies_are_numpys() -> None:
    rng = np.random.default_rng(1)
    for rate in (8000, 16000):
        frames = (rng.standard_normal((5, rate // 50)) * 3000).astype(np.int16)
        windowed = frames.astype(np.float32) * np.hanning(rate // 50).astype(np.float32)
        assert same(_rfft(windowed), np.fft.rfft(windowed, axis=-1))
        for rows in (frames, frames[:1]):  # one frame apart too: BLAS may sum a lone row otherwise
            spectrum = np.fft.rfft(rows.astype(np.float32) * np.hanning(rate // 50).astype(np.float32), axis=-1)
            plain = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32) @ band_matrix(rate)
            assert same(band_energies(rows, rate), plain)
    odd = rng.standard_normal((2, 161)).astype(np.float32)
    assert same(_rfft(odd), np.fft.rfft(odd, axis=-1))


def test_coarse_bands_and_band_sums_add_in_numpys_order() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        bands = (np.abs(rng.standard_normal((50, 13))) ** 3 * 10 ** rng.uniform(0, 8)).astype(np.float32)
        plain = np.stack([bands[..., g].sum(axis=-1) for g in np.array_split(np.arange(13), COARSE)], axis=-1)
        assert same(coarse_bands(bands), plain)
        lr = rng.standard_normal((int(rng.integers(25, 51)), 121, COARSE)) * rng.uniform(0.1, 10) - rng.uniform(-3, 3)
        assert same(_sum_bands(lr).sum(axis=0), lr.sum(axis=(0, 2)))


def test_window_maxima_are_the_strided_slices_max() -> None:
    prompt = PromptBands.of((np.random.default_rng(3).standard_normal(30000) * 3000).astype(np.int16), 16000)
    for stride, width in ((2, 121), (2, 16), (3, 7)):
        ahead, behind = prompt.window_maxima(stride, width)
        for lo in range(0, len(prompt.bands) - stride * (width - 1), 5):
            hi = lo + stride * (width - 1)
            assert same(np.maximum(ahead[lo], behind[hi]), prompt.bands[lo:hi + 1:stride].max(axis=0))


@pytest.mark.parametrize("markers", [
    [],  # one span, still playing
    [("stop", 40000)],
    [("pause", 20000), ("resume", 26000)],
    [("pause", 9000), ("resume", 9500), ("pause", 30000), ("resume", 31000), ("stop", 50000)],
    [("pause", 30000), ("resume", 20000)],  # out of order: spans overlap, the plain way
])
def test_the_predicted_echo_and_the_history_rows_match_the_plain_lookups(markers: list[tuple[str, int]]) -> None:
    rng = np.random.default_rng(4)
    gate = EchoGate(16000)
    gate.start(PromptBands.of((rng.standard_normal(16000 * 3) * 3000).astype(np.int16), 16000), 3000)
    for name, at in markers:
        getattr(gate, name)(at)
    for start in range(0, 16000 * 5, 317):
        for lo, hi in ((0, gate._max_delay), (4000 - 160, 4000 + 160), (-160, 160), (500, 400 + 7 * 80)):
            assert same(gate._loudest_reference(start, lo, hi), gate._reference(start, lo, hi).max(axis=0))
    step = gate.prompt.hop * gate.DELAY_STEP_HOPS
    delays = gate._max_delay // step + 1
    for first in (0, 2560, 30080, 64000):
        gate._hist_start = [first + 320 * f for f in range(50)]
        points, lattice = gate._history_rows(step, delays)
        starts = np.array(gate._hist_start)
        plain = gate._rows(starts[:, None] - step * np.arange(delays)[None, :])
        assert np.array_equal(points[lattice.at], plain)
        assert np.array_equal(points[lattice.bound_at.T], plain[:, ::2])


def test_level_is_numpys_mean_power() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 160, 320, 333):
        samples = (rng.standard_normal(n) * 10 ** rng.uniform(0, 4)).clip(-32768, 32767).astype(np.int16)
        power = float(np.mean(np.square(samples, dtype=np.float64)))
        assert level_dbfs(samples) == max(-100.0, 10.0 * math.log10(power / 32768.0 ** 2))


def _plain_windows(rate: int, chunks: list[np.ndarray], wanted: list[bool]) -> list[tuple[int, np.ndarray]]:
    """The windows SileroStream queues, by concatenation (its former buffer)."""
    buffer, context, last, taken, out = np.zeros(0, np.float32), np.zeros(CONTEXT, np.float32), np.float32(0), 0, []
    for samples, want in zip(chunks, wanted):
        x = samples.astype(np.float32) / 32768.0
        if rate == 8000 and len(x):
            between = (np.concatenate([[last], x[:-1]]) + x) / 2
            last = x[-1]
            x = np.stack([between, x], axis=1).reshape(-1)
        buffer = np.concatenate([buffer, x])
        while len(buffer) >= WINDOW:
            window, buffer = buffer[:WINDOW], buffer[WINDOW:]
            taken += WINDOW
            if want:
                out.append((taken // 2 if rate == 8000 else taken, np.concatenate([context, window])))
            context = window[-CONTEXT:]
    return out


@pytest.mark.parametrize("rate", [8000, 16000])
def test_silero_windows_are_the_streams_samples_in_order(rate: int) -> None:
    rng = np.random.default_rng(6)
    sizes = [rate // 50] * 40 + [0, 1, 7, 3000, rate // 100] * 4
    chunks = [(rng.standard_normal(n) * 5000).clip(-32768, 32767).astype(np.int16) for n in sizes]
    wanted = [bool(w) for w in rng.random(len(chunks)) < 0.7]
    stream, windows = SileroStream(rate), []
    for samples, want in zip(chunks, wanted):
        stream.push(samples, want)
        windows += stream.pending
        stream.pending = []
    plain = _plain_windows(rate, chunks, wanted)
    assert [end for end, _ in windows] == [end for end, _ in plain]
    assert all(same(a, b) for (_, a), (_, b) in zip(windows, plain))


def test_the_confirmer_counts_each_window_once_newest_first() -> None:
    """A window counts once, at the first frame that ends at or after it, if it arrived before that
    frame and ends after the segment's onset (the deque is read newest first and stops early)."""
    rng = np.random.default_rng(7)
    confirmer = SpeechConfirmer(SpeechSettings())
    waiting: list[tuple[int, float]] = []  # arrived, not counted yet
    end = frame = strong = weak = 0
    counted_to = 0
    for _ in range(3000):
        if rng.random() < 0.4:
            end += int(rng.choice([256, 512]))
            result = (end, float(rng.random()))
            confirmer.add_results([result])
            if result[0] > counted_to:
                waiting.append(result)
        frame += 320
        if rng.random() < 0.03:
            onset = frame - int(rng.integers(0, 3000))
            confirmer.open(onset)
            strong = weak = 0
            counted_to = onset
            waiting = [w for w in waiting if w[0] > onset]
        at = frame + int(rng.choice([0, -100, 300]))
        strong += sum(prob >= 0.5 for e, prob in waiting if e <= at)
        weak += sum(prob >= 0.2 for e, prob in waiting if e <= at)
        waiting = [w for w in waiting if w[0] > at]
        counted_to = max(counted_to, at)
        confirmer.advance(at)
        assert (confirmer._strong, confirmer._weak) == (strong, weak)


def test_whole_frame_messages_and_split_messages_frame_alike() -> None:
    data = np.random.default_rng(8).integers(0, 256, 640 * 20, dtype=np.uint8).tobytes()
    whole, split = Reframer(16000), Reframer(16000)
    a = [f for i in range(0, len(data), 640) for f in whole.feed(data[i:i + 640])]
    b = [f for i in range(0, len(data), 333) for f in split.feed(data[i:i + 333])]
    assert [(f.start, f.samples.tobytes()) for f in a] == [(f.start, f.samples.tobytes()) for f in b[:len(a)]]
    assert all(f.samples.dtype == np.int16 for f in a)
