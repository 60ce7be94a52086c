"""The dialer's rules, sans-I/O: who may be dialled now, the outcome of a call, what happens to its contact, pacing.

Every function takes the current instant as an argument; none reads a clock, sleeps or touches
the database, so the rules are tested with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from callbot.config import RETRY_OUTCOMES
from callbot.windows import Window, is_open, next_open
from callbot.robot.scenario.intents import OPT_OUT_INTENT

OUTCOMES = ("completed", "opted_out", "machine", "busy", "no_answer", "unallocated", "failed", "interrupted")
RETRIED = RETRY_OUTCOMES
ANSWERED_OUTCOMES = ("completed", "opted_out", "machine")  # "done" contacts: final after an answer
BUSY_CAUSES = frozenset({"USER_BUSY"})
NO_ANSWER_CAUSES = frozenset({"NO_ANSWER", "NO_USER_RESPONSE", "NO_ANSWER_TIMEOUT"})  # the last: our ring timeout
UNALLOCATED_CAUSES = frozenset({"UNALLOCATED_NUMBER", "INVALID_NUMBER_FORMAT", "NO_ROUTE_DESTINATION"})
OPT_OUT_DISPOSITIONS = frozenset({"do_not_call", "opted_out", "opt_out"})
LOST_SWITCH_FLAGS = frozenset({"ended_during_esl_outage"})
RECHECK_NO_WINDOW = timedelta(days=1)  # zones that share no window within the horizon: look again this much later


# ---- who may be dialled now -----------------------------------------------------------------

@dataclass(frozen=True)
class Dial:
    """Dial this contact now."""


@dataclass(frozen=True)
class Later:
    """Outside its calling window: due again at ``due``."""

    due: datetime


@dataclass(frozen=True)
class Final:
    """Never dial it: state and reason (``invalid``/``no_timezone``, ``dnc``/``dnc``, ``failed``/``max_attempts``)."""

    state: str
    reason: str


Triage = Dial | Later | Final


def triage(zones: Sequence[ZoneInfo], attempts: int, on_dnc: bool, now: datetime, windows: Sequence[Window],
           max_attempts: int) -> Triage:
    """What to do with a due contact at ``now``: DNC first, then attempts left, time zone, window."""
    if on_dnc:
        return Final("dnc", "dnc")
    if attempts >= max_attempts:
        return Final("failed", "max_attempts")
    if not zones:
        return Final("invalid", "no_timezone")
    if is_open(windows, now, zones):
        return Dial()
    opens = next_open(windows, now, zones)
    return Later(opens if opens is not None else now + RECHECK_NO_WINDOW)


# ---- the outcome of a call ------------------------------------------------------------------

@dataclass(frozen=True)
class CallSummary:
    """What the dialer needs from a call's report (DESIGN section 5 keys, plus ``hangup`` and ``flags``)."""

    answered: bool
    cause: str | None  # hang-up or dial failure cause, upper case
    disposition: str | None
    amd: str | None
    opted_out: bool
    first_audio_s: float | None  # first robot audio (PLAYBACK_START), call seconds from the answer
    length_s: float | None  # last timeline row, call seconds from the answer
    lost_switch: bool
    treated_as_machine: bool | None = None  # what the call did on AMD (None: no record of it; then ``amd`` says)


MACHINE_ACTIONS = frozenset({"hangup", "leave_message"})


def amd_action(row: Mapping[str, Any]) -> bool | None:
    """True when a timeline row says the call acted on a machine, False on a person, None when it says neither.
    A verdict that came after the call had settled (its deadline, an opt-out key) has action ``none``."""
    if row.get("source") != "robot" or row.get("type") not in ("amd_result", "amd_hook"):
        return None
    action = row.get("action", "human" if row.get("type") == "amd_hook" else None)
    return None if action in (None, "none") else action in MACHINE_ACTIONS


def opt_out_row(row: Mapping[str, Any], dtmf: str = "") -> bool:
    """A timeline row that says the callee opted out: the scenario's stop intent, an opt-out row, or a DTMF
    digit among ``dtmf`` (the campaign's opt-out keys)."""
    kind = row.get("type")
    if row.get("source") == "robot" and kind == "reply" and row.get("outcome") == OPT_OUT_INTENT:
        return True
    if kind in ("DTMF", "dtmf"):
        return bool(dtmf) and str(row.get("digit") or "") in dtmf
    return kind in ("opt_out", "opted_out")


def answered_row(row: Mapping[str, Any]) -> bool:
    return (row.get("source") == "switch" and row.get("type") == "CHANNEL_ANSWER") or \
        (row.get("type") == "state" and row.get("state") == "answered")


