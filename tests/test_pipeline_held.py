"""Speech recognition hears only confirmed speech: segment items wait for the classifier, music never gets through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from callbot.audio_server.classify.confirm import SpeechSettings
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.held import ConfirmedSegments
from callbot.audio_server.pipeline.segments import SegmentAudio, SegmentClosed, SegmentOpened
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import SpeechStarted

EVAL = Path(__file__).parent / "fixtures" / "eval"
CALL = "5b0e8a4e-2a43-4a4f-b1f0-6d0c5bb0f0a1"


def run(name: str, speech: SpeechSettings | None = None) -> tuple[list, list]:
    samples, rate = sf.read(EVAL / f"{name}.flac", dtype="int16")
    pipeline = StreamPipeline(StreamParams(CALL, rate, 1500, 300), Settings(), speech=speech)
    data = samples.astype("<i2").tobytes()
    outs = [pipeline.feed(data[i:i + 640]) for i in range(0, len(data), 640)] + [pipeline.flush()]
    return [i for o in outs for i in o.segment_items], [e for o in outs for e in o.events]


def test_music_that_opens_segments_never_reaches_speech_recognition() -> None:
    plain, _ = run("music_synth_02", SpeechSettings(confirm=False, echo=False))
    assert any(isinstance(i, SegmentOpened) for i in plain)  # the gate alone hears "speech" here
    items, events = run("music_synth_02")
    assert items == [] and not any(isinstance(e, SpeechStarted) for e in events)


def test_confirmed_speech_reaches_it_whole_from_its_onset() -> None:
    items, events = run("speech_espeak_00")
    started = [e for e in events if isinstance(e, SpeechStarted)]
    opened = [i for i in items if isinstance(i, SegmentOpened)]
    assert [o.onset_s for o in opened] == [e.t for e in started] and len(opened) >= 1
    assert sum(isinstance(i, SegmentClosed) for i in items) == len(opened)
    audio = [i.frame for i in items if isinstance(i, SegmentAudio) and i.segment_id == opened[0].segment_id]
    assert audio[0].t == opened[0].onset_s and all(b.start == a.start + len(a.samples) for a, b in zip(audio, audio[1:]))
    assert len(opened[0].preroll) == 300 * 16  # the 300 ms before the onset, as without the hold
    speech = json.loads((EVAL / "speech_espeak_00.json").read_text())["speech"]
    assert abs(opened[0].onset_s - speech[0][0]) < 0.1


def _audio(k: int, segment: int = 1) -> SegmentAudio:
    return SegmentAudio(segment, Frame(np.full(320, k, np.int16), 320 * k, 16000))


def test_a_long_unconfirmed_segment_is_released_from_its_last_seconds_with_their_preroll() -> None:
    held = ConfirmedSegments(16000, 20, 300, max_held_s=1.0)
    opening = SegmentOpened(1, onset_s=0.0, preroll=np.zeros(0, np.int16), preroll_start_s=0.0)
    assert held.feed([opening, _audio(0)], confirmed=False) == []
    for k in range(1, 120):  # 2.4 s held, unconfirmed
        assert held.feed([_audio(k)], confirmed=False) == []
    out = held.feed([_audio(120)], confirmed=True)
    first = out[0]
    assert isinstance(first, SegmentOpened) and first.onset_s == 71 * 0.02  # the last 50 frames (1 s) are kept
    assert len(first.preroll) == 15 * 320 and first.preroll_start_s == 56 * 0.02 and first.preroll[0] == 56
    assert [i.frame.start // 320 for i in out[1:]] == list(range(71, 121))
    assert held.feed([_audio(121), SegmentClosed(1, 2.44)], confirmed=True)[-1] == SegmentClosed(1, 2.44)
    # a segment that closes unconfirmed is dropped whole, and the next one starts afresh
    assert held.feed([SegmentOpened(2, 3.0, np.zeros(0, np.int16), 3.0), _audio(150, 2)], confirmed=False) == []
    assert held.feed([SegmentClosed(2, 3.1)], confirmed=False) == []
    assert held.feed([_audio(160, 2)], confirmed=True) == []
