"""Stream each fixture through a StreamPipeline built as one system (webrtcvad only, or the cascade) and score it.

The robot's playback markers of a fixture reach the pipeline at their stream time, as the server
passes them on. Cost is the process CPU time spent in the pipeline per 20 ms frame.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from callbot.app.eval.fixtures import Fixture
from callbot.audio_server.classify.confirm import SpeechSettings
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import BargeIn, SpeechStarted

CALL = str(uuid.UUID(int=13))
ONSET_EARLY_S = 0.25  # a barge-in dated this much before the caller's first word still counts as theirs

SYSTEMS = {
    "webrtcvad": SpeechSettings(confirm=False, echo=False),
    "cascade": SpeechSettings(),
}


@dataclass
class Outcome:
    """One fixture version through one system."""

    fixture: Fixture
    system: str
    barge_onsets: list[float] = field(default_factory=list)
    started_after: list[float] = field(default_factory=list)  # s from an onset to its speech_started's frame
    frames: int = 0
    cpu_s: float = 0.0

    @property
    def hit(self) -> float | None:
        """Onset error (s) of the barge-in that matches the caller's speech, None when none does."""
        for onset in self.barge_onsets:
            for start, end in self.fixture.utterances:
                if start - ONSET_EARLY_S <= onset <= end:
                    return onset - start
        return None

    @property
    def false_barge_ins(self) -> int:
        """Barge-ins that match no speech of the caller (or any, where none was expected)."""
        if not self.fixture.expect_barge_in:
            return len(self.barge_onsets)
        return len(self.barge_onsets) - (1 if self.hit is not None else 0)


def run_one(fixture: Fixture, system: str, settings: Settings, prompts_dir: Path,
            speech: SpeechSettings | None = None) -> Outcome:
    """Stream one fixture in 20 ms messages; markers are applied before the frame they fall in."""
    params = StreamParams(CALL, fixture.rate, settings.bargein.min_speech_ms, settings.bargein.bridge_ms)
    pipeline = StreamPipeline(params, settings, speech=speech or SYSTEMS[system])
    step = fixture.rate // 50
    markers = sorted((round(m["start_s"] * fixture.rate), m["file"]) for m in fixture.playback)
    data = fixture.samples.astype("<i2")
    outcome = Outcome(fixture, system)
    cpu = time.process_time()
    for i in range(0, len(data) - step + 1, step):
        while markers and markers[0][0] <= i:
            _, file = markers.pop(0)
            pipeline.playback_started(prompts_dir / file, i / fixture.rate)
        out = pipeline.feed(data[i:i + step].tobytes())
        outcome.frames += len(out.frames)
        outcome.barge_onsets.extend(e.onset_s for e in out.events if isinstance(e, BargeIn))
        outcome.started_after.extend((i + step) / fixture.rate - e.t for e in out.events
                                     if isinstance(e, SpeechStarted))
    outcome.barge_onsets.extend(e.onset_s for e in pipeline.flush().events if isinstance(e, BargeIn))
    outcome.cpu_s = time.process_time() - cpu
    return outcome


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(outcomes: list[Outcome]) -> dict:
    """Precision, recall, onset error and false barge-ins by category, for one system's outcomes."""
    barges = sum(len(o.barge_onsets) for o in outcomes)
    false = sum(o.false_barge_ins for o in outcomes)
    recall_set = [o for o in outcomes if o.fixture.in_recall_set]
    hits = [o.hit for o in recall_set if o.hit is not None]
    all_hits = [o.hit for o in outcomes if o.fixture.expect_barge_in and o.hit is not None]
    started = [d for o in outcomes if o.fixture.expect_barge_in for d in o.started_after]
    by_category: dict[str, dict] = {}
    for o in outcomes:
        cat = by_category.setdefault(o.fixture.category, {"fixtures": 0, "false_barge_ins": 0, "expected": 0,
                                                          "detected": 0})
        cat["fixtures"] += 1
        cat["false_barge_ins"] += o.false_barge_ins
        cat["expected"] += o.fixture.expect_barge_in
        cat["detected"] += o.fixture.expect_barge_in and o.hit is not None
    by_version: dict[str, dict] = {}
    for o in recall_set:
        v = by_version.setdefault(o.fixture.version, {"expected": 0, "detected": 0})
        v["expected"] += 1
        v["detected"] += o.hit is not None
    for v in by_version.values():
        v["recall"] = round(v["detected"] / v["expected"], 3) if v["expected"] else None
    frames = sum(o.frames for o in outcomes)
    return {
        "fixtures": len(outcomes),
        "barge_ins": barges,
        "precision": round((barges - false) / barges, 3) if barges else None,
        "recall": round(len(hits) / len(recall_set), 3) if recall_set else None,
        "recall_expected": len(recall_set),
        "recall_detected": len(hits),
        "recall_by_version": by_version,
        "onset_error_ms": {"p50": _ms(percentile(all_hits, 50)), "p95": _ms(percentile(all_hits, 95)),
                           "n": len(all_hits)},
        # when speech_started leaves (what a robot pausing its prompt waits for), after the onset it is dated to
        "speech_started_after_ms": {"p50": _ms(percentile(started, 50)), "p95": _ms(percentile(started, 95)),
                                    "n": len(started)},
        "false_by_category": {c: v["false_barge_ins"] for c, v in sorted(by_category.items())},
        "categories": dict(sorted(by_category.items())),
        "us_per_frame": round(1e6 * sum(o.cpu_s for o in outcomes) / frames, 1) if frames else None,
        "missed": sorted(f"{o.fixture.name}:{o.fixture.version}" for o in recall_set if o.hit is None),
        "false": sorted(f"{o.fixture.name}:{o.fixture.version}" for o in outcomes if o.false_barge_ins),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)
