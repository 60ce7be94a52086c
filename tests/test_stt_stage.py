"""The sans-I/O STT stage: partial cadence and merging, stale partials, finals, segment cap, prompt (no model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from callbot.events import Final, Partial
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.segments import SegmentAudio, SegmentClosed, SegmentOpened
from callbot.audio_server.stt.stage import DecodeResult, SegmentTranscriber
from callbot.config import SttSettings

RATE = 16000
FRAME = 320  # 20 ms


def opened(seg: int, onset_s: float, preroll_ms: int = 300) -> SegmentOpened:
    n = RATE * preroll_ms // 1000
    return SegmentOpened(seg, onset_s, np.full(n, 7, np.int16), onset_s - n / RATE)


def audio(seg: int, start_s: float, seconds: float, level: int = 3000, quiet_at: set[int] = frozenset()) -> list:
    """Frames of a segment from ``start_s``; frames whose index is in ``quiet_at`` are near-silent."""
    out = []
    first = round(start_s * RATE)
    for i in range(round(seconds * RATE / FRAME)):
        samples = np.full(FRAME, 10 if i in quiet_at else level, np.int16)
        out.append(SegmentAudio(seg, Frame(samples, first + i * FRAME, RATE)))
    return out


SPEECH = DecodeResult("hello there how are you", -0.3, 0.1)


def test_partials_every_interval_of_new_speech_one_in_flight_merged() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    assert stage.feed([opened(1, 1.0)]).jobs == []  # the preroll is not new speech
    jobs = stage.feed(audio(1, 1.0, 0.48)).jobs
    assert jobs == []
    first = stage.feed(audio(1, 1.48, 0.02)).jobs
    assert [j.kind for j in first] == ["partial"]
    job = first[0]
    assert job.audio_s == pytest.approx(0.8)  # 300 ms preroll + 500 ms speech
    assert (job.start_s, job.end_s) == (1.0, pytest.approx(1.5))
    # While it is in flight, 1.5 s more audio makes no new job: it will be merged into the next.
    assert stage.feed(audio(1, 1.5, 1.5)).jobs == []
    out = stage.on_result(job, DecodeResult("hello", -0.3, 0.1))
    assert out.events == []  # one hypothesis confirms nothing
    (merged,) = out.jobs
    assert merged.kind == "partial" and merged.end_s == pytest.approx(3.0) and merged.audio_s == pytest.approx(2.3)
    out = stage.on_result(merged, DecodeResult("hello there", -0.3, 0.1))
    assert out.events == [Partial(t=pytest.approx(3.0), text="hello", start_s=1.0)]
    assert out.jobs == []  # nothing new since the merged job


def test_a_dropped_partial_frees_the_slot() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    stage.feed([opened(1, 0.5)])
    (job,) = stage.feed(audio(1, 0.5, 0.5)).jobs
    stage.feed(audio(1, 1.0, 0.6))
    out = stage.on_result(job, None)  # the engine dropped it under load
    assert out.events == [] and [j.kind for j in out.jobs] == ["partial"]


def test_partials_can_be_turned_off() -> None:
    stage = SegmentTranscriber(SttSettings(partials=False), RATE, "s1")
    stage.feed([opened(1, 0.5)])
    assert stage.feed(audio(1, 0.5, 3.0)).jobs == []
    assert [j.kind for j in stage.feed([SegmentClosed(1, 3.5)]).jobs] == ["final"]


def test_final_covers_preroll_and_is_dated_from_onset_and_a_stale_partial_is_discarded() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    stage.feed([opened(4, 2.0)])
    (partial,) = stage.feed(audio(4, 2.0, 0.6)).jobs
    (final,) = stage.feed([SegmentClosed(4, 2.5)]).jobs
    assert final.kind == "final" and final.audio_s == pytest.approx(0.9)
    assert final.samples[0] == 7  # the preroll comes first
    assert stage.on_result(partial, SPEECH).events == []  # came back after the segment closed
    out = stage.on_result(final, DecodeResult(" Yes. ", -0.4, 0.2))
    assert out.events == [Final(t=2.5, text="Yes.", start_s=2.0, end_s=2.5, avg_logprob=-0.4, no_speech_prob=0.2)]
    assert stage.finals_pending == 0


def test_hallucinated_or_noise_finals_are_suppressed_with_a_reason() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    reasons = []
    for seg, result in ((1, DecodeResult("Thank you.", -0.2, 0.3)), (2, DecodeResult("You", -3.5, 0.94))):
        stage.feed([opened(seg, seg * 2.0), *audio(seg, seg * 2.0, 0.3)])
        (final,) = stage.feed([SegmentClosed(seg, seg * 2.0 + 0.3)]).jobs
        out = stage.on_result(final, result)
        assert out.events == []
        assert out.wordless == [seg * 2.0 + 0.3]  # where its speech ended: the AMD need not wait for its words
        reasons += out.suppressed
    assert reasons == ["hallucination", "no_speech"]


def test_finals_are_emitted_in_segment_order_whatever_order_results_come_back() -> None:
    stage = SegmentTranscriber(SttSettings(partials=False), RATE, "s1")
    finals = []
    for seg in (1, 2, 3):
        stage.feed([opened(seg, seg * 2.0), *audio(seg, seg * 2.0, 0.4)])
        finals += stage.feed([SegmentClosed(seg, seg * 2.0 + 0.4)]).jobs
    assert stage.on_result(finals[2], DecodeResult("three", -0.3, 0.1)).events == []
    assert stage.on_result(finals[1], DecodeResult("Thank you.", -0.3, 0.1)).events == []  # suppressed, in order
    out = stage.on_result(finals[0], DecodeResult("one", -0.3, 0.1))
    assert [e.text for e in out.events] == ["one", "three"] and out.wordless == [4.4]


def test_long_segment_is_cut_at_its_quietest_frame_and_finalised_in_pieces() -> None:
    settings = SttSettings(max_segment_s=2.0, cut_search_ms=500, partials=False)
    stage = SegmentTranscriber(settings, RATE, "s1")
    stage.feed([opened(1, 1.0)])
    # 5 s of speech; frame 70 (1.40-1.42 s into the speech) and frame 160 are quiet.
    jobs = stage.feed(audio(1, 1.0, 5.0, quiet_at={70, 160})).jobs
    jobs += stage.feed([SegmentClosed(1, 6.0)]).jobs
    assert [(j.kind, j.piece) for j in jobs] == [("final", 0), ("final", 1), ("final", 2)]
    assert jobs[0].end_s == pytest.approx(1.0 + 71 * 0.02)  # cut after the quiet frame, within 2 s
    assert jobs[1].end_s == pytest.approx(1.0 + 161 * 0.02)
    assert all(j.audio_s <= 2.0 for j in jobs)
    for a, b in zip(jobs, jobs[1:]):
        assert b.start_s == pytest.approx(a.end_s)  # pieces tile the segment, nothing lost
    assert sum(j.audio_s for j in jobs) == pytest.approx(5.3)  # preroll + speech
    events = []
    for i, job in enumerate(jobs):
        events += stage.on_result(job, DecodeResult(f"piece {i}", -0.3, 0.1)).events
    assert [e.text for e in events] == ["piece 0", "piece 1", "piece 2"]


def test_prompt_and_confirmed_prefix_go_with_every_later_job() -> None:
    settings = dataclasses.replace(SttSettings(), max_prompt_chars=20)
    stage = SegmentTranscriber(settings, RATE, "s1")
    prompt = "Hello, this is Acme. Would you like a callback?"
    stage.set_prompt(prompt)
    stage.feed([opened(1, 1.0)])
    (p1,) = stage.feed(audio(1, 1.0, 0.5)).jobs
    assert p1.initial_prompt == prompt[-20:] and p1.prefix is None
    stage.on_result(p1, DecodeResult("call me", -0.3, 0.1))
    (p2,) = stage.feed(audio(1, 1.5, 0.5)).jobs
    stage.on_result(p2, DecodeResult("call me back", -0.3, 0.1))
    stage.feed(audio(1, 2.0, 0.3))
    (final,) = stage.feed([SegmentClosed(1, 2.2)]).jobs
    assert final.prefix == "call me"  # the final cannot contradict the partial already sent


def test_bad_input_is_a_clear_error() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    with pytest.raises(ValueError, match="open segment is None"):
        stage.feed(audio(9, 0.0, 0.02))
    stage.feed([opened(1, 1.0)])
    (final,) = stage.feed([SegmentClosed(1, 1.2)]).jobs
    with pytest.raises(ValueError, match="finals are never dropped"):
        stage.on_result(final, None)
    with pytest.raises(ValueError, match="max_segment_s"):
        SegmentTranscriber(SttSettings(max_segment_s=40), RATE)


def test_stream_end_finalises_an_open_segment() -> None:
    stage = SegmentTranscriber(SttSettings(partials=False), RATE, "s1")
    stage.feed([opened(1, 1.0), *audio(1, 1.0, 1.0)])
    (final,) = stage.finish().jobs
    assert final.kind == "final" and final.end_s == pytest.approx(2.0)


def test_a_partial_that_heard_the_whole_segment_becomes_its_final_without_a_decode() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    stage.feed([opened(1, 1.0)])
    (early,) = stage.feed(audio(1, 1.0, 0.5)).jobs
    stage.feed(audio(1, 1.5, 0.5))  # speech ends at 1.9 s, hangover follows
    (late,) = stage.on_result(early, DecodeResult("call me", -0.3, 0.1)).jobs  # hears up to 2.0 s
    stage.feed(audio(1, 2.0, 0.2))
    stage.on_result(late, DecodeResult("Call me back.", -0.25, 0.1))
    out = stage.feed([SegmentClosed(1, 1.9)])
    assert out.jobs == [] and out.reused == 1
    assert out.events == [Final(t=1.9, text="Call me back.", start_s=1.0, end_s=1.9, avg_logprob=-0.25,
                                no_speech_prob=0.1)]


def test_a_partial_that_stopped_before_the_end_of_speech_is_not_reused() -> None:
    stage = SegmentTranscriber(SttSettings(), RATE, "s1")
    stage.feed([opened(1, 1.0)])
    (early,) = stage.feed(audio(1, 1.0, 0.5)).jobs
    stage.on_result(early, DecodeResult("call me", -0.3, 0.1))
    stage.feed(audio(1, 1.5, 0.3))
    out = stage.feed([SegmentClosed(1, 1.8)])
    assert [j.kind for j in out.jobs] == ["final"] and out.events == [] and out.reused == 0


def test_a_pause_starts_the_finals_decode_early_and_the_final_reuses_it() -> None:
    """100 ms into a pause one early decode is issued; when the hangover closes the segment, it is the final."""
    settings = dataclasses.replace(SttSettings(), partials=False, early_final_ms=0)
    stage = SegmentTranscriber(settings, RATE, "s")
    speech = np.full(FRAME, 1000, np.int16)
    out = stage.feed([SegmentOpened(1, 0.0, np.zeros(0, np.int16), 0.0)])
    out.extend(stage.feed([SegmentAudio(1, Frame(speech, i * FRAME, RATE)) for i in range(50)]))
    assert out.jobs == []  # partials are off and nobody paused yet
    pause = [SegmentAudio(1, Frame(speech * 0, (50 + i) * FRAME, RATE), silent_ms=20 * (i + 1)) for i in range(15)]
    early = stage.feed(pause).jobs
    assert len(early) == 1 and early[0].early and early[0].kind == "partial"
    result = DecodeResult("hello there", -0.2, 0.01)
    assert stage.on_result(early[0], result).events == []  # partials off: nothing sent yet
    closed = stage.feed([SegmentClosed(1, 1.0)])
    assert closed.jobs == [] and closed.reused == 1
    assert [e.text for e in closed.events] == ["hello there"]


# ---- adaptive end of speech (stt.early_final_ms) ------------------------------------------------

SPEAK = np.full(FRAME, 1000, np.int16)


def speech_frames(seg: int, first: int, count: int) -> list[SegmentAudio]:
    """``count`` voiced 20 ms frames from frame index ``first`` (silent_ms 0, as the segmenter sends them)."""
    return [SegmentAudio(seg, Frame(SPEAK, (first + i) * FRAME, RATE)) for i in range(count)]


def pause_frames(seg: int, first: int, count: int, already_ms: int = 0) -> list[SegmentAudio]:
    """``count`` frames of a pause from frame index ``first``, each with the pause's length so far."""
    return [SegmentAudio(seg, Frame(SPEAK * 0, (first + i) * FRAME, RATE), silent_ms=already_ms + 20 * (i + 1))
            for i in range(count)]