def first_audio_row(row: Mapping[str, Any]) -> bool:
    return row.get("source") == "switch" and row.get("type") == "PLAYBACK_START"


def summarize(report: Mapping[str, Any], opt_out_dtmf: str = "") -> CallSummary:
    events: Iterable[Mapping[str, Any]] = report.get("events") or []
    answered = opted = False
    first_audio = length = machine = None
    for row in events:
        answered = answered or answered_row(row)
        opted = opted or opt_out_row(row, opt_out_dtmf)
        machine = machine if machine is not None else amd_action(row)
        if first_audio is None and first_audio_row(row) and row.get("t") is not None:
            first_audio = float(row["t"])
        if row.get("t") is not None:
            length = float(row["t"]) if length is None else max(length, float(row["t"]))
    hangup = report.get("hangup") or {}
    disposition = report.get("disposition")
    cause = hangup.get("cause") or (None if answered else disposition)
    flags = set(report.get("flags") or ())
    return CallSummary(answered=answered, cause=cause.upper() if cause else None, disposition=disposition,
                       amd=report.get("amd"), opted_out=opted or (disposition or "") in OPT_OUT_DISPOSITIONS,
                       first_audio_s=first_audio, length_s=length, lost_switch=bool(flags & LOST_SWITCH_FLAGS),
                       treated_as_machine=machine)


def outcome_of(call: CallSummary, voicemail_disposition: str | None = "voicemail_left") -> str:
    """The attempt's outcome (DESIGN section 8 table).

    ``voicemail_disposition``: the disposition that says a message was left (a machine that ends with it is
    ``completed``); None for a scenario that hangs up on machines, whose machines are all ``machine`` (retried),
    since their disposition is the voicemail table's too."""
    if call.answered:
        if call.opted_out:
            return "opted_out"
        if call.lost_switch:
            return "interrupted"
        # the decision the call acted on, not a verdict that came once it had settled (a late one, at a speed
        # where the audio server lags the switch, said machine to people who then heard the whole script)
        machine = call.amd == "machine" if call.treated_as_machine is None else call.treated_as_machine
        if machine and (voicemail_disposition is None or call.disposition != voicemail_disposition):
            return "machine"
        if call.disposition == "error":
            return "failed"
        return "completed"
    cause = call.cause or ""
    if cause in BUSY_CAUSES:
        return "busy"
    if cause in NO_ANSWER_CAUSES:
        return "no_answer"
    if cause in UNALLOCATED_CAUSES:
        return "unallocated"
    if call.lost_switch:
        return "interrupted"
    return "failed"


def is_abandoned(call: CallSummary, abandon_after_s: float) -> bool:
    """Answered, and the robot's first audio came later than ``abandon_after_s`` (or never, in a longer call)."""
    if not call.answered:
        return False
    if call.first_audio_s is not None:
        return call.first_audio_s > abandon_after_s
    return (call.length_s or 0.0) > abandon_after_s


# ---- what happens to the contact ------------------------------------------------------------

@dataclass(frozen=True)
class ContactChange:
    state: str
    next_due_at: datetime | None
    reason: str | None


def after_attempt(outcome: str, attempts: int, max_attempts: int, retry_after: Mapping[str, float],
                  now: datetime) -> ContactChange:
    """The contact's state after its ``attempts``-th attempt ended with ``outcome`` at ``now``."""
    if outcome in ("completed", "opted_out"):
        return ContactChange("done", None, outcome)
    if outcome == "unallocated":
        return ContactChange("failed", None, outcome)
    if outcome not in RETRIED:
        raise ValueError(f"unknown outcome {outcome!r}; outcomes are {', '.join(OUTCOMES)}")
    if attempts >= max_attempts:
        return ContactChange("failed", None, "max_attempts")
    return ContactChange("pending", now + timedelta(seconds=float(retry_after.get(outcome, 0.0))), outcome)


# ---- pacing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pace:
    """May a call start now; if so, the next campaign-wide slot; if not, how long until it may."""

    allowed: bool
    next_slot: datetime
    wait_s: float


def pace(now: datetime, next_slot: datetime | None, cps: float) -> Pace:
    """Originates spaced at least 1/cps apart, campaign-wide (the slot is shared by all runners); no bursts."""
    if next_slot is not None and next_slot > now:
        return Pace(False, next_slot, (next_slot - now).total_seconds())
    return Pace(True, now + timedelta(seconds=1.0 / cps), 0.0)


def capacity(in_flight: int, max_concurrent: int) -> int:
    """Calls that may start now under the campaign-wide ``max_concurrent``."""
    return max(0, max_concurrent - in_flight)
