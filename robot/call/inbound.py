"""ESL events about a call, translated into the call's event classes (pure: no I/O, no clock)."""

from __future__ import annotations

from callbot.esl.protocol import EslEvent
from callbot.events import AudioEvent, EventParseError, parse_event
from callbot.robot.call.events import (
    Answered, AudioTextIgnored, Dtmf, EslDown, EslUp, HangupComplete, HungUp, MediaBugStarted, OtherSwitchEvent,
    Parked, PlaybackStarted, PlaybackStopped, StreamConnected, StreamLost, SwitchEvent,
)
from callbot.robot.esl import errors as markers  # the client's synthetic events around a reconnection


def translate(event: EslEvent, call_uuid: str) -> SwitchEvent | AudioEvent | EslDown | EslUp:
    """The call event an ESL event stands for; audio text that is not our schema (or another call's) is kept as such."""
    stamp = _stamp(event)
    key = event.key
    match key:
        case "mod_audio_stream::json":
            body = event.body or ""
            try:
                call, audio = parse_event(body)
            except EventParseError as exc:
                return AudioTextIgnored(str(exc), body, stamp)
            if call != call_uuid:
                return AudioTextIgnored(f"event for call {call}", body, stamp)
            return audio
        case "CHANNEL_ANSWER":
            return Answered(stamp)
        case "CHANNEL_PARK":
            return Parked(stamp)
        case "PLAYBACK_START":
            return PlaybackStarted(event.get("Playback-File-Path") or "", stamp)
        case "PLAYBACK_STOP":
            played = event.get("variable_playback_ms")
            return PlaybackStopped(event.get("Playback-File-Path") or "", event.get("Playback-Status"),
                                   int(played) if played and played.isdigit() else None, stamp)
        case "CHANNEL_HANGUP" | markers.CHANNEL_GONE:
            return HungUp(event.get("Hangup-Cause") or event.get("Reason"), gone=key == markers.CHANNEL_GONE,
                          switch_us=stamp)
        case "CHANNEL_HANGUP_COMPLETE":
            return HangupComplete(stamp)
        case "MEDIA_BUG_START":
            return MediaBugStarted(stamp)
        case "mod_audio_stream::connect":
            return StreamConnected(stamp)
        case "mod_audio_stream::error" | "mod_audio_stream::disconnect":
            return StreamLost(key, event.body, stamp)
        case "DTMF":
            return Dtmf(event.get("DTMF-Digit") or "", stamp)
        case markers.ESL_DISCONNECTED:
            return EslDown(event.get("Reason") or "connection lost")
        case markers.ESL_RECONNECTED:
            outage = event.get("Outage-Seconds")
            return EslUp(float(outage) if outage else None)
    return OtherSwitchEvent(key, stamp)


def _stamp(event: EslEvent) -> int | None:
    value = event.get("Event-Date-Timestamp")
    return int(value) if value and value.isdigit() else None
