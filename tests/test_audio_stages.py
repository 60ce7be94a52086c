"""Unit tests of the sans-I/O audio stages: reframer, VAD guards, segmenter, barge-in detector, pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from callbot.audio_server.pipeline.bargein import BargeInDetector
from callbot.events import BargeIn, SpeechShort, SpeechStarted, SpeechStopped
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.pipeline.reframer import Reframer
from callbot.audio_server.pipeline.segmenter import Segmenter, SegmenterStep
from callbot.audio_server.pipeline.segments import FrameDecision, SegmentAudio, SegmentClosed, SegmentOpened
from callbot.audio_server.stream_params import StreamParams
from callbot.audio_server.pipeline.vad import Vad, level_dbfs
from callbot.config import Settings, VadSettings

RATE = 16000
FRAME = RATE // 50
SETTINGS = Settings()


# -- reframer ---------------------------------------------------------------------------------

@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=30))
def test_reframer_reassembles_any_message_sizes_exactly(sizes: list[int]) -> None:
    total = sum(sizes)
    data = np.arange(total, dtype=np.uint8).tobytes()
    reframer = Reframer(RATE)
    frames, at = [], 0
    for size in sizes:
        frames += reframer.feed(data[at:at + size])
        at += size
    assert len(frames) == total // (2 * FRAME)
    assert [f.start for f in frames] == [i * FRAME for i in range(len(frames))]
    joined = b"".join(f.samples.astype("<i2").tobytes() for f in frames)
    assert joined == data[:len(joined)]
    assert reframer.pending_bytes == total - len(joined) < 2 * FRAME
    assert reframer.samples_received == total // 2


def test_reframer_carries_an_odd_byte_into_the_next_sample() -> None:
    reframer = Reframer(8000)
    value = np.array([-2], dtype="<i2").tobytes()  # b"\xfe\xff"
    frames = reframer.feed(b"\x00" * 318 + value[:1]) + reframer.feed(value[1:] + b"\x00" * 319)
    assert len(frames) == 1 and frames[0].samples[159] == -2 and frames[0].rate == 8000


def test_reframer_rejects_a_frame_that_is_not_whole_samples() -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        Reframer(11025)  # 20 ms would be 220.5 samples


# -- VAD --------------------------------------------------------------------------------------

def _frames(x: np.ndarray, rate: int = RATE) -> list[Frame]:
    n = rate // 50
    pcm = np.clip(x * 32768, -32768, 32767).astype(np.int16)
    return [Frame(pcm[i:i + n], i, rate) for i in range(0, len(pcm) - n + 1, n)]


def _tone_bursts(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal: what webrtcvad and the guards call speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)  # 4 syllables per second
    return 0.1 * voice * envelope + 0.0005 * rng.standard_normal(len(t))


def test_level_dbfs_of_full_scale_square_and_of_silence() -> None:
    assert level_dbfs(np.full(320, 32767, dtype=np.int16)) == pytest.approx(0.0, abs=0.01)
    assert level_dbfs(np.zeros(320, dtype=np.int16)) == -100.0


def test_vad_calls_modulated_voice_speech_but_not_steady_noise() -> None:
    rng = np.random.default_rng(1)
    vad = Vad(RATE, VadSettings())
    line = 0.0005 * rng.standard_normal(RATE // 2)  # the floor is learnt from the stream's first frames
    decisions = [vad.decide(f) for f in _frames(np.concatenate([line, _tone_bursts(2.0, rng)]))]
    voiced = [d.voiced for d in decisions if d.frame.t >= 0.5]
    assert not any(d.voiced for d in decisions if d.frame.t < 0.5)
    assert sum(voiced) > 0.7 * len(voiced)
    vad = Vad(RATE, VadSettings())
    noise = 0.03 * rng.standard_normal(3 * RATE)  # -30 dBFS white noise, from the first frame
    assert not any(vad.decide(f).voiced for f in _frames(noise))


def test_vad_stops_calling_noise_speech_soon_after_it_appears_mid_stream() -> None:
    rng = np.random.default_rng(2)
    quiet = 0.0005 * rng.standard_normal(RATE)
    noisy = 0.1 * rng.standard_normal(3 * RATE)  # a sudden -20 dBFS hiss
    vad = Vad(RATE, VadSettings())
    decisions = [vad.decide(f) for f in _frames(np.concatenate([quiet, noisy]))]
    late = [d.voiced for d in decisions if d.frame.t >= 1.4]
    assert not any(late), "steady noise is still voiced 400 ms after it started"
    assert vad.noise.dbfs is not None and vad.noise.dbfs > -25, "the floor rose to the hiss"


def test_vad_rejects_speech_below_the_absolute_level_floor() -> None:
    rng = np.random.default_rng(3)
    vad = Vad(RATE, VadSettings(min_level_dbfs=-30.0))
    faint = _tone_bursts(1.0, rng) * 0.01  # about -50 dBFS
    assert not any(vad.decide(f).voiced for f in _frames(faint))


def test_vad_rejects_bad_aggressiveness() -> None:
    with pytest.raises(ValueError, match="aggressiveness"):
        Vad(RATE, VadSettings(aggressiveness=5))


# -- segmenter --------------------------------------------------------------------------------

def _decisions(pattern: str, rate: int = RATE) -> list[FrameDecision]:
    """'1' = voiced frame, '0' = unvoiced, one character per 20 ms; samples hold the frame index."""
    n = rate // 50
    return [FrameDecision(Frame(np.full(n, i, dtype=np.int16), i * n, rate), c == "1", -20.0 if c == "1" else -60.0)
            for i, c in enumerate(pattern)]


def _segment(pattern: str, vad: VadSettings | None = None) -> list[SegmenterStep]:
    seg = Segmenter(RATE, vad or VadSettings())
    steps = [seg.feed(d) for d in _decisions(pattern)]
    return steps + [seg.flush()]


def _items(steps: list[SegmenterStep]) -> list:
    return [item for step in steps for item in step.items]


def test_segmenter_dates_onset_to_first_voiced_frame_with_preroll() -> None:
    steps = _segment("0" * 30 + "1" * 20 + "0" * 30)
    items = _items(steps)
    opened = [i for i in items if isinstance(i, SegmentOpened)]
    closed = [i for i in items if isinstance(i, SegmentClosed)]
    assert len(opened) == 1 and opened[0].onset_s == pytest.approx(0.6)
    assert opened[0].preroll_start_s == pytest.approx(0.3)
    assert len(opened[0].preroll) == 15 * FRAME and opened[0].preroll[0] == 15  # frames 15..29
    assert len(closed) == 1 and closed[0].end_s == pytest.approx(1.0)
    audio = [i.frame.start // FRAME for i in items if isinstance(i, SegmentAudio)]
    assert audio[0] == 30 and audio == list(range(30, audio[-1] + 1))
    # It was opened only once 6 of the 10-frame window were voiced: the 6th voiced frame.
    opened_at = next(k for k, s in enumerate(steps) if any(isinstance(i, SegmentOpened) for i in s.items))
    assert opened_at == 35
    # ... and closed once the hangover (300 ms = 15 frames) had passed with nothing voiced.
    closed_at = next(k for k, s in enumerate(steps) if any(isinstance(i, SegmentClosed) for i in s.items))
    assert closed_at == 50 + 15


def test_segmenter_ignores_isolated_clicks() -> None:
    assert _items(_segment(("0" * 9 + "1") * 20)) == []
    assert _items(_segment(("0" * 7 + "111") * 20)) == []  # 60 ms crackles, 3 in 10


def test_segmenter_clicks_do_not_extend_speech() -> None:
    pattern = "0" * 10 + "1" * 25 + "0" * 10 + "1" + "0" * 10 + "1" + "0" * 30
    closed = [i for i in _items(_segment(pattern)) if isinstance(i, SegmentClosed)]
    assert len(closed) == 1 and closed[0].end_s == pytest.approx(35 * 0.02)


def test_segmenter_bridges_a_pause_shorter_than_hangover() -> None:
    steps = _segment("0" * 10 + "1" * 20 + "0" * 10 + "1" * 20 + "0" * 30)
    items = _items(steps)
    assert sum(isinstance(i, SegmentOpened) for i in items) == 1
    spans = [s.speech for s in steps if s.speech]
    assert spans[0] == pytest.approx((0.2, 0.32)) and spans[-1][1] == pytest.approx(1.2)


def test_segmenter_onset_spans_a_short_closure_but_not_a_long_gap() -> None:
    # A 100 ms burst, a 100 ms closure, then speech: the onset is the burst ("ac-tually").
    opened = [i for i in _items(_segment("0" * 20 + "1" * 5 + "0" * 5 + "1" * 20 + "0" * 20))
              if isinstance(i, SegmentOpened)]
    assert opened[0].onset_s == pytest.approx(0.4)
    # A click 200 ms before speech is not the onset.
    opened = [i for i in _items(_segment("0" * 20 + "1" + "0" * 10 + "1" * 20 + "0" * 20))
              if isinstance(i, SegmentOpened)]
    assert opened[0].onset_s == pytest.approx(31 * 0.02)


def test_segmenter_flush_closes_open_speech() -> None:
    closed = [i for i in _items(_segment("1" * 30)) if isinstance(i, SegmentClosed)]
    assert len(closed) == 1 and closed[0].end_s == pytest.approx(0.6)


# -- barge-in detector ------------------------------------------------------------------------

def _detect(pattern: str, min_speech_ms: int = 1500, bridge_ms: int = 300,
            vad: VadSettings | None = None) -> list:
    det = BargeInDetector(min_speech_ms, bridge_ms)
    return [e for step in _segment(pattern, vad) for e in det.feed(step)]


def test_bargein_fires_once_on_the_frame_that_reaches_min_speech() -> None:
    events = _detect("0" * 10 + "1" * 100 + "0" * 30)
    assert events == [SpeechStarted(t=0.2), BargeIn(t=pytest.approx(1.7), onset_s=0.2, duration_ms=1500),
                      SpeechStopped(t=pytest.approx(2.2), duration_ms=2000)]


def test_bargein_bridges_short_gaps_inside_an_utterance() -> None:
    # 2.5 s of speech with 200 ms pauses: 475 ms talk / 200 ms pause.
    pattern = "0" * 10 + ("1" * 24 + "0" * 10) * 3 + "1" * 24 + "0" * 30
    events = _detect(pattern)
    barge = [e for e in events if isinstance(e, BargeIn)]
    assert len(barge) == 1 and barge[0].onset_s == pytest.approx(0.2) and barge[0].t == pytest.approx(1.7)


def test_bargein_restarts_after_a_gap_longer_than_bridge() -> None:
    # Two 1.0 s utterances 0.6 s apart: never a barge-in, two speech_short.
    events = _detect("0" * 10 + "1" * 50 + "0" * 30 + "1" * 50 + "0" * 30)
    assert [type(e) for e in events] == [SpeechStarted, SpeechShort, SpeechStarted, SpeechShort]
    assert events[1].duration_ms == 1000


def test_bargein_gap_beyond_bridge_inside_one_segment_starts_a_new_utterance() -> None:
    # Hangover 600 ms keeps one segment; a 400 ms gap > bridge 300 ms restarts the count.
    vad = VadSettings(hangover_ms=600)
    events = _detect("0" * 10 + "1" * 60 + "0" * 20 + "1" * 60 + "0" * 40, vad=vad)
    assert not any(isinstance(e, BargeIn) for e in events)
    events = _detect("0" * 10 + "1" * 60 + "0" * 20 + "1" * 80 + "0" * 40, vad=vad)
    barge = [e for e in events if isinstance(e, BargeIn)]
    assert len(barge) == 1 and barge[0].onset_s == pytest.approx(1.8)


def test_bargein_threshold_is_per_stream() -> None:
    events = _detect("0" * 10 + "1" * 30 + "0" * 30, min_speech_ms=500)
    assert [type(e) for e in events] == [SpeechStarted, BargeIn, SpeechStopped]
    assert events[1].t == pytest.approx(0.7)


# -- pipeline ---------------------------------------------------------------------------------

def test_pipeline_outputs_align_and_flush_ends_speech() -> None:
    rng = np.random.default_rng(4)
    x = np.concatenate([0.0005 * rng.standard_normal(RATE), _tone_bursts(2.0, rng)])
    pipeline = StreamPipeline(StreamParams.defaults("00000000-0000-4000-8000-000000000000", SETTINGS), SETTINGS)
    pcm = np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes()
    out = pipeline.feed(pcm[:12345])
    out2 = pipeline.feed(pcm[12345:])
    assert len(out.frames) + len(out2.frames) == len(pcm) // (2 * FRAME)
    assert [d.frame for d in out.decisions] == out.frames
    events = out.events + out2.events
    assert [type(e) for e in events] == [SpeechStarted, BargeIn]
    assert events[0].t == pytest.approx(1.0, abs=0.06) and events[1].t == pytest.approx(events[0].t + 1.5)
    tail = pipeline.flush()
    assert [type(e) for e in tail.events] == [SpeechStopped]
    assert isinstance(tail.segment_items[-1], SegmentClosed)


def test_pipeline_hangover_outlasts_a_long_bridge() -> None:
    """bridge_ms=500 from the URL bridges a 400 ms pause although vad.hangover_ms is 300."""
    rng = np.random.default_rng(5)
    line = 0.0005 * rng.standard_normal(RATE // 2)
    pause = 0.0005 * rng.standard_normal(int(0.4 * RATE))
    x = np.concatenate([line, _tone_bursts(1.0, rng), pause, _tone_bursts(1.0, rng), line])
    pcm = np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes()
    call = "00000000-0000-4000-8000-000000000000"
    for bridge_ms, fires in ((500, True), (300, False)):
        params = StreamParams(call, RATE, 1500, bridge_ms)
        pipeline = StreamPipeline(params, SETTINGS)
        events = pipeline.feed(pcm).events + pipeline.flush().events
        assert any(isinstance(e, BargeIn) for e in events) is fires, (bridge_ms, events)


@hsettings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=40)), min_size=1, max_size=30),
       st.sampled_from([300, 500, 1500]), st.sampled_from([0, 100, 300]))
def test_detector_invariants_on_any_voicing_pattern(runs: list[tuple[bool, int]], min_speech_ms: int,
                                                    bridge_ms: int) -> None:
    """Starts and ends alternate; barge_in sits inside a segment, on the frame that crosses the threshold."""
    pattern = "".join(("1" if voiced else "0") * n for voiced, n in runs)
    events = _detect(pattern, min_speech_ms, bridge_ms)
    onset, fired = None, []
    for e in events:
        if isinstance(e, SpeechStarted):
            assert onset is None
            onset = e.t
        elif isinstance(e, BargeIn):
            assert onset is not None and e.onset_s >= onset - 1e-9
            assert not fired or e.onset_s > fired[-1], "once per utterance"
            fired.append(e.onset_s)
            # At the mark; if the mark falls in a bridged gap, once speech resumes (2 voiced frames confirm it).
            assert min_speech_ms / 1000 - 1e-9 <= e.t - e.onset_s <= (min_speech_ms + bridge_ms + 40) / 1000 + 1e-9
            assert pattern[round(e.t * 50) - 1] == "1", "fires on a voiced frame"
        else:
            assert isinstance(e, (SpeechShort, SpeechStopped)) and onset is not None and e.t > onset
            onset = None
    assert onset is None, "flush closes open speech"
    if "1" * (min_speech_ms // 20 + 1) in pattern:
        assert any(isinstance(e, BargeIn) for e in events)
