"""Generate the AMD fixtures (tests/fixtures/amd/): voicemail greetings with and without a beep, and humans.

Speech comes from espeak-ng, resampled by sox to 16 kHz; the rest (layout, beep, noise) is numpy
with a fixed seed per fixture, so the output is the same on every run. Each NAME.wav (mono 16 kHz
int16) gets a sidecar NAME.json in the DESIGN section 5 format, plus ``expect.amd`` and, when there
is one, ``beep: [start_s, end_s]``. Run: ``python scripts/make_amd_fixtures.py [OUT_DIR]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "amd"
SPAN_GAP_S = 0.2  # pauses shorter than this stay inside one speech span
TAIL_S = 3.5  # after a voicemail's beep (or greeting): room for the robot's voicemail prompt
BARGE_IN_S, BRIDGE_S = 1.5, 0.3  # DESIGN defaults: what the default scenario would count as a barge-in


@dataclass(frozen=True)
class Phrase:
    """Text spoken at ``at_s`` seconds from answer."""

    text: str
    at_s: float


@dataclass(frozen=True)
class Fixture:
    """One simulated callee: who answers, what they say, the beep, the line noise."""

    name: str
    amd: str  # human | machine
    voice: str  # espeak-ng voice, with variant
    speed_wpm: int
    phrases: tuple[Phrase, ...]
    seconds: float  # length of the WAV, at least (voicemails: 3.5 s after the beep or greeting)
    noise_dbfs: float
    speech_dbfs: float = -8.0  # peak level of the voice
    beep_hz: float | None = None
    beep_s: float = 0.5
    beep_gap_s: float = 0.5  # silence between the end of the greeting and the beep
    contains: tuple[str, ...] = ()
    pitch: int = 50
    tags: tuple[str, ...] = field(default_factory=tuple)


FIXTURES = (
    Fixture("vm_en_us_beep1000", "machine", "en-us", 165, (Phrase(
        "Hi, you've reached Sarah Miller. I can't take your call right now. "
        "Please leave a message after the tone.", 0.6),), 6.0, -60, beep_hz=1000, beep_s=0.5,
        contains=("message",)),
    Fixture("vm_en_gb_beep850", "machine", "en-gb+m3", 150, (Phrase(
        "Hello, this is the voicemail of David Jones. I'm not available at the moment. "
        "Leave your name and number.", 0.4),), 6.0, -50, beep_hz=850, beep_s=0.8,
        contains=("voicemail",)),
    Fixture("vm_fr_beep1400", "machine", "fr+f2", 150, (Phrase(
        "Bonjour, vous êtes bien sur la messagerie de Claire Martin. Je ne suis pas disponible "
        "pour le moment. Laissez un message après le bip.", 0.5),), 6.0, -55, beep_hz=1400, beep_s=0.3,
        pitch=60),
    Fixture("vm_fr_carrier_beep440", "machine", "fr-be", 175, (Phrase(
        "Votre correspondant n'est pas disponible. Laissez un message après le bip sonore.", 0.3),),
        6.0, -48, beep_hz=440, beep_s=1.2, beep_gap_s=0.3),
    Fixture("vm_en_us_fast_beep1800", "machine", "en-us+f3", 190, (Phrase(
        "The person you are calling is not available. Please record your message after the tone. "
        "When you are finished, hang up.", 0.8),), 6.0, -45, beep_hz=1800, beep_s=0.25,
        speech_dbfs=-12, contains=("available",)),
    Fixture("vm_en_gb_nobeep", "machine", "en-gb+f2", 160, (Phrase(
        "Hi, it's Tom. Sorry I missed you. Leave a message and I'll get back to you as soon as I can.",
        0.5),), 6.0, -55, contains=("message",)),
    Fixture("human_en_us_hello", "human", "en-us", 150, (Phrase("Hello?", 0.5),), 6.0, -55,
            contains=("hello",)),
    Fixture("human_fr_allo", "human", "fr", 140, (Phrase("Allô ?", 0.4),), 6.0, -50),
    Fixture("human_en_gb_hello_noisy", "human", "en-gb+m1", 170, (Phrase("Hello?", 0.7),), 6.0, -42,
            speech_dbfs=-14, contains=("hello",)),
    Fixture("human_en_us_two_phrases", "human", "en-us+m2", 160,
            (Phrase("Hello?", 0.5), Phrase("Yes, who is it?", 2.2)), 6.0, -55, contains=("hello",)),
    Fixture("human_fr_two_phrases", "human", "fr+m3", 155,
            (Phrase("Allô ?", 0.4), Phrase("Oui, c'est qui ?", 1.9)), 6.0, -50, pitch=40),
    Fixture("human_en_us_silent", "human", "en-us+f1", 150, (Phrase("Hello?", 3.3),), 6.0, -50,
            contains=("hello",)),
    Fixture("human_fr_oui", "human", "fr+f4", 145, (Phrase("Oui ?", 0.6),), 6.0, -55, pitch=65),
)


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng → sox (16 kHz, telephone band, no dither: same bytes every run) → float samples, trimmed."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp, "raw.wav"), Path(tmp, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text],
                       check=True, capture_output=True)
        subprocess.run(["sox", "-D", str(raw), "-r", str(RATE), "-b", "16", str(out), "sinc", "250-3600"],
                       check=True, capture_output=True)
        x, _ = sf.read(out, dtype="float64")
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.max(np.abs(x)))
    return x[loud[0]: loud[-1] + 1]


def spans(x: np.ndarray, offset_s: float) -> list[list[float]]:
    """Where the voice is (20 ms frames within 35 dB of the loudest), pauses < SPAN_GAP_S merged."""
    step = RATE // 50
    rms = np.sqrt([np.mean(x[i:i + step] ** 2) for i in range(0, len(x) - step + 1, step)])
    voiced = np.flatnonzero(rms > rms.max() * 10 ** (-35 / 20))
    out: list[list[float]] = []
    for i in voiced:
        start, end = offset_s + i * step / RATE, offset_s + (i + 1) * step / RATE
        if out and start - out[-1][1] < SPAN_GAP_S:
            out[-1][1] = end
        else:
            out.append([start, end])
    return [[round(float(a), 3), round(float(b), 3)] for a, b in out]


def pink_noise(n: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """Line noise with a 1/f spectrum, scaled to an RMS of ``dbfs``."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    noise = np.fft.irfft(spectrum, n)
    return noise * 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))


