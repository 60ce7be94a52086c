"""What a call session works with and produces: the switch interface, the call record, stream commands."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol
from urllib.parse import urlencode

from callbot.config import Settings
from callbot.esl.protocol import EslEvent
from callbot.robot.esl.commands import check_uuid
from callbot.robot.scenario.loader import Step
from callbot.robot.call.timeline import Timeline


class Switch(Protocol):
    """What a session needs from the ESL client (robot.esl_client.EslClient has it)."""

    def api(self, cmd: str, timeout: float | None = None) -> str: ...
    def bgapi_async(self, cmd: str, timeout: float | None = None) -> tuple[str, Any]: ...
    def route(self, call_uuid: str, callback: Callable[[EslEvent], None]) -> None: ...
    def unroute(self, call_uuid: str) -> None: ...


class CallEnded(Exception):
    """The channel is gone (either side hung up, or it never connected)."""


class MachineAnswered(Exception):
    """AMD said machine and the robot acts on AMD: leave the voicemail or hang up."""


@dataclass
class Playing:
    """The prompt on the channel right now."""

    step: Step
    file: str
    break_sent: bool = False
    stopped: bool = False
    status: str | None = None
    played_ms: int | None = None


@dataclass
class CallRecord:
    """What happened on one call: the outcome plus the full timeline (robot.report builds reports from it)."""

    call_uuid: str
    destination: str
    scenario: str
    timeline: Timeline
    disposition: str | None = None
    amd: str | None = None
    hangup_cause: str | None = None
    hangup_by: str | None = None  # robot | callee | switch
    replies: list[dict[str, Any]] = field(default_factory=list)  # {step, outcome, text}
    flags: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)


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


def prompt_text_command(call_uuid: str, text: str) -> str:
    """``uuid_audio_stream U send_text '<json>'``: single-quoted so spaces survive (wire facts 1.1)."""
    clean = text.replace("'", "\u2019").replace("\\", " ").replace('"', " ")
    body = json.dumps({"type": "prompt", "text": clean}, separators=(",", ":"), ensure_ascii=False)
    return f"uuid_audio_stream {check_uuid(call_uuid)} send_text '{body}'"
