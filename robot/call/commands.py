"""What a call asks its shell to send: ESL commands, each tagged so its reply finds its way back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Api:
    """``api <command>``; the shell answers with :class:`~callbot.robot.call.events.ApiReply` (or ApiFailed) tagged ``what``."""

    what: str
    command: str


@dataclass(frozen=True)
class Bgapi:
    """``bgapi <command>``; the job's result comes back as :class:`~callbot.robot.call.events.OriginateResult`."""

    what: str
    command: str
    timeout_s: float


Command = Api | Bgapi
