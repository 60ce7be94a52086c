"""The AMD replay's one-worker decode model: the engine's queue policy and sharing rule, in stream time."""

from __future__ import annotations

import dataclasses

import numpy as np

from callbot.app.amd.replay import WhisperInTheLoop
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.segments import SegmentAudio, SegmentClosed, SegmentOpened
from callbot.audio_server.stt.stage import DecodeJob, DecodeResult, SegmentTranscriber
from callbot.config import SttSettings
from callbot.events import Final

RATE, FRAME = 16000, 320
SPEAK = np.full(FRAME, 1000, np.int16)


class CountingEngine:
    """Stands in for the model: every decode says the same words; the jobs it decoded are kept."""

    settings = SttSettings()

    def __init__(self) -> None:
        self.decoded: list[DecodeJob] = []

    def decode(self, job: DecodeJob) -> DecodeResult:
        self.decoded.append(job)
        return DecodeResult("Hello there.", -0.2, 0.01, decode_s=0.0)


def frames(first: int, count: int, pause_from: int | None = None) -> list[SegmentAudio]:
    out = []
    for i in range(first, first + count):
        silent = 0 if pause_from is None or i < pause_from else 20 * (i - pause_from + 1)
        out.append(SegmentAudio(1, Frame(SPEAK * (silent == 0), i * FRAME, RATE), silent_ms=silent))
    return out


def run(latency_s: float, speech_frames: int = 30) -> tuple[CountingEngine, list[tuple[float, object]]]:
    """Speech (0.6 s: a partial at 0.5 s), a pause (its decode at 100 ms), closed 300 ms into it."""
    engine = CountingEngine()
    stage = SegmentTranscriber(dataclasses.replace(SttSettings(), early_final_ms=0), RATE, "s")
    loop = WhisperInTheLoop(engine, stage, latency_s)  # type: ignore[arg-type]
    heard: list[tuple[float, object]] = []
    total = speech_frames + 15
    items: list = [SegmentOpened(1, 0.0, np.zeros(0, np.int16), 0.0), *frames(0, total, pause_from=speech_frames),
                   SegmentClosed(1, speech_frames * FRAME / RATE)]
    for i, item in enumerate(items):
        now = min(i, total) * FRAME / RATE
        heard += loop.due(now)
        out = stage.feed([item])
        heard += [(now, event) for event in out.events]
        loop.submit(out.jobs, now)
    heard += loop.due(10.0)
    return engine, heard


def the_final(heard: list[tuple[float, object]]) -> tuple[float, Final]:
    (found,) = [(at, event) for at, event in heard if isinstance(event, Final)]
    return found


def test_a_final_drops_its_queued_pause_decode_and_waits_only_for_the_running_partial() -> None:
    engine, heard = run(latency_s=0.9)  # the partial (0.5-1.4 s) is still out when the pause's decode is issued
    assert [(j.kind, j.early) for j in engine.decoded] == [("partial", False), ("final", False)]
    at, final = the_final(heard)
    assert final.end_s == 0.6 and abs(at - (1.4 + 0.9)) < 1e-9  # not behind the pause's decode as well


def test_a_final_shares_a_running_pause_decode_that_heard_all_its_speech() -> None:
    # the partial runs 0.5-0.75 s, the pause's decode (issued at 0.7 s) 0.75-1.0 s; the segment closes at 0.9 s
    engine, heard = run(latency_s=0.25)
    assert [(j.kind, j.early) for j in engine.decoded] == [("partial", False), ("partial", True)]
    at, final = the_final(heard)
    assert final.end_s == 0.6 and abs(at - 1.0) < 1e-9


def test_a_pause_decode_that_is_back_before_the_close_is_the_final_at_the_close() -> None:
    engine, heard = run(latency_s=0.15)
    assert [(j.kind, j.early) for j in engine.decoded] == [("partial", False), ("partial", True)]
    at, final = the_final(heard)
    assert final.end_s == 0.6 and abs(at - 0.9) < 1e-9


def test_a_final_that_shares_the_running_partial_drops_the_queued_pause_decode() -> None:
    """A partial that ended on the last voiced frame heard all the speech: the final takes its result."""
    engine, heard = run(latency_s=0.9, speech_frames=25)  # 0.5 s of speech: the partial ends with it
    assert [(j.kind, j.early) for j in engine.decoded] == [("partial", False)]  # the pause's decode never ran
    at, final = the_final(heard)
    assert final.end_s == 0.5 and abs(at - 1.4) < 1e-9
