#!/usr/bin/env python3
"""Generate tests/fixtures/calls/*.wav and their sidecars, reproducibly, with espeak-ng and sox.

Run: ``python scripts/make_fixtures.py [--out tests/fixtures/calls]``. Generation only: runtime
code never calls espeak-ng or sox. Speech is rendered, trimmed, time-stretched to an exact
length, levelled to -20 dBFS RMS and placed on a timeline (seconds from call answer). The
sidecar's ``speech`` spans are measured on that clean timeline (10 ms RMS at least 10 dB above
the noise floor that is mixed in afterwards, gaps under 100 ms merged), never guessed. Reruns are
byte-identical: sox runs without dither (-D) and the noise comes from a seeded generator.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
SPEECH_RMS_DBFS = -20.0
FLOOR_DBFS = -55.0  # the line's noise floor under every speech fixture
TRUTH_ABOVE_FLOOR_DB = 10.0
MERGE_GAP_S = 0.1
SEED = 20261122


@dataclass
class Utterance:
    """One piece of speech: text, voice, where it starts, and the length it is stretched to."""

    text: str
    start_s: float
    length_s: float | None = None  # None: as espeak-ng says it
    voice: str = "en-us"
    speed: int = 165


@dataclass
class Fixture:
    name: str
    duration_s: float
    utterances: list[Utterance] = field(default_factory=list)
    barge_in: bool = False
    contains: list[str] = field(default_factory=list)
    noise_dbfs: float = FLOOR_DBFS
    noise_kind: str = "white"
    telephone_copy: bool = False  # also write NAME_8k.wav, band-limited to 300-3400 Hz
    replies: list[str] | None = None  # the outcome of each reply in the bundled scenario, when there are several


def _chunks(texts: list[str], start_s: float, each_s: float, pause_s: float) -> list[Utterance]:
    return [Utterance(t, start_s + i * (each_s + pause_s), each_s) for i, t in enumerate(texts)]


FIXTURES = [
    Fixture("long_reply", 8.0, [Utterance(
        "actually I am not interested right now so please call me back next week on tuesday afternoon",
        1.513, 4.2)], barge_in=True, contains=["interested", "tuesday"], telephone_copy=True),
    Fixture("short_yes", 6.0, [Utterance("yes", 1.236)], telephone_copy=True),
    Fixture("short_oui", 6.0, [Utterance("oui", 1.247, voice="fr-fr")]),
    Fixture("backchannel", 6.0, [Utterance("uh-huh okay right", 1.309, 1.2)]),
    Fixture("two_short", 6.0, [Utterance("hello there", 1.21, 1.0), Utterance("who is this", 2.81, 1.0)]),
    Fixture("pauses_2500ms", 6.0,
            _chunks(["well I think", "that could be", "fine for me", "next monday"], 1.223, 0.475, 0.2),
            barge_in=True),
    Fixture("silence", 6.0, noise_dbfs=-60.0),
    Fixture("noise", 6.0, noise_dbfs=-30.0, noise_kind="pink"),
    # A 60 s call (appended last, so the fixtures above keep their noise): "hello", then "hold on" over the
    # greeting (a barge-in), 45 s away from the phone, then the answer to the question.
    Fixture("hold_60s", 60.0, [Utterance("hello", 1.2, 0.5), Utterance("hold on one second please", 2.6, 1.8),
                               Utterance("okay I am back, yes I can make it", 50.0, 2.6)],
            barge_in=True, contains=["second", "back"], replies=["hold", "yes"]),
]


def _sox(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["sox", "-D", *args], input=data, capture_output=True, check=True).stdout


def _raw_to_float(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


def _raw_args(rate: int = RATE) -> list[str]:
    return ["-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1"]


def _rms_db(frames: np.ndarray) -> np.ndarray:
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def _trim(x: np.ndarray, threshold_dbfs: float = -60.0) -> np.ndarray:
    hop = RATE // 100
    levels = _rms_db(x[: len(x) // hop * hop].reshape(-1, hop))
    loud = np.flatnonzero(levels > threshold_dbfs)
    return x[loud[0] * hop:(loud[-1] + 1) * hop] if len(loud) else x[:0]


def render(u: Utterance) -> np.ndarray:
    """The utterance as float samples at RATE, trimmed, stretched to ``length_s``, at SPEECH_RMS_DBFS."""
    wav = subprocess.run(["espeak-ng", "-v", u.voice, "-s", str(u.speed), "--stdout", u.text],
                         capture_output=True, check=True).stdout
    x = _trim(_raw_to_float(_sox(["-t", "wav", "-", *_raw_args(), "-"], wav)))
    if u.length_s is not None:
        factor = len(x) / RATE / u.length_s
        raw = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        x = _trim(_raw_to_float(_sox([*_raw_args(), "-", *_raw_args(), "-", "tempo", "-s", f"{factor:.5f}"],
                                     raw)))
    active = x[np.abs(x) > 10 ** (-50 / 20)]
    gain = 10 ** (SPEECH_RMS_DBFS / 20) / np.sqrt(np.mean(active**2))
    return x * gain


def speech_spans(clean: np.ndarray, floor_dbfs: float) -> list[list[float]]:
    """Where the clean speech stands out of the noise floor, in seconds, short gaps merged."""
    hop = RATE // 100
    levels = _rms_db(clean[: len(clean) // hop * hop].reshape(-1, hop))
    loud = levels > floor_dbfs + TRUTH_ABOVE_FLOOR_DB
    spans: list[list[float]] = []
    for i in np.flatnonzero(loud):
        start, end = i * hop / RATE, (i + 1) * hop / RATE
        if spans and start - spans[-1][1] < MERGE_GAP_S - 1e-9:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [[round(float(a), 3), round(float(b), 3)] for a, b in spans if b - a >= 0.03]


def noise(n: int, dbfs: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise at ``dbfs`` RMS; ``pink`` is 1/f shaped (fan, traffic, a busy room)."""
    x = rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(x)
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[1:] /= np.sqrt(f[1:] / f[1])
        spectrum[0] = 0
        x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)


