"""AMD in call time, sans I/O: the stream URL's ``answered_ago_ms`` (the answer, that long before the stream's
sample 0) makes the detector time its rules from the answer, so a stream that starts 0, 0.3 or 1.0 s after the
answer gives the same verdict and the same call-time dates (stream time + the stream's offset)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from callbot.audio_server.amd.detector import AmdDetector, AmdParams
from callbot.audio_server.pipeline.frames import Frame
from callbot.audio_server.pipeline.segments import FrameDecision
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_client import read_wav
from callbot.audio_server.stream_params import StreamRequestError, parse_stream_request
from callbot.config import AmdSettings, Settings
from callbot.events import Amd, BargeIn
from callbot.resources import demo_calls_dir
from callbot.stream import ANSWERED_AGO_KEY, StreamQuery, parse_stream_target, robot_stream_url, stream_url

CALL = "0f8fad5b-d9cb-469f-a165-70867728950e"
SETTINGS = Settings()
OFFSETS_S = (0.0, 0.3, 1.0)
OFFSETS_MS = tuple(round(o * 1000) for o in OFFSETS_S)
TICK_S = 0.020
AMD_DIR = Path(__file__).parent / "fixtures" / "amd"
# first words after the latest stream start: a late talker with a barge-in, a silent person, a long reply
HEARD_WHOLE = [demo_calls_dir() / "pauses_2500ms.wav", AMD_DIR / "human_en_us_silent.wav",
               demo_calls_dir() / "long_reply.wav"]
# greetings that start between 0.4 and 0.6 s: heard whole by a stream 0.3 s late
MACHINES = [AMD_DIR / "vm_en_us_beep1000.wav", AMD_DIR / "vm_en_gb_beep850.wav", AMD_DIR / "vm_fr_beep1400.wav"]


# ---- the URL contract -------------------------------------------------------------------------------------

def test_answered_ago_ms_round_trips_and_reaches_the_amd() -> None:
    url = robot_stream_url("ws://h:1", CALL, SETTINGS, answered_ago_ms=1234)
    assert "&answered_ago_ms=1234" in url
    call, query = parse_stream_target(url.removeprefix("ws://h:1"))
    assert call == CALL and query.answered_ago_ms == 1234
    assert parse_stream_request(url.removeprefix("ws://h:1"), SETTINGS).amd.answered_ago_ms == 1234
    assert ANSWERED_AGO_KEY not in robot_stream_url("ws://h:1", CALL, SETTINGS)  # not said: 0
    assert parse_stream_request(f"/stream/{CALL}", SETTINGS).amd.answered_ago_ms == 0


def test_the_robot_clips_its_estimate_to_the_range() -> None:
    assert StreamQuery.for_robot(SETTINGS, answered_ago_ms=-5).answered_ago_ms == 0
    assert StreamQuery.for_robot(SETTINGS, answered_ago_ms=10**7).answered_ago_ms == 60000


@pytest.mark.parametrize("text, message", [
    ("-1", "must be"), ("60001", "must be"), ("1.5", "not a valid int"), ("12ms", "not a valid int"), ("", "int"),
])
def test_a_bad_answered_ago_ms_is_refused_saying_why(text: str, message: str) -> None:
    with pytest.raises(StreamRequestError, match=message) as err:
        parse_stream_request(f"/stream/{CALL}?answered_ago_ms={text}", SETTINGS)
    assert err.value.status == 400 and "answered_ago_ms" in str(err.value)
    with pytest.raises(ValueError, match="answered_ago_ms"):
        stream_url("ws://h:1", CALL, StreamQuery(answered_ago_ms=-1))


def test_amd_params_refuse_an_answer_after_the_stream() -> None:
    with pytest.raises(ValueError, match="answered_ago_ms"):
        AmdParams(answered_ago_ms=-20)


# ---- the rules, timed from the answer ----------------------------------------------------------------------

def _detector(answered_ago_ms: int, **settings: object) -> AmdDetector:
    return AmdDetector(AmdParams(dataclasses.replace(AmdSettings(), **settings), answered_ago_ms=answered_ago_ms))


def _feed(amd: AmdDetector, pattern: list[tuple[int, bool]]) -> list[Amd]:
    out: list[Amd] = []
    start = 0
    for ms, voiced in pattern:
        for _ in range(ms // 20):
            out += amd.feed(FrameDecision(Frame(np.zeros(320, np.int16), start, 16000), voiced, -20.0))
            start += 320
    return out


@pytest.mark.parametrize("ago_ms", [0, 300, 1000, 2400])
def test_initial_silence_counts_from_the_answer(ago_ms: int) -> None:
    (silent,) = _feed(_detector(ago_ms), [(6000, False)])
    assert (silent.cause, round(silent.t * 1000) + ago_ms) == ("INITIALSILENCE", 2500)


@pytest.mark.parametrize("ago_ms", OFFSETS_MS)
def test_too_long_counts_from_the_answer(ago_ms: int) -> None:
    # one long word 1.5 s after the answer (a late talker: neither MAXWORDS nor LONGGREETING): TOOLONG at 5 s
    (long,) = _feed(_detector(ago_ms, maximum_word_length=60000), [(1500 - ago_ms, False), (8000, True)])
    assert (long.cause, round(long.t * 1000) + ago_ms) == ("TOOLONG", 5000)


def test_a_stream_later_than_the_initial_silence_decides_at_its_first_frame() -> None:
    (d,) = _feed(_detector(3000), [(20, False)])
    assert (d.result, d.cause, d.t) == ("notsure", "INITIALSILENCE", 0.02)


def test_the_late_talker_is_timed_from_the_answer() -> None:
    # four 300 ms words with 200 ms pauses, the first 1.2 s after the answer: a late talker, not MAXWORDS
    words = [(300, True), (200, False)] * 4 + [(1000, False)]
    for ago_ms in OFFSETS_MS:
        (d,) = _feed(_detector(ago_ms), [(1200 - ago_ms, False)] + words)
        assert (d.result, d.cause, round(d.t * 1000) + ago_ms) == ("human", "HUMAN", 1200 + 4 * 500 - 200 + 800)
    (early,) = _feed(_detector(0), [(200, False)] + words)  # the same words 0.2 s after the answer: a machine
    assert (early.result, early.cause) == ("machine", "MAXWORDS")


def test_a_word_under_way_at_sample_0_began_before_the_stream_so_is_not_late() -> None:
    """A stream 1.2 s late that opens on voice: the word began unheard, before the late onset could pass."""
    (d,) = _feed(_detector(1200), [(2000, True)])
    assert (d.result, d.cause) == ("machine", "LONGGREETING")
    (late,) = _feed(_detector(1200), [(40, False), (2000, True), (1000, False)])  # silence first: a late talker
    assert (late.result, late.cause) == ("human", "HUMAN")


def test_a_late_hint_replays_the_rules_from_the_answer() -> None:
    """Transcripts about audio already behind re-run the rules; the re-run keeps the unheard silence."""
    amd = AmdDetector(AmdParams(AmdSettings(), transcripts=True, answered_ago_ms=1000))
    out = _feed(amd, [(200, False), (300, True), (400, False)])
    out += amd.on_transcript("hello", 0.5, True)
    out += _feed(amd, [(2000, False)])
    (d,) = out
    assert (d.result, d.cause) == ("human", "HUMAN")  # a late talker's "hello": MAXWORDS could not apply anyway
    assert d.t == pytest.approx(0.5 + AmdSettings().hint_silence_ms / 1000, abs=TICK_S + 1e-9)


# ---- the pipeline on fixtures: the same verdict and call times -----------------------------------------------

Heard = tuple[tuple[str, str, float] | None, list[float]]


def _late_stream(wav: Path, offset_s: float, tell: bool = True) -> Heard:
    """The fixture heard by a stream that starts ``offset_s`` after the answer: the AMD verdict and the barge-ins,
    dated in call time (stream time + offset)."""
    samples, rate = read_wav(wav)
    ago = round(offset_s * 1000) if tell else 0
    pipeline = StreamPipeline(parse_stream_request(f"/stream/{CALL}?rate={rate}&answered_ago_ms={ago}", SETTINGS),
                              SETTINGS)
    data, step = samples[round(offset_s * rate):], rate // 50
    events = []
    for i in range(0, len(data), step):
        events += pipeline.feed(data[i:i + step].tobytes()).events
    events += pipeline.flush().events
    verdicts = [(e.result, e.cause, round(e.decided_at_s + offset_s, 3)) for e in events if isinstance(e, Amd)]
    barge_ins = [round(e.t + offset_s, 3) for e in events if isinstance(e, BargeIn)]
    assert len(verdicts) <= 1, verdicts
    return (verdicts[0] if verdicts else None), barge_ins


def _same(got: Heard, want: Heard, barge_ins: bool = True) -> None:
    (verdict, barge), (verdict0, barge0) = got, want
    assert verdict is not None and verdict0 is not None and verdict[:2] == verdict0[:2], (got, want)
    assert verdict[2] == pytest.approx(verdict0[2], abs=TICK_S + 1e-6), (got, want)
    if barge_ins:
        assert barge == pytest.approx(barge0, abs=TICK_S + 1e-6), (got, want)


@pytest.mark.parametrize("wav", HEARD_WHOLE, ids=[w.stem for w in HEARD_WHOLE])
def test_a_late_stream_gives_the_same_verdict_and_call_times(wav: Path) -> None:
    at_answer = _late_stream(wav, 0.0)
    assert at_answer[0] is not None and at_answer[0][0] in ("human", "notsure"), at_answer
    for offset in OFFSETS_S[1:]:
        _same(_late_stream(wav, offset), at_answer)


@pytest.mark.parametrize("wav", MACHINES, ids=[w.stem for w in MACHINES])
def test_a_greeting_heard_from_its_start_is_a_machine_whatever_the_stream_start(wav: Path) -> None:
    """The verdict and its call time; not the barge-ins: a greeting 0.1-0.3 s after the stream's start meets a
    line VAD still learning the noise floor, which moves a barge-in onset by a few frames (a voicemail's)."""
    at_answer = _late_stream(wav, 0.0)
    assert at_answer[0] is not None and at_answer[0][0] == "machine", at_answer
    _same(_late_stream(wav, 0.3), at_answer, barge_ins=False)


def test_untold_the_amd_times_the_late_talker_from_the_stream_start() -> None:
    """Issue 14's flip: without answered_ago_ms a stream 0.3 s late turns the late talker into a machine."""
    wav = demo_calls_dir() / "pauses_2500ms.wav"
    assert _late_stream(wav, 0.0)[0][:2] == ("human", "HUMAN")  # type: ignore[index]
    assert _late_stream(wav, 0.3, tell=False)[0][:2] == ("machine", "MAXWORDS")  # type: ignore[index]


# ---- the switch's figure, told late (the ``answered`` marker) ----------------------------------------------

def test_the_answered_marker_round_trips_and_refuses_what_it_cannot_carry() -> None:
    from callbot.stream import AnsweredMarker, MarkerError, marker_command, parse_marker

    marker = AnsweredMarker(240)
    assert marker.to_json() == '{"type":"answered","ago_ms":240}'
    assert parse_marker(marker.to_json()) == marker
    assert marker_command(CALL, marker) == f"uuid_audio_stream {CALL} send_text '{marker.to_json()}'"
    for bad, why in (('{"type":"answered","ago_ms":-1}', "between"), ('{"type":"answered","ago_ms":"5"}', "integer"),
                     ('{"type":"answered"}', "integer"), ('{"type":"answered","ago_ms":5,"at":1}', "unknown key")):
        with pytest.raises(MarkerError, match=why):
            parse_marker(bad)


def test_a_late_answered_figure_times_the_rules_from_the_true_answer() -> None:
    """The URL said 0 ms (the robot's guess); the switch ran the start command 1.0 s after the answer. Told
    mid-word, the AMD re-runs what it heard from the true answer: the late talker of above, not MAXWORDS."""
    words = [(300, True), (200, False)] * 4 + [(1000, False)]
    frames = [voiced for ms, voiced in [(200, False)] + words for _ in range(ms // 20)]
    amd, out = _detector(0), []
    for i, voiced in enumerate(frames):
        if i == 35:  # 0.2 s of silence and a word and a half heard: no verdict yet
            assert out == []
            out += amd.answered(1000)
        out += amd.feed(FrameDecision(Frame(np.zeros(320, np.int16), i * 320, 16000), voiced, -20.0))
    (d,) = out
    assert (d.result, d.cause) == ("human", "HUMAN")
    (told_at_once,) = _feed(_detector(1000), [(200, False)] + words)
    assert (d.result, d.cause, d.t) == (told_at_once.result, told_at_once.cause, told_at_once.t)


def test_an_answered_figure_after_the_verdict_changes_nothing() -> None:
    amd = _detector(0)
    (d,) = _feed(amd, [(6000, False)])
    assert amd.answered(1000) == [] and amd.decision == d
