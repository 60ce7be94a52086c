"""What a call produces: its record (outcome plus timeline), and the prompt on the channel right now."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from callbot.robot.call.timeline import Timeline
from callbot.robot.scenario.loader import Step


@dataclass
class Playing:
    """The prompt on the channel right now, from the ``uuid_broadcast`` to its PLAYBACK_STOP."""

    step: Step
    path: str
    started_at: float | None = None  # call clock at PLAYBACK_START
    started_us: int | None = None  # the switch's stamp of PLAYBACK_START
    break_sent: bool = False
    paused: bool = False  # pause mode: uuid_fileman pause sent at the caller's onset, not yet resumed
    stopped: bool = False


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
    scenario_completed: bool = False  # the scenario ran to an end (a final step, or the voicemail message)
