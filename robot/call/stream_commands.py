"""The audio stream commands a call sends: start the stream, and the playback markers that travel in it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from callbot.config import Settings
from callbot.robot.esl.commands import check_uuid


def stream_url(base: str, call_uuid: str, settings: Settings, lang: str | None = None) -> str:
    """``ws://host:port/stream/<uuid>?rate=..&min_speech_ms=..&bridge_ms=..[&amd=on][&lang=..][&token=..]``
    (DESIGN section 2); ``lang`` is the scenario's language, which the audio server's speech
    recognition uses; ``amd=on`` when the robot acts on AMD, so it never depends on a server default."""
    query: dict[str, Any] = {"rate": settings.robot.stream_rate, "min_speech_ms": settings.bargein.min_speech_ms,
                             "bridge_ms": settings.bargein.bridge_ms}
    if settings.robot.act_on_amd:
        query["amd"] = "on"
    if lang:
        query["lang"] = lang
    if settings.audio_server.token:
        query["token"] = settings.audio_server.token
    return f"{base.rstrip('/')}/stream/{check_uuid(call_uuid)}?{urlencode(query)}"


def playback_marker_command(call_uuid: str, state: str, file: str | None = None, text: str | None = None) -> str:
    """``uuid_audio_stream U send_text '{"type":"playback","state":S[,"file":F][,"text":T]}'`` (DESIGN section 2).

    send_text strips ``'`` and eats backslashes, so the text loses ``'``, ``\\`` and ``"``."""
    body: dict[str, Any] = {"type": "playback", "state": state}
    if file is not None:
        body["file"] = file
    if text:
        body["text"] = " ".join(text.replace("'", " ").replace("\\", " ").replace('"', " ").split())
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return f"uuid_audio_stream {check_uuid(call_uuid)} send_text '{payload}'"
