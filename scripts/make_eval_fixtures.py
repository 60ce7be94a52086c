#!/usr/bin/env python3
"""Generate tests/fixtures/eval/: the labelled barge-in set of `callbot eval`, reproducibly from one seed.

Run: ``python scripts/make_eval_fixtures.py [--out tests/fixtures/eval]``. Generation only (runtime
code never calls these tools); it needs Debian's espeak-ng, sox, libsox-fmt-mp3, ktuberling-data
(real recorded words in several languages) and asc-music (real game music, mp3). None of them is
in issue 13's acceptance list, so the acceptance figures stay honest.

Categories (sidecar ``category``):
- ``speech``: a caller alone: espeak-ng sentences in many voices and languages, and real recorded
  words from ktuberling strung into 1.7-3 s utterances (gaps under the 300 ms bridge); plus short
  replies that must never barge in.
- ``music``: synthesised chords, melodies with vibrato, arpeggios, drums and pads, and excerpts of
  real music; some band-limited as a phone line carries hold music.
- ``tone``: busy, congestion, ringback (US, UK, EU) cadences, dial tone, SIT, DTMF, fax, alerts.
- ``echo``: the robot's own prompt (prompts_audio/) band-limited to 300-3400 Hz, 6-20 dB below it
  (ERL), 20-300 ms late; the sidecar's ``playback`` says when the robot started it (the marker).
- ``doubletalk``: the same echo with a caller talking over it; must barge in at the caller's onset.
- ``overprompt``: a caller talking while the robot's prompt plays (the marker is sent) on a line that
  returns no echo (digital, or echo-cancelled upstream): the echo gate must not mistake the caller
  for an echo it has not heard; must barge in at the caller's onset.

Only the clean version is written (FLAC, 16 kHz mono); `callbot eval` derives the -42 dBFS hiss and
the -15 dB quiet versions from it with a seeded generator. Sidecars follow DESIGN section 5 plus
``category``, ``playback`` and ``source``. Reruns are identical (sox without dither, seeded noise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
SEED = 20261204
FLOOR_DBFS = -66.0  # a quiet line under everything
REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "prompts_audio"
KTUBERLING = Path("/usr/share/ktuberling/sounds")
ASC_MUSIC = Path("/usr/share/games/asc/music")


def _sox(args: list[str], data: bytes = b"") -> bytes:
    return subprocess.run(["sox", "-D", *args], input=data, capture_output=True, check=True).stdout


RAW = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(RATE)]


def decode(path: Path, start_s: float = 0.0, length_s: float | None = None) -> np.ndarray:
    """Any file sox reads, as float32 mono at 16 kHz."""
    trim = ["trim", f"{start_s}"] + ([f"{length_s}"] if length_s else [])
    return np.frombuffer(_sox([str(path), *RAW, "-", "remix", "-", "rate", "-v", str(RATE), *trim]), np.float32).copy()


def phone_band(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz, as a telephone line carries it."""
    return np.frombuffer(_sox([*RAW, "-", *RAW, "-", "sinc", "300-3400"], x.astype(np.float32).tobytes()),
                         np.float32).copy()


def espeak(text: str, voice: str, speed: int) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    return trim(np.frombuffer(_sox(["-t", "wav", "-", *RAW, "-", "rate", "-v", str(RATE)], wav), np.float32).copy())


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)


def level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * 10 ** ((dbfs - rms_db(x)) / 20)


