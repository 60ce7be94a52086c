"""The robot's playback markers at the audio server: the prompt's words become the decoder's context, the
prompt file playing is recorded per stream, and a bad marker gets an ``error`` event while the stream goes on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from audio_testkit import FIXTURES, check_against_sidecar, running, server_settings, until_closed
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.server import Outbox, StreamSession
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import Error, parse_event
from callbot.stream import PlaybackMarker

CALL = "0f8fad5b-d9cb-469f-a165-70867728950e"


class RecordedContext:
    """Stands in for the stream's StreamTranscription: remembers the context it was given."""

    def __init__(self) -> None:
        self.prompts: list[str | None] = []

    def set_prompt(self, text: str | None) -> None:
        self.prompts.append(text)

    def feed(self, items: object) -> None:
        pass


def _session(prompts_dir: Path) -> tuple[StreamSession, RecordedContext]:
    settings = Settings()
    params = StreamParams.defaults(CALL, settings)
    stt = RecordedContext()
    session = StreamSession(params, StreamPipeline(params, settings), Outbox(8), stt=stt,  # type: ignore[arg-type]
                            prompts_dir=prompts_dir)
    return session, stt


def test_the_start_marker_sets_the_context_and_records_the_prompt_file(tmp_path: Path) -> None:
    session, stt = _session(tmp_path)
    start = PlaybackMarker.start("en/16000/greeting.wav", "Hello, this is Anna. Is now a good time?")
    missing = session.on_text(start.to_json(), 16384)  # not under tmp_path: no echo reference, the stream goes on
    assert [parse_event(t)[1].code for t in missing] == ["prompt_not_found"]
    assert stt.prompts == ["Hello, this is Anna. Is now a good time?"]
    assert session.prompt is not None
    assert (session.prompt.file, session.prompt.path, session.prompt.paused) == (
        "en/16000/greeting.wav", tmp_path / "en/16000/greeting.wav", False)
    session.on_audio(b"\x00" * 6400)  # 0.2 s later the robot pauses, then resumes
    assert session.on_text('{"type":"playback","state":"pause"}', 16384) == [] and session.prompt.paused
    assert session.on_text('{"type":"playback","state":"resume"}', 16384) == [] and not session.prompt.paused
    assert session.prompt.started_t == 0.0
    session.on_text('{"type":"playback","state":"stop"}', 16384)
    assert session.prompt is None and stt.prompts == [start.text]  # the reply that follows answers those words
    session.on_text(PlaybackMarker.start("en/16000/bye.wav").to_json(), 16384)  # no words: no stale context
    assert stt.prompts[-1] is None and session.prompt is not None and session.prompt.started_t == 0.2


def test_the_old_prompt_frame_and_metadata_are_not_markers(tmp_path: Path) -> None:
    session, stt = _session(tmp_path)
    assert session.on_text('{"type":"prompt","text":"Would you like a callback?"}', 16384) == []
    assert session.on_text('{"campaign":"c1","contact":7}', 16384) == []
    assert stt.prompts == [] and session.texts_ignored == 1 and session.metadata == {"campaign": "c1", "contact": 7}
    assert session.on_text('{"type":"playback","state":"stop"}', 16384) == []  # nothing playing: nothing to stop


def test_bad_markers_get_an_error_event_and_the_stream_goes_on() -> None:
    wav = FIXTURES / "long_reply.wav"
    samples, rate = read_wav(wav)
    call = "5d8b9c1a-3e2f-4a6b-9c7d-1e2f3a4b5c6d"
    markers = [
        (0.0, '{"type":"playback","state":"start","file":"en/16000/greeting.wav","text":"Is now a good time?"}'),
        (0.5, '{"type":"playback","state":"start","file":"/etc/passwd"}'),
        (0.6, '{"type":"playback","state":"start","file":"en/../../secret.wav"}'),
        (0.7, '{"type":"playback","state":"rewind"}'),
        (1.0, '{"type":"playback","state":"stop"}'),
    ]

    async def scenario():
        async with running(server_settings()) as (_server, base):
            return await stream_pcm(stream_url(base, call, rate=rate), samples, rate, texts=markers, speed=0.0,
                                    linger_s=30.0)

    result = asyncio.run(scenario())
    errors = [parse_event(t)[1] for t in result.texts if json.loads(t)["type"] == "error"]
    assert [e.code for e in errors] == ["bad_marker", "bad_marker", "bad_marker", "idle_timeout"]
    assert "an absolute path" in errors[0].message and "'..' leaves" in errors[1].message
    assert "state 'rewind'" in errors[2].message and errors[0].t == 0.5
    assert result.close_code == 1008  # closed by the idle timeout after the last audio, not by the markers
    check_against_sidecar(wav, call, result)


def test_a_marker_with_a_newline_in_its_words_is_still_a_marker() -> None:
    async def scenario() -> list[str]:
        async with running(server_settings(**{"audio_server.idle_timeout_s": 0.3})) as (_server, base):
            async with connect(stream_url(base)) as ws:
                await ws.send(json.dumps({"type": "playback", "state": "start", "file": "en/16000/q.wav",
                                          "text": "line one\nline two"}))
                await ws.send(b"\x00" * 640)
                return (await until_closed(ws)).texts

    texts = asyncio.run(scenario())
    # a marker: its file is looked up (there is no such prompt), then the stream times out
    assert [parse_event(t)[1].code for t in texts] == ["prompt_not_found", "idle_timeout"]
    assert isinstance(parse_event(texts[0])[1], Error)


def test_the_answered_marker_reaches_the_amd_and_its_verdict_goes_out_with_the_transcripts(tmp_path: Path) -> None:
    """The URL said nothing (0 ms); the switch's stamps say the stream started 3 s after the answer: past the
    2.5 s of initial silence, so the verdict is due on the next frame, and goes out through the outbox."""
    session, _ = _session(tmp_path)
    session.on_audio(b"\x00" * 640 * 10)  # 0.2 s of silence: no verdict yet
    assert session.outbox.queue.empty()
    assert session.on_text('{"type":"answered","ago_ms":3000}', 16384) == []
    (verdict,) = [session.outbox.queue.get_nowait()[0] for _ in range(session.outbox.queue.qsize())]
    assert (verdict.result, verdict.cause) == ("notsure", "INITIALSILENCE")
    bad = session.on_text('{"type":"answered","ago_ms":-5}', 16384)
    assert [parse_event(t)[1].code for t in bad] == ["bad_marker"]