def bridged_max(speech: list[list[float]]) -> float:
    """The longest stretch of speech with gaps under BRIDGE_S bridged (what a barge-in detector sees)."""
    best, cur = 0.0, None
    for a, b in speech:
        cur = [cur[0], b] if cur and a - cur[1] < BRIDGE_S else [a, b]
        best = max(best, cur[1] - cur[0])
    return best


def render(fx: Fixture) -> tuple[np.ndarray, dict]:
    """The fixture's samples (int16) and its sidecar."""
    rng = np.random.default_rng(zlib.crc32(fx.name.encode()))
    x = np.zeros(int(30 * RATE))
    speech: list[list[float]] = []
    end_s = 0.0
    for phrase in fx.phrases:
        voice = speak(phrase.text, fx.voice, fx.speed_wpm, fx.pitch)
        voice *= 10 ** (fx.speech_dbfs / 20) / np.max(np.abs(voice))
        at = int(phrase.at_s * RATE)
        x[at: at + len(voice)] += voice
        speech += spans(voice, phrase.at_s)
        end_s = phrase.at_s + len(voice) / RATE
    sidecar: dict = {
        "speech": speech,
        "transcript": " ".join(p.text for p in fx.phrases),
        "expect": {"barge_in": bool(bridged_max(speech) >= BARGE_IN_S), "amd": fx.amd, "contains": list(fx.contains)},
        "language": fx.voice[:2],
        "voice": fx.voice, "speed_wpm": fx.speed_wpm, "pitch": fx.pitch, "noise_dbfs": fx.noise_dbfs,
        "generator": "scripts/make_amd_fixtures.py",
    }
    length = max(fx.seconds, end_s + TAIL_S)
    if fx.amd == "machine":
        greeting = end_s - speech[0][0]
        assert 3.0 <= greeting <= 8.0, f"{fx.name}: greeting of {greeting:.2f} s is outside 3-8 s"
        sidecar["greeting_s"] = [speech[0][0], round(end_s, 3)]
    if fx.beep_hz is not None:
        start = round(end_s + fx.beep_gap_s, 2)
        n = int(fx.beep_s * RATE)
        ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * RATE))  # 5 ms edges
        beep = 10 ** (-14 / 20) * ramp * np.sin(2 * np.pi * fx.beep_hz * np.arange(n) / RATE)
        x[int(start * RATE): int(start * RATE) + n] += beep
        sidecar["beep"] = [start, round(start + fx.beep_s, 3)]
        sidecar["beep_freq_hz"] = fx.beep_hz
        length = max(fx.seconds, start + fx.beep_s + TAIL_S)
    x = x[: int(round(length * RATE))]
    x += pink_noise(len(x), fx.noise_dbfs, rng)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16), sidecar


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for fx in FIXTURES:
        samples, sidecar = render(fx)
        sf.write(out / f"{fx.name}.wav", samples, RATE, subtype="PCM_16")
        (out / f"{fx.name}.json").write_text(json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n")
        total += (out / f"{fx.name}.wav").stat().st_size
        print(f"{fx.name}: {len(samples) / RATE:.1f} s, amd={fx.amd}, beep={sidecar.get('beep')}")
    print(f"{len(FIXTURES)} fixtures, {total / 1e6:.2f} MB of WAV in {out}")
    assert total < 4e6, "fixtures must stay under 4 MB"


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