def trim(x: np.ndarray, threshold_dbfs: float = -50.0) -> np.ndarray:
    """Without leading and trailing silence: 10 ms frames below the threshold (or 30 dB under the peak)."""
    frames = 10 * np.log10(np.mean(np.square(x[: len(x) // 160 * 160].reshape(-1, 160)), axis=1) + 1e-12)
    loud = np.nonzero(frames > max(threshold_dbfs, frames.max() - 30))[0]
    return x[loud[0] * 160:(loud[-1] + 1) * 160] if len(loud) else x[:0]


def spans(clean: np.ndarray, offset_s: float = 0.0) -> list[list[float]]:
    """Speech spans of a caller track: 10 ms RMS within 35 dB of its loudest, gaps under 100 ms merged."""
    n = len(clean) // 160
    frames = 10 * np.log10(np.mean(np.square(clean[: n * 160].reshape(n, 160)), axis=1) + 1e-12)
    on = frames > max(frames.max() - 35.0, -60.0)
    out: list[list[float]] = []
    for i in np.nonzero(on)[0]:
        t = i * 0.01 + offset_s
        if out and t - out[-1][1] < 0.1:  # both in stream time (the offset once counted on one side only,
            out[-1][1] = round(t + 0.01, 3)  # which merged every gap shorter than the offset + 100 ms)
        else:
            out.append([round(t, 3), round(t + 0.01, 3)])
    return out


def place(total_s: float, pieces: list[tuple[float, np.ndarray]]) -> np.ndarray:
    out = np.zeros(int(round(total_s * RATE)), np.float32)
    for start_s, x in pieces:
        i = int(round(start_s * RATE))
        x = x[: len(out) - i]
        out[i:i + len(x)] += x
    return out


# --- speech -------------------------------------------------------------------------------------

SENTENCES = [
    ("en-us", "Actually I am not interested right now, please call me back later."),
    ("en-gb", "Sorry, who is this and why are you calling me at work?"),
    ("en-us+f3", "Could you tell me what this is about before I hang up?"),
    ("en-gb-x-rp", "I already told your colleague that we do not need anything."),
    ("en-us+m3", "Hold on a second, let me get a pen to write this down."),
    ("en+f2", "No thank you, please take my number off your list."),
    ("en-gb-scotland", "Aye, that would be fine, but can you ring back on Tuesday?"),
    ("en-us+klatt", "Wait, wait, I think you have the wrong number here."),
    ("en-029", "Yes I am the owner of the house, what do you want to know?"),
    ("en-gb-x-gbclan", "That sounds interesting, can you send me something by email?"),
    ("en-us+f4", "My husband handles all of that, he will be home after six."),
    ("en+m7", "I am driving right now, this is not a good time to talk."),
    ("en-us+m5", "Can you speak up a little, I can barely hear you."),
    ("en-gb+f5", "We switched providers last year and we are quite happy."),
    ("en+Annie", "How did you get this number, I never gave it to anyone."),
    ("en-us+Andy", "Sure, go ahead, I have got a couple of minutes."),
    ("fr", "Non merci, rappelez moi plutot la semaine prochaine."),
    ("fr+f2", "Excusez moi, mais qui est a l'appareil exactement ?"),
    ("fr+m4", "Je ne suis pas interesse, merci de ne plus appeler."),
    ("fr-be", "Attendez, je vais chercher mon mari, il est dans le jardin."),
    ("de", "Nein danke, ich habe wirklich kein Interesse daran."),
    ("de+f3", "Rufen Sie bitte morgen Vormittag noch einmal an."),
    ("es", "Perdone, ahora mismo no puedo hablar, llame mas tarde."),
    ("es+f2", "Si, digame, de que se trata exactamente esta llamada?"),
    ("it", "Mi scusi, ma non ho tempo adesso, richiami domani."),
    ("pt", "Desculpe, mas nao estou interessado nesse produto agora."),
    ("nl", "Nee dank u, wij hebben daar geen behoefte aan."),
    ("en-us+m1", "Let me check my calendar, I think Thursday could work."),
    ("en-gb+m2", "Is this going to take long, because I am about to go out?"),
    ("en-us+f1", "I would like to hear more about the offer, go on please."),
    ("en+Alicia", "Please stop calling this number every single afternoon."),
    ("en+Ed", "What is it now, you called twice yesterday already."),
    ("en-us+Gene", "Okay, but only if the price stays the same next year."),
    ("en+Belinda", "Honestly I do not remember signing up for anything like that."),
    ("en-gb-x-rp+f4", "Right, and how much would that cost me every month?"),
    ("en-us+Henrique", "I need to talk to my accountant first, call me next week."),
    ("fr+Annie", "Oui bonjour, c'est a quel sujet s'il vous plait ?"),
    ("de+m5", "Moment bitte, ich verstehe nicht ganz was Sie meinen."),
    ("en-us+iven3", "Great timing actually, I was just about to call you people."),
    ("en+boris", "No no no, I said I am not the person you are looking for."),
]
SHORT = [("en-us", "yes"), ("en-gb", "okay"), ("en-us+f3", "no thanks"), ("fr", "oui"), ("en+m3", "hello?"),
         ("de", "ja bitte"), ("en-us+f2", "uh-huh"), ("en-gb-x-rp", "sure")]
REAL_WORDS = [("en", 4), ("en", 3), ("en", 4), ("en", 3), ("en", 4), ("en", 3), ("en", 4), ("en", 3),
              ("de", 4), ("de", 3), ("de", 4), ("de", 4), ("fr", 4), ("fr", 3), ("fr", 4), ("fr", 3),
              ("fr", 4), ("fr", 4), ("nl", 4), ("it", 4)]


def real_words(lang: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Recorded words of one ktuberling voice, 40-120 ms apart: one 1.7-3.5 s utterance of real speech."""
    files = sorted(p for p in (KTUBERLING / lang).iterdir() if p.suffix in (".ogg", ".wav"))
    picks = [files[i] for i in rng.choice(len(files), size=count, replace=False)]
    parts: list[np.ndarray] = []
    for p in picks:
        if parts:
            parts.append(np.zeros(int(rng.uniform(0.04, 0.12) * RATE), np.float32))
        parts.append(trim(decode(p), -40.0))
    return np.concatenate(parts), ",".join(f"ktuberling-data:{lang}/{p.name}" for p in picks)


def speech_fixtures(rng: np.random.Generator) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    for i, (voice, text) in enumerate(SENTENCES):
        x = espeak(text, voice, int(rng.integers(150, 190)))
        if len(x) > 3.6 * RATE:  # keep files short: the first 3.6 s of the sentence
            x = x[: int(3.6 * RATE)]
        out.append(caller(f"speech_espeak_{i:02d}", x, rng, f"espeak-ng:{voice}", text))
    for i, (voice, text) in enumerate(SHORT):
        out.append(caller(f"speech_short_{i:02d}", espeak(text, voice, 170), rng, f"espeak-ng:{voice}", text))
    for i, (lang, count) in enumerate(REAL_WORDS):
        x, source = real_words(lang, count, rng)
        out.append(caller(f"speech_real_{i:02d}", x, rng, source, ""))
    return out


def caller(name: str, x: np.ndarray, rng: np.random.Generator, source: str, text: str) -> tuple[str, np.ndarray, dict]:
    x = level(x, float(rng.uniform(-26, -17)))
    if rng.random() < 0.5:
        x = phone_band(x)
    lead = float(rng.uniform(0.4, 0.9))
    samples = place(lead + len(x) / RATE + 0.6, [(lead, x)])
    speech = spans(x, lead)
    return name, samples, {"speech": speech, "transcript": text, "category": "speech", "source": source,
                           "expect": {"barge_in": bool(longest_utterance(speech) >= 1.5)}}


def longest_utterance(speech: list[list[float]], bridge_s: float = 0.3) -> float:
    """The longest run of speech spans with gaps the barge-in detector bridges."""
    best, start, end = 0.0, None, None
    for s, e in speech:
        if start is None or s - end > bridge_s:
            start = s
        end = e
        best = max(best, end - start)
    return best


# --- music --------------------------------------------------------------------------------------

def _note(freq: float, dur: float, rng: np.random.Generator, vibrato: float = 0.0, harmonics: int = 6,
          decay: float = 0.0) -> np.ndarray:
    t = np.arange(int(dur * RATE)) / RATE
    phase = 2 * np.pi * freq * t
    if vibrato:
        rate = rng.uniform(4.5, 6.5)
        phase += vibrato * freq / rate * np.sin(2 * np.pi * rate * t)
    x = sum(np.sin(k * phase) / k ** rng.uniform(1.0, 2.0) for k in range(1, harmonics + 1))
    env = np.minimum(1, t / 0.02) * (np.exp(-decay * t) if decay else 1) * np.minimum(1, (dur - t) / 0.05)
    return (x * env).astype(np.float32)


def _drums(dur: float, bpm: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(int(dur * RATE), np.float32)
    beat = 60 / bpm
    for k in range(int(dur / beat * 2)):
        i = int(k * beat / 2 * RATE)
        if k % 2 == 0:  # kick: a falling sine
            t = np.arange(int(0.15 * RATE)) / RATE
            hit = np.sin(2 * np.pi * (120 - 300 * t) * t) * np.exp(-25 * t)
        else:  # hi-hat or snare: noise
            t = np.arange(int(0.08 * RATE)) / RATE
            hit = rng.standard_normal(len(t)) * np.exp(-(40 if k % 4 == 1 else 18) * t) * 0.5
        hit = hit[: len(out) - i]
        out[i:i + len(hit)] += hit.astype(np.float32)
    return out


SCALE = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3, 587.3, 659.3]


def music_fixtures(rng: np.random.Generator) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    dur = 5.0
    kinds = ["chords", "melody_vibrato", "drums", "melody_drums", "arpeggio", "pad", "chords_melody",
             "vibrato_choir", "piano", "bass_drums", "melody_vibrato", "arpeggio_drums", "pad_melody", "piano"]
    for i, kind in enumerate(kinds):
        x = np.zeros(int(dur * RATE), np.float32)
        if "chords" in kind or "pad" in kind:
            for j in range(int(dur / 1.25)):
                root = SCALE[int(rng.integers(0, 5))] / 2
                for ratio in (1, 1.26, 1.5, 2):
                    x = _add(x, j * 1.25, _note(root * ratio, 1.25, rng, harmonics=4,
                                                decay=0 if "pad" in kind else 1.5) * 0.3)
        if "melody" in kind or "vibrato" in kind:
            t = 0.0
            while t < dur:
                d = float(rng.choice([0.25, 0.5, 0.75]))
                x = _add(x, t, _note(SCALE[int(rng.integers(0, 10))] * (2 if "choir" in kind else 1), d, rng,
                                     vibrato=0.02 if "vibrato" in kind else 0.0, harmonics=8) * 0.5)
                t += d
        if "arpeggio" in kind or "piano" in kind:
            step = 0.125 if "arpeggio" in kind else 0.3
            for j in range(int(dur / step)):
                x = _add(x, j * step, _note(SCALE[(j * 2) % 10] if "arpeggio" in kind else
                                            SCALE[int(rng.integers(0, 10))], step * 2, rng, decay=4.0) * 0.4)
        if "drums" in kind:
            x = x + _drums(dur, float(rng.uniform(80, 130)), rng)
        if "bass" in kind:
            for j in range(int(dur / 0.5)):
                x = _add(x, j * 0.5, _note(SCALE[int(rng.integers(0, 5))] / 4, 0.45, rng, harmonics=3) * 0.6)
        out.append(_music(f"music_synth_{i:02d}", x, rng, f"synthesised:{kind}"))
    for i, (track, start) in enumerate([("frontiers.mp3", 20), ("frontiers.mp3", 75), ("machine_wars.mp3", 15),
                                        ("machine_wars.mp3", 60), ("time_to_strike.mp3", 10),
                                        ("time_to_strike.mp3", 50)]):
        x = decode(ASC_MUSIC / track, start, dur)
        out.append(_music(f"music_real_{i:02d}", x, rng, f"asc-music:{track}@{start}s"))
    return out


def _add(x: np.ndarray, start_s: float, y: np.ndarray) -> np.ndarray:
    i = int(start_s * RATE)
    y = y[: len(x) - i]
    x[i:i + len(y)] += y
    return x


def _music(name: str, x: np.ndarray, rng: np.random.Generator, source: str) -> tuple[str, np.ndarray, dict]:
    x = level(x, float(rng.uniform(-26, -18)))
    if rng.random() < 0.5:
        x = phone_band(x)
        source += ",phone-band"
    return name, x, {"speech": [], "transcript": "", "category": "music", "source": source,
                     "expect": {"barge_in": False}}


# --- tones and alerts ---------------------------------------------------------------------------

def _tone(freqs: tuple[float, ...], cadence: list[tuple[float, float]], dur: float) -> np.ndarray:
    t = np.arange(int(dur * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    gate = np.zeros_like(t)
    period = sum(on + off for on, off in cadence)
    pos = t % period
    start = 0.0
    for on, off in cadence:
        gate[(pos >= start) & (pos < start + on)] = 1
        start += on + off
    return (x * gate).astype(np.float32)


def _dtmf(digits: str) -> np.ndarray:
    rows, cols = [697, 770, 852, 941], [1209, 1336, 1477]
    keys = "123456789*0#"
    parts = []
    for d in digits:
        k = keys.index(d)
        parts += [_tone((rows[k // 3], cols[k % 3]), [(0.1, 0.0)], 0.1), np.zeros(int(0.08 * RATE), np.float32)]
    return np.concatenate(parts)


def _sweep(f0: float, f1: float, dur: float) -> np.ndarray:
    t = np.arange(int(dur * RATE)) / RATE
    return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur))).astype(np.float32)


def tone_fixtures(rng: np.random.Generator) -> list[tuple[str, np.ndarray, dict]]:
    sit = np.concatenate([_tone((913.8,), [(0.274, 0)], 0.274), _tone((1370.6,), [(0.274, 0)], 0.274),
                          _tone((1776.7,), [(0.380, 0)], 0.380)])
    specs: list[tuple[str, np.ndarray]] = [
        ("busy_us", _tone((480, 620), [(0.5, 0.5)], 5)),
        ("congestion_us", _tone((480, 620), [(0.25, 0.25)], 5)),
        ("ringback_us", _tone((440, 480), [(2.0, 4.0)], 6)),
        ("ringback_uk", _tone((400, 450), [(0.4, 0.2), (0.4, 2.0)], 6)),
        ("ringback_eu", _tone((425,), [(1.0, 4.0)], 6)),
        ("dial_tone", _tone((350, 440), [(1, 0)], 5)),
        ("dial_tone_eu", _tone((425,), [(1, 0)], 5)),
        ("busy_eu", _tone((425,), [(0.5, 0.5)], 5)),
        ("sit_intercept", np.concatenate([sit, np.zeros(RATE, np.float32), sit, np.zeros(RATE, np.float32)])),
        ("dtmf", _dtmf("0612345789#*0")),
        ("fax_cng", _tone((1100,), [(0.5, 3.0)], 5)),
        ("fax_ced", _tone((2100,), [(3.3, 1)], 5)),
        ("call_waiting", _tone((440,), [(0.3, 9.7)], 3) + _tone((440,), [(0.3, 0.2)], 3)),
        ("alert_beeps", _tone((1000,), [(0.1, 0.1)], 5)),
        ("alert_siren", np.concatenate([_sweep(600, 1400, 0.5), _sweep(1400, 600, 0.5)] * 5)),
        ("alert_chirps", np.concatenate([np.concatenate([_sweep(1800, 2600, 0.08), np.zeros(int(0.12 * RATE),
                                                                                         np.float32)])] * 25)),
        ("alert_chime", np.concatenate([_note(f, 0.6, rng, harmonics=3, decay=3) for f in (660, 550, 440, 660,
                                                                                          550, 440, 330, 660)])),
        ("modem_noise", (rng.standard_normal(5 * RATE) * _tone((1, ), [(1, 0)], 5) * 0.3).astype(np.float32)),
    ]
    out = []
    for name, x in specs:
        x = level(x, float(rng.uniform(-24, -14)))
        if name == "modem_noise":
            x = phone_band(x)
        out.append((f"tone_{name}", x, {"speech": [], "transcript": "", "category": "tone", "source": f"synthesised:{name}",
                                        "expect": {"barge_in": False}}))
    return out


# --- echo and double talk -----------------------------------------------------------------------

ECHO_PROMPTS = ["greeting", "callback", "repeat", "voicemail", "removed", "cancelled", "confirmed", "no_reply"]
MARKER_S = 0.3  # when the robot's playback marker lands in the stream


def _echo(prompt: str, erl_db: float, delay_ms: float, late_ms: float, max_s: float) -> tuple[np.ndarray, float]:
    """The prompt as the line sends it back, placed in a stream whose marker lands at MARKER_S."""
    x, rate = sf.read(PROMPTS / "en" / "16000" / f"{prompt}.wav", dtype="float32")
    x = x[: int(max_s * RATE)]
    start = MARKER_S + (late_ms + delay_ms) / 1000
    echo = level(phone_band(x), rms_db(x) - erl_db)
    return echo, start


def echo_fixtures(rng: np.random.Generator) -> list[tuple[str, np.ndarray, dict]]:
    out = []
    erls = [6, 10, 14, 20]
    delays = [20, 60, 120, 200, 300, 250]
    for i in range(24):
        prompt = ECHO_PROMPTS[i % len(ECHO_PROMPTS)]
        erl, delay = erls[i % 4], delays[(i // 4) % 6]
        late = 20.0 if i % 5 == 4 else 0.0  # the marker is sometimes one frame early
        echo, start = _echo(prompt, erl, delay, late, 5.5)
        samples = place(start + len(echo) / RATE + 0.5, [(start, echo)])
        out.append((f"echo_{i:02d}_{prompt}_{erl}db_{delay}ms", samples, {
            "speech": [], "transcript": "", "category": "echo", "expect": {"barge_in": False},
            "playback": [{"file": f"en/16000/{prompt}.wav", "start_s": MARKER_S}],
            "source": f"prompts_audio:en/16000/{prompt}.wav erl={erl}dB delay={delay}ms marker_early={late:g}ms"}))
    return out


def doubletalk_fixtures(rng: np.random.Generator, callers: list[tuple[np.ndarray, str, str]]) -> list:
    out = []
    for i in range(12):
        prompt = ECHO_PROMPTS[(i + 3) % len(ECHO_PROMPTS)]
        erl, delay = [6, 10, 14, 20][i % 4], [20, 90, 160, 230, 300, 50][i % 6]
        echo, start = _echo(prompt, erl, delay, 0.0, 6.0)
        voice, source, text = callers[i]
        voice = level(voice, float(rng.uniform(-24, -17)))
        if i % 2:
            voice = phone_band(voice)
        onset = start + float(rng.uniform(0.6, 2.2))
        total = max(start + len(echo) / RATE, onset + len(voice) / RATE) + 0.5
        samples = place(total, [(start, echo), (onset, voice)])
        out.append((f"doubletalk_{i:02d}_{prompt}_{erl}db_{delay}ms", samples, {
            "speech": spans(voice, onset), "transcript": text, "category": "doubletalk",
            "expect": {"barge_in": True}, "playback": [{"file": f"en/16000/{prompt}.wav", "start_s": MARKER_S}],
            "source": f"prompts_audio:en/16000/{prompt}.wav erl={erl}dB delay={delay}ms; caller {source}"}))
    return out


def overprompt_fixtures(rng: np.random.Generator) -> list:
    """Callers (espeak-ng voices not used by doubletalk, and real words) over a prompt that has no echo."""
    out = []
    voices = SENTENCES[8:14] + SENTENCES[18:20] + SENTENCES[26:28]
    for i in range(12):
        prompt = ECHO_PROMPTS[(i + 1) % len(ECHO_PROMPTS)]
        if i < len(voices):
            voice_name, text = voices[i]
            voice, source = espeak(text, voice_name, 170)[: int(3.0 * RATE)], f"espeak-ng:{voice_name}"
        else:
            (voice, source), text = real_words(["nl", "it"][i % 2], 4, rng), ""
        voice = level(voice, float(rng.uniform(-26, -17)))
        if i % 2:
            voice = phone_band(voice)
        onset = MARKER_S + float(rng.uniform(0.4, 2.5))
        samples = place(onset + len(voice) / RATE + 0.5, [(onset, voice)])
        out.append((f"overprompt_{i:02d}_{prompt}", samples, {
            "speech": spans(voice, onset), "transcript": text, "category": "overprompt",
            "expect": {"barge_in": True}, "playback": [{"file": f"en/16000/{prompt}.wav", "start_s": MARKER_S}],
            "source": f"prompts_audio:en/16000/{prompt}.wav playing, no echo; caller {source}"}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "eval")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    fixtures = speech_fixtures(rng) + music_fixtures(rng) + tone_fixtures(rng) + echo_fixtures(rng)
    callers = []
    for i, (voice, text) in enumerate(SENTENCES[:6] + SENTENCES[16:18]):
        callers.append((espeak(text, voice, 175)[: int(3.0 * RATE)], f"espeak-ng:{voice}", text))
    for lang in ("en", "de", "fr", "en"):
        x, source = real_words(lang, 4, rng)
        callers.append((x, source, ""))
    fixtures += doubletalk_fixtures(rng, callers)
    fixtures += overprompt_fixtures(np.random.default_rng(SEED + 2))  # its own stream: the others stay as they were
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.flac"):
        old.unlink()
    for old in args.out.glob("*.json"):
        old.unlink()
    noise_rng = np.random.default_rng(SEED + 1)
    for name, samples, sidecar in fixtures:
        samples = samples + noise_rng.standard_normal(len(samples)).astype(np.float32) * 10 ** (FLOOR_DBFS / 20)
        pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
        sf.write(args.out / f"{name}.flac", pcm, RATE, subtype="PCM_16")
        sidecar = {"speech": sidecar["speech"], "transcript": sidecar["transcript"], "expect": sidecar["expect"],
                   "category": sidecar["category"], **({"playback": sidecar["playback"]} if "playback" in sidecar
                                                      else {}), "source": sidecar["source"],
                   "seed": zlib.crc32(name.encode())}
        (args.out / f"{name}.json").write_text(json.dumps(sidecar, ensure_ascii=False) + "\n")
    print(f"{len(fixtures)} fixtures in {args.out}")


if __name__ == "__main__":
    main()
