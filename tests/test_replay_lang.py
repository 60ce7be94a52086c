"""Per-stream language: the ``lang`` query key, an unknown code refused at the handshake, a language the model cannot hear served without transcripts,
and the robot putting its scenario's language in the stream URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from callbot.events import Error, Final, Partial, parse_event
from callbot.audio_server.server import AudioServer
from callbot.audio_server.stream_client import read_wav, stream_pcm, stream_url
from callbot.audio_server.stream_params import StreamRequestError, parse_stream_request
from callbot.config import Settings
from callbot.stream import robot_stream_url
from tests.stt_model import shared_engine
from callbot.resources import demo_calls_dir

CALL = "5f0c6d1e-0000-4000-8000-000000000001"
FIXTURES = demo_calls_dir()


@pytest.mark.parametrize("text,expected", [("en", "en"), ("FR", "fr"), ("yue", "yue")])
def test_lang_is_a_short_language_code(text, expected):
    assert parse_stream_request(f"/stream/{CALL}?lang={text}", Settings()).lang == expected


@pytest.mark.parametrize("text", ["", "f", "french", "fr-FR", "e1", "fr;", "ﬀ"])
def test_a_bad_lang_is_refused_saying_what_to_send(text):
    with pytest.raises(StreamRequestError, match="short language code such as en or fr") as err:
        parse_stream_request(f"/stream/{CALL}?lang={text}", Settings())
    assert err.value.status == 400


def test_without_lang_the_stream_uses_stt_language():
    assert parse_stream_request(f"/stream/{CALL}?rate=8000", Settings()).lang is None


def test_the_robot_sends_the_scenario_language():
    assert robot_stream_url("ws://h:1", CALL, Settings(), lang="fr").endswith("&lang=fr")
    assert "lang=" not in robot_stream_url("ws://h:1", CALL, Settings())


def _handshake(lang: str) -> tuple[int | None, str, list]:
    """Open a stream with ``lang`` on a real server (real model); (refusal status, body, events)."""
    engine = shared_engine()
    samples, rate = read_wav(FIXTURES / "short_yes.wav")
    tail = np.zeros(rate * 2, samples.dtype)

    async def scenario():
        server = AudioServer(Settings().replace(**{"audio_server.idle_timeout_s": 2.0}), engine=engine)
        await server.start(host="127.0.0.1", port=0)
        url = stream_url(f"ws://127.0.0.1:{server.port}", rate=rate, lang=lang)
        try:
            try:
                async with connect(url):
                    pass
            except InvalidStatus as exc:
                return exc.response.status_code, exc.response.body.decode(), []
            result = await stream_pcm(url, np.concatenate([samples, tail]), rate, speed=4.0, linger_s=5.0)
            return None, "", [parse_event(t)[1] for t in result.texts]
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(scenario())


def test_an_english_only_model_keeps_a_french_stream_without_transcripts_saying_how_to_fix_it():
    """Barge-in must not be lost to a model choice: the stream stays, STT is off, an error event says why."""
    if shared_engine().multilingual:
        pytest.skip("the configured model is multilingual: it accepts lang=fr")
    status, _, events = _handshake("fr")
    assert status is None
    first = events[0]
    assert isinstance(first, Error) and first.code == "stt_language_unsupported"
    msg = first.message
    assert "English-only" in msg and "multilingual model" in msg and "stt.model" in msg and "docs/stt.md" in msg
    assert not [e for e in events if isinstance(e, (Final, Partial))]
    assert [e.type for e in events if e.type in ("speech_started", "speech_short")] == ["speech_started", "speech_short"]


def test_an_unknown_language_is_refused_at_the_handshake():
    status, body, _ = _handshake("zz")
    assert status == 400 and "not a Whisper language code" in body


def test_an_english_stream_is_transcribed():
    status, _, events = _handshake("en")
    assert status is None
    finals = [e.text.lower() for e in events if isinstance(e, Final)]
    assert any("yes" in f for f in finals), finals
