"""Sans-I/O event routing for the ESL client: by Unique-ID to a call, else by key to handlers, plus outage markers."""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from callbot.esl.protocol import EslEvent
from callbot.robot.esl.commands import check_uuid
from callbot.robot.esl.errors import CHANNEL_GONE, ESL_DISCONNECTED, ESL_RECONNECTED, EslError, synthetic_event

log = logging.getLogger(__name__)

EventCallback = Callable[[EslEvent], None]


def call_safely(fn: Callable[..., None], *args: object) -> None:
    """Run a callback; a broken one is logged and must not kill the greenlet that dispatches."""
    try:
        fn(*args)
    except Exception:
        log.exception("esl callback %r raised", fn)


class EventRouter:
    """Which callback gets an event. ``handlers`` is greenswitch's ``event_handlers`` (key -> list).

    Order: the callback routed for the event's ``Unique-ID``; then handlers registered for its key
    (event name, or subclass for CUSTOM); ``'*'`` only when neither took it.
    """

    def __init__(self, handlers: dict[str, list[EventCallback]], max_routes: int) -> None:
        self.handlers = handlers
        self.max_routes = max_routes
        self._routes: dict[str, EventCallback] = {}

    def add(self, call_uuid: str, callback: EventCallback) -> None:
        """Route a call's events to ``callback`` (replacing an earlier one); raise past ``max_routes``."""
        check_uuid(call_uuid)
        if call_uuid not in self._routes and len(self._routes) >= self.max_routes:
            raise EslError(f"{len(self._routes)} calls already routed (esl.max_routes)")
        self._routes[call_uuid] = callback

    def remove(self, call_uuid: str) -> bool:
        """Stop routing; True if the call was routed."""
        return self._routes.pop(call_uuid, None) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._routes))

    def __len__(self) -> int:
        return len(self._routes)

    def dispatch(self, event: EslEvent) -> None:
        """Hand the event to its call, its key's handlers, or ``'*'``."""
        callback = self._routes.get(event.unique_id or "")
        if callback is not None:
            call_safely(callback, event)
        handlers = self.handlers.get(event.key)
        if not handlers and callback is None:
            handlers = self.handlers.get("*")
            if not handlers:
                log.debug("esl event not routed", extra={"event": event.key, "uuid": event.unique_id})
        for handler in handlers or ():
            call_safely(handler, event)

    def disconnect_markers(self, reason: str) -> list[EslEvent]:
        """ESL_DISCONNECTED for every routed call."""
        return [synthetic_event(ESL_DISCONNECTED, u, Reason=reason) for u in self]

    def reconcile_markers(self, alive: set[str] | None, outage_s: float, error: str = "") -> list[EslEvent]:
        """After a reconnect: CHANNEL_GONE for calls the switch no longer has, ESL_RECONNECTED for the rest.

        ``alive`` None means the switch could not be asked: every call gets ESL_RECONNECTED with
        ``Reconcile-Error``, and the session decides (e.g. with ``uuid_exists``).
        """
        outage = f"{outage_s:.3f}"
        if alive is None:
            return [synthetic_event(ESL_RECONNECTED, u, Outage_Seconds=outage, Reconcile_Error=error) for u in self]
        return [synthetic_event(ESL_RECONNECTED, u, Outage_Seconds=outage) if u in alive else
                synthetic_event(CHANNEL_GONE, u, Outage_Seconds=outage,
                                Reason="not in `show channels` after the ESL reconnect")
                for u in self]
