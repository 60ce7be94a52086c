"""Render every scenario step's `text` to prompts_audio/<lang>/<rate>/<prompt> (espeak-ng + sox).

Usage: python scripts/make_prompts.py [SCENARIO.toml ...]   (default: robot/scenario/bundled/*.toml)
Outputs are committed; runtime code never calls espeak-ng or sox.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import soundfile

ROOT = Path(__file__).resolve().parent.parent
VOICES = {"en": "en-us", "fr": "fr-fr"}
RATES = (8000, 16000)
WORDS_PER_MINUTE = 150
MIN_GREETING_S = 6.0  # a reply starting 1 s after answer must get 1.5 s into the greeting while it plays


def render(text: str, language: str, out: Path, rate: int) -> float:
    """Speak ``text`` into a mono 16-bit WAV at ``rate``; return its duration in seconds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[language], "-s", str(WORDS_PER_MINUTE), "-w", str(raw), text],
                       check=True)
        subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)], check=True)
    info = soundfile.info(str(out))
    return info.frames / info.samplerate


def main(paths: list[str]) -> int:
    scenarios = [Path(p) for p in paths] or sorted((ROOT / "robot" / "scenario" / "bundled").glob("*.toml"))
    for path in scenarios:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        language = data["scenario"]["language"]
        audio_dir = ROOT / "prompts_audio" / language
        for name, step in data["steps"].items():
            if "prompt" not in step:
                continue
            for rate in RATES:
                seconds = render(step["text"], language, audio_dir / str(rate) / step["prompt"], rate)
            print(f"{path.name}: {name} -> {language}/{{8000,16000}}/{step['prompt']} ({seconds:.2f} s)")
            if name == data["scenario"]["start"] and seconds < MIN_GREETING_S:
                print(f"error: {path.name}: the first prompt lasts {seconds:.2f} s; it must last at least "
                      f"{MIN_GREETING_S} s so that a barge-in can happen while it plays; lengthen its text",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
