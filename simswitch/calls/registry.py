"""Every call of the switch: the live ones, and the finished ones kept for their ground truth."""

from __future__ import annotations

import collections
from typing import Callable

from callbot.simswitch.calls.channel import Channel
from callbot.simswitch.calls.truth import CallTruth


class CallRegistry:
    """Calls by uuid, the session counters of ``status``, and the bound on finished calls kept."""

    def __init__(self, max_finished: int, on_add: Callable[[], None] = lambda: None) -> None:
        self.calls: dict[str, Channel] = {}
        self.live: dict[str, Channel] = {}
        self.max_finished = max_finished
        self.sessions_since_start = 0
        self.peak_sessions = 0
        self._finished: collections.deque[str] = collections.deque()
        self._session_id = 0
        self._on_add = on_add

    def next_session_id(self) -> int:
        self._session_id += 1
        return self._session_id

    def add(self, channel: Channel) -> None:
        self.calls[channel.uuid] = channel
        self.live[channel.uuid] = channel
        self.sessions_since_start += 1
        self.peak_sessions = max(self.peak_sessions, len(self.live))
        self._on_add()

    def gone(self, uuid: str) -> Channel | None:
        """The channel was destroyed: no longer live; past ``max_finished`` the oldest truths go."""
        channel = self.live.pop(uuid, None)
        self._finished.append(uuid)
        while len(self._finished) > self.max_finished:
            self.calls.pop(self._finished.popleft(), None)
        return channel

    def up(self, uuid: str) -> Channel | None:
        """A channel that is up (a hung-up one finishing its teardown counts as gone)."""
        channel = self.live.get(uuid)
        return None if channel is None or channel.hungup else channel

    def truth(self, uuid: str) -> CallTruth:
        """The ground truth of a call (live or finished); KeyError if unknown."""
        return self.calls[uuid].truth
