"""What can happen to a call, as classes: the call dispatches on them (never on free-text types).

Switch events are translated from ESL by :mod:`callbot.robot.call.inbound`; audio events are the
schema classes of :mod:`callbot.events` as they are. The shell adds the replies to the commands
the call asked for, and :class:`Deadline` when the time the call asked to be woken at has come.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbot.events import AudioEvent


class SwitchEvent:
    """Base of the events the switch reports about the channel; ``switch_us`` is its own timestamp."""

    switch_us: int | None


@dataclass(frozen=True)
class Answered(SwitchEvent):
    """CHANNEL_ANSWER of the originated leg."""

    switch_us: int | None = None


@dataclass(frozen=True)
class Parked(SwitchEvent):
    """CHANNEL_PARK: only from here on does a ``uuid_broadcast`` play (the real switch drops one sent earlier)."""

    switch_us: int | None = None


@dataclass(frozen=True)
class PlaybackStarted(SwitchEvent):
    """PLAYBACK_START of a file (its path as the robot sent it)."""

    path: str
    switch_us: int | None = None


@dataclass(frozen=True)
class PlaybackStopped(SwitchEvent):
    """PLAYBACK_STOP: ``status`` done|break; ``reported_ms`` is ``variable_playback_ms`` (the read-ahead)."""

    path: str
    status: str | None
    reported_ms: int | None
    switch_us: int | None = None


@dataclass(frozen=True)
class HungUp(SwitchEvent):
    """CHANNEL_HANGUP, or CHANNEL_GONE (synthetic: the call ended while the ESL link was down)."""

    cause: str | None
    gone: bool = False
    switch_us: int | None = None


@dataclass(frozen=True)
class HangupComplete(SwitchEvent):
    """CHANNEL_HANGUP_COMPLETE: the channel has said all it will say."""

    switch_us: int | None = None


@dataclass(frozen=True)
class MediaBugStarted(SwitchEvent):
    """MEDIA_BUG_START: the audio stream's sample 0 is taken now."""

    switch_us: int | None = None


@dataclass(frozen=True)
class StreamConnected(SwitchEvent):
    """``mod_audio_stream::connect``: the audio server accepted the WebSocket."""

    switch_us: int | None = None


@dataclass(frozen=True)
class StreamLost(SwitchEvent):
    """``mod_audio_stream::disconnect`` or ``::error``: the stream is gone (or never came up)."""

    name: str
    body: str | None
    switch_us: int | None = None


@dataclass(frozen=True)
class Dtmf(SwitchEvent):
    """A DTMF digit from the callee."""

    digit: str
    switch_us: int | None = None


@dataclass(frozen=True)
class OtherSwitchEvent(SwitchEvent):
    """Any other event of the channel: kept in the timeline, no decision depends on it."""

    name: str
    switch_us: int | None = None


@dataclass(frozen=True)
class AudioTextIgnored(SwitchEvent):
    """A ``mod_audio_stream::json`` body that is not our schema, or names another call."""

    problem: str
    body: str
    switch_us: int | None = None


@dataclass(frozen=True)
class EslDown:
    """The shell lost the Event Socket; it is reconnecting."""

    reason: str


@dataclass(frozen=True)
class EslUp:
    """The Event Socket is back (after ``outage_s``) and the call's channel still exists."""

    outage_s: float | None = None


@dataclass(frozen=True)
class OriginateResult:
    """The BACKGROUND_JOB body of the originate (``+OK <uuid>`` or ``-ERR CAUSE``), or ``error`` when the job was lost."""

    body: str | None
    error: str | None = None


@dataclass(frozen=True)
class ApiReply:
    """The switch's answer to the api command the call asked for under ``what``."""

    what: str
    reply: str


@dataclass(frozen=True)
class ApiFailed:
    """An api command could not be sent or got no answer: ``link_down`` when the ESL link is gone."""

    what: str
    error: str
    link_down: bool


@dataclass(frozen=True)
class Deadline:
    """The time the call asked to be woken at (:meth:`Call.next_deadline`) has come."""




@dataclass(frozen=True)
class ShellError:
    """The shell could not go on with the call (a bug, the ESL client gone): record it and end the call."""

    error: str