def build(fx: Fixture, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    n = int(fx.duration_s * RATE)
    clean = np.zeros(n)
    for u in fx.utterances:
        x = render(u)
        at = int(round(u.start_s * RATE))
        clean[at:at + len(x)] += x[: n - at]
    spans = speech_spans(clean, fx.noise_dbfs) if fx.utterances else []
    mix = np.clip(clean + noise(n, fx.noise_dbfs, fx.noise_kind, rng), -1, 32767 / 32768)
    sidecar = {
        "speech": spans,
        "transcript": " ".join(u.text for u in fx.utterances),
        "expect": {"barge_in": fx.barge_in, "amd": "human", "contains": fx.contains,
                   **({"replies": fx.replies} if fx.replies else {})},
    }
    return (mix * 32768).astype(np.int16), sidecar


def telephone(samples: np.ndarray) -> np.ndarray:
    """8 kHz, 300-3400 Hz: what a PSTN leg delivers."""
    raw = _sox([*_raw_args(), "-", *_raw_args(8000), "-", "sinc", "300-3400"], samples.astype("<i2").tobytes())
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def write(out: Path, name: str, samples: np.ndarray, rate: int, sidecar: dict) -> None:
    sf.write(out / f"{name}.wav", samples, rate, subtype="PCM_16")
    (out / f"{name}.json").write_text(json.dumps(sidecar) + "\n", encoding="utf-8")
    print(f"{name}.wav {len(samples) / rate:.2f}s speech={sidecar['speech']}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "callbot" / "demo_calls")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for fx in FIXTURES:
        samples, sidecar = build(fx, rng)
        write(args.out, fx.name, samples, RATE, sidecar)
        if fx.telephone_copy:
            write(args.out, f"{fx.name}_8k", telephone(samples), 8000, sidecar)


if __name__ == "__main__":
    main()
