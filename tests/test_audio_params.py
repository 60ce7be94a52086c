"""Handshake validation: path, uuid, the query allow-list and the token, each with a clear status and message."""

from __future__ import annotations

import pytest

from callbot.audio_server.stream_params import StreamParams, StreamRequestError, parse_stream_request, redact
from callbot.config import Settings

CALL = "b674cdff-5ccf-44a8-9a23-6117a9f3fc3c"
SETTINGS = Settings()


def _refused(target: str, settings: Settings = SETTINGS, headers: dict | None = None) -> StreamRequestError:
    with pytest.raises(StreamRequestError) as info:
        parse_stream_request(target, settings, headers)
    return info.value


def test_defaults_come_from_settings_and_query_overrides_them() -> None:
    assert parse_stream_request(f"/stream/{CALL}", SETTINGS) == StreamParams(CALL, 16000, 1500, 300)
    custom = Settings().replace(**{"bargein.min_speech_ms": 1200})
    assert parse_stream_request(f"/stream/{CALL}", custom).min_speech_ms == 1200
    params = parse_stream_request(f"/stream/{CALL.upper()}?rate=8000&min_speech_ms=900&bridge_ms=0", SETTINGS)
    assert params == StreamParams(CALL, 8000, 900, 0)  # the uuid is canonicalised


@pytest.mark.parametrize("target,status,words", [
    ("/", 404, "/stream/<call-uuid>"),
    (f"/streams/{CALL}", 404, "no such path"),
    ("/stream/", 400, "not a valid UUID"),
    ("/stream/123", 400, "not a valid UUID"),
    (f"/stream/{CALL}/extra", 400, "not a valid UUID"),
    (f"/stream/{CALL}?rate=44100", 400, "query parameter rate: 44100 must be one of 8000, 16000"),
    (f"/stream/{CALL}?rate=16k", 400, "query parameter rate: '16k' is not a valid int"),
    (f"/stream/{CALL}?min_speech_ms=-5", 400, "min_speech_ms: -5 must be between 100 and 60000"),
    (f"/stream/{CALL}?min_speech_ms=99", 400, "between 100 and 60000"),
    (f"/stream/{CALL}?min_speech_ms=1500&min_speech_ms=900", 400, "given twice"),
    (f"/stream/{CALL}?minspeech=1500", 400, "unknown query parameter 'minspeech'"),
    (f"/stream/{CALL}?rate", 400, "malformed query"),
    (f"/stream/{CALL}?amd=maybe", 400, "query parameter amd: 'maybe' is not a valid bool"),
    (f"/stream/{CALL}?amd_greting=100", 400, "unknown query parameter 'amd_greting'"),
    (f"/stream/{CALL}?amd_greeting=1.5s", 400, "amd_greeting: '1.5s' is not a valid int"),
    (f"/stream/{CALL}?amd_min_word_length=0", 400, "amd_min_word_length: 0 must be between 10 and 5000"),
    (f"/stream/{CALL}?replay=perhaps", 400, "query parameter replay: 'perhaps' is not a valid bool"),
])
def test_bad_requests_are_refused_with_what_and_how_to_fix(target: str, status: int, words: str) -> None:
    error = _refused(target)
    assert error.status == status and words in str(error)


def test_token_by_query_or_authorization_header() -> None:
    settings = Settings().replace(**{"audio_server.token": "t0k"})
    assert parse_stream_request(f"/stream/{CALL}?token=t0k", settings).call == CALL
    assert parse_stream_request(f"/stream/{CALL}", settings, {"Authorization": "Bearer t0k"}).call == CALL
    assert parse_stream_request(f"/stream/{CALL}", settings, {"Authorization": "t0k"}).call == CALL
    assert _refused(f"/stream/{CALL}", settings).status == 401
    assert _refused(f"/stream/{CALL}?token=nope", settings).status == 403
    assert _refused(f"/stream/{CALL}", settings, {"Authorization": "Bearer nope"}).status == 403
    # Without a configured token, a token given anyway is accepted and ignored.
    assert parse_stream_request(f"/stream/{CALL}?token=x", SETTINGS).call == CALL


def test_amd_keys_apply_over_the_server_settings() -> None:
    params = parse_stream_request(f"/stream/{CALL}?amd=off&amd_greeting=2000&amd_maximum_number_of_words=4",
                                  Settings().replace(**{"amd.initial_silence": 2000}))
    amd = params.amd.settings
    assert (amd.enabled, amd.greeting, amd.maximum_number_of_words, amd.initial_silence) == (False, 2000, 4, 2000)
    assert parse_stream_request(f"/stream/{CALL}?amd=on", SETTINGS).amd.settings.enabled is True


def test_replay_flag_needs_a_token_when_the_server_is_exposed() -> None:
    assert parse_stream_request(f"/stream/{CALL}?replay=1", SETTINGS).replay is True  # loopback, no token
    assert parse_stream_request(f"/stream/{CALL}", SETTINGS).replay is False
    with_token = Settings().replace(**{"audio_server.token": "t0k"})
    assert parse_stream_request(f"/stream/{CALL}?replay=1&token=t0k", with_token).replay is True
    assert _refused(f"/stream/{CALL}?replay=1&token=nope", with_token).status == 403
    exposed = Settings().replace(**{"audio_server.insecure_no_token": True})
    error = _refused(f"/stream/{CALL}?replay=1", exposed)
    assert error.status == 403 and "replay=1 needs the server's token" in str(error)


def test_too_many_query_fields_are_refused() -> None:
    assert _refused(f"/stream/{CALL}?" + "&".join(f"k{i}=1" for i in range(50))).status == 400


def test_logged_paths_hide_the_token() -> None:
    assert redact(f"/stream/{CALL}?rate=8000&token=s3cret") == f"/stream/{CALL}?rate=8000&token=***"
    assert redact(f"/stream/{CALL}") == f"/stream/{CALL}"
