"""The echo reference end to end over real WebSockets: the robot's playback markers reach the stream's
echo gate with the prompt read under ``[prompts] dir``, and one speech classifier serves every stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import numpy as np

from audio_testkit import running, server_settings
from callbot.app.eval.fixtures import load
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.server import ClassifierStep, Outbox, StreamSession
from callbot.audio_server.stream_client import StreamResult, stream_pcm, stream_url
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import BargeIn, Error, parse_event
from callbot.stream import PlaybackMarker

EVAL = Path(__file__).parent / "fixtures" / "eval"
ECHO = "echo_08_greeting_6db_120ms"  # the greeting's own echo, 6 dB down, 120 ms late
DOUBLE_TALK = "doubletalk_05_greeting_10db_50ms"  # a caller talking over the greeting's echo


def _fixture(name: str):
    return next(f for f in load(EVAL, ("clean",)) if f.name == name)


def _markers(fixture, file: str | None = None) -> list[tuple[float, str]]:
    """The sidecar's start markers as the robot sends them (``file`` overrides the prompt named)."""
    return [(m["start_s"], PlaybackMarker.start(file or m["file"], "Hello").to_json()) for m in fixture.playback]


def _events(result: StreamResult) -> list:
    return [parse_event(t)[1] for t in result.texts]


def test_the_prompts_echo_barges_in_only_without_its_marker_and_a_caller_over_it_still_does() -> None:
    echo, talk = _fixture(ECHO), _fixture(DOUBLE_TALK)
    jobs = [(echo, _markers(echo)), (echo, []), (talk, _markers(talk)),
            (echo, _markers(echo, "en/16000/no_such_prompt.wav"))]

    async def scenario():
        async with running(server_settings()) as (server, base):
            results = await asyncio.gather(*(
                stream_pcm(stream_url(base, str(uuid.uuid4()), rate=f.rate), f.samples, f.rate, texts=texts,
                           speed=0.0, linger_s=30.0) for f, texts in jobs))
            return results, server.classifier

    (with_marker, without, double_talk, missing), step = asyncio.run(scenario())
    assert not [e for e in _events(with_marker) if isinstance(e, BargeIn)], with_marker.texts
    assert [e for e in _events(without) if isinstance(e, BargeIn)], "without the reference its echo barges in"
    barges = [e for e in _events(double_talk) if isinstance(e, BargeIn)]
    onset = talk.utterances[0][0]
    assert len(barges) == 1 and abs(barges[0].onset_s - onset) < 0.25, (barges, onset)
    errors = [e for e in _events(missing) if isinstance(e, Error)]
    assert errors[0].code == "prompt_not_found" and "no_such_prompt.wav" in errors[0].message
    assert errors[0].t == echo.playback[0]["start_s"]
    assert errors[-1].code == "idle_timeout"  # the stream went on to its end, without a reference
    assert [e for e in _events(missing) if isinstance(e, BargeIn)]
    # One classifier for the process: its runs carried several streams' windows at once.
    assert step is not None and step.batcher.windows > step.batcher.calls > 0


def test_one_classifier_run_per_loop_turn_serves_every_stream_that_queued_a_window() -> None:
    settings = Settings()
    fixture = _fixture(DOUBLE_TALK)
    data = fixture.samples.astype("<i2").tobytes()
    from callbot.audio_server.classify.silero_batch import SileroBatcher

    step = ClassifierStep(SileroBatcher())
    sessions = [StreamSession(p := StreamParams.defaults(str(uuid.uuid4()), settings),
                              StreamPipeline(p, settings, batcher=step.batcher), Outbox(8)) for _ in range(3)]
    alone = StreamSession(p := StreamParams.defaults(str(uuid.uuid4()), settings), StreamPipeline(p, settings),
                          Outbox(8))
    expected = [alone.on_audio(data[i:i + 640]) for i in range(0, len(data), 640)] + [alone.finish()]

    async def stream(session: StreamSession) -> list[list[str]]:
        out = []
        for i in range(0, len(data), 640):
            session.accept(data[i:i + 640])
            if session.pipeline.awaits_batcher:
                await step.next_run()
            out.append(session.advance())
            await asyncio.sleep(0)
        return out + [session.finish()]

    async def scenario():
        return await asyncio.gather(*(stream(s) for s in sessions))

    got = asyncio.run(scenario())
    for texts in got:  # the same events as a stream with a batcher of its own (the call uuid aside)
        assert [[json.loads(t) | {"call": None} for t in m] for m in texts] == \
               [[json.loads(t) | {"call": None} for t in m] for m in expected]
    windows = alone.pipeline.classifier.windows_run
    assert windows > 20 and step.batcher.windows == 3 * windows
    assert step.runs == step.batcher.calls <= windows + 1  # three streams, one call per window step


def test_pause_resume_and_stop_markers_move_the_reference(tmp_path: Path) -> None:
    settings = Settings()
    rate = 16000
    prompt = (np.sin(np.arange(rate) * 0.07) * 8000).astype(np.int16)
    import soundfile as sf

    (tmp_path / "en" / "16000").mkdir(parents=True)
    sf.write(tmp_path / "en/16000/tone.wav", prompt, rate)
    (tmp_path / "en/16000/broken.wav").write_bytes(b"RIFF not really")
    params = StreamParams.defaults(str(uuid.uuid4()), settings)
    session = StreamSession(params, StreamPipeline(params, settings), Outbox(8), prompts_dir=tmp_path)
    gate = session.pipeline.echo
    assert session.on_text(PlaybackMarker.start("en/16000/tone.wav").to_json(), 16384) == []
    assert session.prompt is not None and session.prompt.reference and gate.timeline.spans == [[0, 0, None]]
    session.on_audio(b"\x00" * 6400)  # 0.2 s
    session.on_text('{"type":"playback","state":"pause"}', 16384)
    assert gate.timeline.spans[-1][2] == 3200 + 720  # silent 45 ms after the pause marker
    session.on_audio(b"\x00" * 3200)
    session.on_text('{"type":"playback","state":"resume"}', 16384)
    assert gate.timeline.spans[-1] == [4800 + 720, 3200 + 720, None]  # on again where it went silent
    session.on_text('{"type":"playback","state":"stop"}', 16384)
    assert gate.timeline.last_end() == 4800 + 720 and session.prompt is None  # (it was not yet on again)
    replies = session.on_text(PlaybackMarker.start("en/16000/broken.wav").to_json(), 16384)
    error = parse_event(replies[0])[1]
    assert error.code == "prompt_unreadable" and "broken.wav" in error.message
    assert session.prompt is not None and not session.prompt.reference
