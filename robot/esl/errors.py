"""What the ESL client tells its callers: its errors, and the synthetic marker events it routes to calls.

Markers carry ``Callbot-Synthetic: true`` and the call's ``Unique-ID``, so a call session logs
them like switch events:

- ``ESL_DISCONNECTED``: the connection dropped; events may be missed until the next marker.
- ``ESL_RECONNECTED``: reconnected, and ``show channels`` still lists the call (``Outage-Seconds``;
  ``Reconcile-Error`` if the switch could not be asked).
- ``CHANNEL_GONE``: reconnected, and the call no longer exists (it ended during the outage).
"""

from __future__ import annotations

from greenswitch.esl import NotConnectedError

from callbot.esl.protocol import EslEvent

ESL_DISCONNECTED = "ESL_DISCONNECTED"
ESL_RECONNECTED = "ESL_RECONNECTED"
CHANNEL_GONE = "CHANNEL_GONE"
SYNTHETIC_HEADER = "Callbot-Synthetic"


class EslError(Exception):
    """Base of the client's errors."""


class EslConnectError(EslError, NotConnectedError):
    """The Event Socket could not be reached, or did not greet us as one."""


class EslAuthError(EslError, ValueError):
    """The switch refused the password (greenswitch raises ValueError here too)."""


class EslTimeout(EslError):
    """A command or job got no answer in time."""


class EslDisconnected(EslError, NotConnectedError):
    """The connection dropped (or was never ready) before the answer came."""


class EslCommandError(EslError):
    """The switch answered a plain command with ``-ERR``."""


def synthetic_event(name: str, call_uuid: str, **headers: str) -> EslEvent:
    """A marker event for a routed call, shaped like a switch event so sessions log it the same way."""
    pairs = [("Event-Name", name), ("Unique-ID", call_uuid), (SYNTHETIC_HEADER, "true")]
    return EslEvent(pairs + [(k.replace("_", "-"), v) for k, v in headers.items()])