def talked_then_paused(settings: SttSettings, pause_ms: int = 100) -> tuple[SegmentTranscriber, list]:
    """One second of speech from 0 s (no preroll), then ``pause_ms`` of pause; the jobs the pause issued."""
    stage = SegmentTranscriber(settings, RATE, "s")
    stage.feed([SegmentOpened(1, 0.0, np.zeros(0, np.int16), 0.0)])
    stage.feed(speech_frames(1, 0, 50))
    return stage, stage.feed(pause_frames(1, 50, pause_ms // 20)).jobs


EARLY = dataclasses.replace(SttSettings(), partials=False, early_final_ms=240)


def test_a_complete_decode_of_a_long_enough_pause_is_the_final_before_the_hangover() -> None:
    stage, (spec,) = talked_then_paused(EARLY)
    assert spec.early and spec.end_s == pytest.approx(1.1)
    out = stage.on_result(spec, DecodeResult("Call me back.", -0.2, 0.01))
    assert out.events == [] and out.early == 0  # 100 ms of pause: not yet
    out = stage.feed(pause_frames(1, 55, 7, already_ms=100))  # 240 ms of pause
    assert out.jobs == [] and out.early == 1 and out.reused == 1
    assert out.events == [Final(t=1.0, text="Call me back.", start_s=0.0, end_s=1.0, avg_logprob=-0.2,
                                no_speech_prob=0.01)]
    # The hangover runs out and the segmenter closes the segment: nothing more to say about it.
    out = stage.feed([*pause_frames(1, 62, 4, already_ms=240), SegmentClosed(1, 1.0)])
    assert out.events == [] and out.jobs == [] and stage.finals_pending == 0


def test_a_decode_that_comes_back_after_the_pause_is_long_enough_is_sent_at_once() -> None:
    stage, (spec,) = talked_then_paused(EARLY)
    stage.feed(pause_frames(1, 55, 10, already_ms=100))  # 300 ms of pause, the decode still out
    out = stage.on_result(spec, DecodeResult("Who is this?", -0.2, 0.01))
    assert [e.text for e in out.events] == ["Who is this?"] and out.events[0].end_s == 1.0


@pytest.mark.parametrize("text", ["Well I think...", "so please call me,", ""])
def test_a_decode_that_trails_off_waits_for_the_hangover(text: str) -> None:
    stage, (spec,) = talked_then_paused(EARLY)
    stage.on_result(spec, DecodeResult(text, -0.2, 0.01))
    out = stage.feed(pause_frames(1, 55, 10, already_ms=100))
    assert out.events == [] and out.early == 0
    out = stage.feed([SegmentClosed(1, 1.0)])
    assert out.early == 0 and out.reused == 1 and out.jobs == []  # the hangover's final: the same decode


def test_early_finals_off_is_the_hangover_as_before() -> None:
    stage, (spec,) = talked_then_paused(dataclasses.replace(EARLY, early_final_ms=0))
    stage.on_result(spec, DecodeResult("Call me back.", -0.2, 0.01))
    assert stage.feed(pause_frames(1, 55, 10, already_ms=100)).events == []
    assert [e.text for e in stage.feed([SegmentClosed(1, 1.0)]).events] == ["Call me back."]


def test_speech_after_an_early_final_is_the_next_piece_with_its_own_final() -> None:
    """Nothing is retracted: the words after the pause are transcribed alone and sent as a second final."""
    stage, (spec,) = talked_then_paused(EARLY, pause_ms=260)
    (first,) = stage.on_result(spec, DecodeResult("Call me back.", -0.2, 0.01)).events
    assert first.end_s == 1.0
    assert stage.feed(pause_frames(1, 63, 1, already_ms=260)).jobs == []  # still quiet: no decode of silence
    stage.feed(speech_frames(1, 64, 25))  # "tomorrow", 1.28-1.78 s
    (cut_pause,) = stage.feed(pause_frames(1, 89, 5)).jobs  # its own pause decode, 100 ms in
    assert cut_pause.piece == 1 and cut_pause.start_s == pytest.approx(1.26)
    assert cut_pause.audio_s == pytest.approx(0.62)  # from the first piece's end: the pause's tail, then speech
    (final,) = stage.feed([SegmentClosed(1, 1.78)]).jobs  # closed before that decode came back
    assert final.kind == "final" and final.end_s == pytest.approx(1.78)
    (second,) = stage.on_result(final, DecodeResult("Tomorrow.", -0.2, 0.01)).events
    assert (second.text, second.start_s, second.end_s) == ("Tomorrow.", pytest.approx(1.26), pytest.approx(1.78))


def test_the_stream_ending_after_an_early_final_owes_no_final() -> None:
    stage, (spec,) = talked_then_paused(EARLY, pause_ms=260)
    assert len(stage.on_result(spec, DecodeResult("Yes.", -0.2, 0.01)).events) == 1
    assert stage.finish().jobs == [] and stage.finals_pending == 0


def test_a_decode_that_heard_no_pause_is_not_an_early_final() -> None:
    """A partial that ended on the last voiced frame may have cut the last word short."""
    stage = SegmentTranscriber(dataclasses.replace(EARLY, partials=True), RATE, "s")
    stage.feed([SegmentOpened(1, 0.0, np.zeros(0, np.int16), 0.0)])
    (partial,) = stage.feed(speech_frames(1, 0, 25)).jobs  # 500 ms of speech: a partial
    assert not partial.early
    stage.feed(pause_frames(1, 25, 4))  # 80 ms of pause: no pause decode yet
    assert stage.feed(pause_frames(1, 29, 1, already_ms=80)).jobs[0].early  # 100 ms: issued beside the partial
    out = stage.on_result(partial, DecodeResult("Hello there.", -0.2, 0.01))
    out.extend(stage.feed(pause_frames(1, 30, 10, already_ms=100)))
    assert out.events == [] and out.early == 0


def test_a_pause_decode_does_not_wait_for_a_partial_that_stopped_at_the_speech_but_a_third_waits() -> None:
    stage = SegmentTranscriber(dataclasses.replace(EARLY, partials=True), RATE, "s")
    stage.feed([SegmentOpened(1, 0.0, np.zeros(0, np.int16), 0.0)])
    (partial,) = stage.feed(speech_frames(1, 0, 25)).jobs
    (spec,) = stage.feed(pause_frames(1, 25, 5)).jobs
    assert spec.early and spec.end_s == pytest.approx(0.6)
    stage.feed(speech_frames(1, 30, 5))
    assert stage.feed(pause_frames(1, 35, 5)).jobs == []  # two decodes out: the next pause's waits
    (next_spec,) = stage.on_result(partial, DecodeResult("Hello", -0.2, 0.01)).jobs
    assert next_spec.early and next_spec.end_s == pytest.approx(0.8)
