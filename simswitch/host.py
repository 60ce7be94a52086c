"""What the calls, their media and the ESL side need of the switch: one small Protocol, below them all.

Only ``server.SimSwitch`` composes the parts; the parts know the switch through ``SwitchHost``, so
no module below ``server.py`` imports it, and the imports run one way.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol

from callbot.config import SimSwitchSettings
from callbot.esl.protocol import EslEvent

from callbot.simswitch.clock import SimClock
from callbot.simswitch.esl.event_factory import EventFactory


class SwitchHost(Protocol):
    """The switch as its parts see it: settings, the clock, the event factory, and three services."""

    settings: SimSwitchSettings
    clock: SimClock
    events: EventFactory
    on_event_queued: Callable[[], None] | None
    on_media_work: Callable[[int], None] | None

    def publish(self, event: EslEvent) -> None:
        """Offer an event to every ESL listener."""

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a background task until it ends (cancelled at stop)."""

    def on_channel_gone(self, uuid: str) -> None:
        """A channel was destroyed: forget it as live, end its ``myevents`` sockets, write its CDR."""
