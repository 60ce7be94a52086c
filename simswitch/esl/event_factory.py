"""Builds ESL events with FreeSWITCH's header order: standard headers, channel data, variables.

Order as captured from FreeSWITCH 1.10.12: for CUSTOM events ``Event-Subclass`` comes first, then
``Event-Name``, Core-UUID, hostnames, the three dates, the calling file/function/line and a global
``Event-Sequence``; then event headers that FreeSWITCH adds before the channel data (e.g.
``Media-Bug-Function``), the channel data (``Channel-*``, ``Unique-ID``, ``Caller-*``), the
``variable_*`` block for the event types that carry it, and finally the event's own headers.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass
from typing import Iterable, Protocol

from callbot.esl.protocol import EslEvent

from callbot.simswitch.clock import SimClock

Headers = Iterable[tuple[str, str]]


class ChannelData(Protocol):
    """What an event needs of the channel it is about (``calls.channel.Channel`` has it)."""

    variables: dict[str, str]

    def data_headers(self) -> list[tuple[str, str]]:
        """Channel-*, Unique-ID and Caller-* headers, in FreeSWITCH's order."""

# switch_channel_event_set_extended_data: only these carry variable_* (verbose_events off)
_EXTENDED = {
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_PARK",
    "CHANNEL_UNPARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "PLAYBACK_START", "PLAYBACK_STOP", "CUSTOM", "CHANNEL_DESTROY",
    "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CHANNEL_ORIGINATE", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
}

# Where FreeSWITCH fires each event from (Event-Calling-File/Function/Line-Number).
CALLERS = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3507),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3562),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1228),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
    "MEDIA_BUG_START": ("switch_core_media_bug.c", "switch_core_media_bug_add", 1014),
    "MEDIA_BUG_STOP": ("switch_core_media_bug.c", "switch_core_media_bug_close", 1164),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "CUSTOM": ("mod_audio_stream.c", "responseHandler", 16),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677),
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
}


@dataclass(frozen=True)
class SwitchIdentity:
    """Who the emulated switch says it is in every event."""

    core_uuid: str
    hostname: str = "simswitch"
    ipv4: str = "127.0.0.1"
    ipv6: str = "::1"


class EventFactory:
    """Stamps events with the standard headers and a global, monotonically rising Event-Sequence."""

    def __init__(self, clock: SimClock, identity: SwitchIdentity | None = None) -> None:
        self.clock = clock
        self.identity = identity or SwitchIdentity(str(uuidlib.uuid4()))
        self._sequence = 0

    def make(
        self,
        name: str,
        channel: ChannelData | None = None,
        *,
        subclass: str | None = None,
        pre: Headers = (),
        post: Headers = (),
        body: str | None = None,
        at: float | None = None,
    ) -> EslEvent:
        """A complete event; ``pre`` headers go before the channel data, ``post`` after it.

        ``at`` is the virtual time the event belongs to (a media tick's time), default now."""
        self._sequence += 1
        us = self.clock.epoch_us(at)
        secs = us // 1_000_000
        file, func, line = CALLERS.get(subclass and "CUSTOM" or name, ("switch_event.c", "switch_event_fire", 0))
        ident = self.identity
        headers: list[tuple[str, str]] = [("Event-Subclass", subclass)] if subclass else []
        headers += [
            ("Event-Name", name),
            ("Core-UUID", ident.core_uuid),
            ("FreeSWITCH-Hostname", ident.hostname),
            ("FreeSWITCH-Switchname", ident.hostname),
            ("FreeSWITCH-IPv4", ident.ipv4),
            ("FreeSWITCH-IPv6", ident.ipv6),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs))),
            ("Event-Date-Timestamp", str(us)),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self._sequence)),
        ]
        headers += list(pre)
        if channel is not None:
            headers += channel.data_headers()
            if name in _EXTENDED:
                headers += [("variable_" + k, v) for k, v in channel.variables.items() if v != ""]
        headers += list(post)
        return EslEvent(headers, body)
