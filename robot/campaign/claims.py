"""Claims with leases: one contact per transaction, campaign-wide pacing, runners' leases, expired-lease reconciliation.

A claim is one short transaction. On PostgreSQL it locks the campaign row (``FOR UPDATE``: the
campaign-wide ``max_concurrent`` and pacing slot are read and written by one claimer at a time)
and takes due contacts with ``FOR UPDATE SKIP LOCKED``, so a contact whose row another
transaction holds is passed over, never waited for or taken twice. On SQLite, where SQLAlchemy
ignores ``skip_locked``, ``BEGIN IMMEDIATE`` takes the database's write lock first and the
contact is taken with a conditional update (``WHERE state = 'pending'``). Either way the attempt
row, with the call uuid the originate will carry, is committed before the originate is sent.
"""

from __future__ import annotations

import os
import socket
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.config import CampaignSettings
from callbot.robot.campaign.numbers import resolve_zones
from callbot.robot.campaign.rules import Dial, Final, Later, after_attempt, capacity, pace, triage
from callbot.windows import Window
from callbot.robot.store.engine import immediate
from callbot.robot.store.models import CallAttempt, Campaign, Contact, Dnc, Runner


@dataclass(frozen=True)
class Claim:
    """A contact this runner now holds, and the attempt row written for it."""

    call_uuid: str
    attempt_id: int
    contact_id: int
    number: str
    attempt_no: int
    dial_string: str
    started_at: datetime


@dataclass(frozen=True)
class ClaimRound:
    claim: Claim | None = None
    examined: int = 0  # due contacts looked at (moved to a later window, or made final)
    paused: bool = False
    full: bool = False  # max_concurrent calls in flight, campaign-wide
    wait_s: float | None = None  # the pacing slot opens in this many seconds


def _locking(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def claim_one(engine: Engine, campaign_id: int, runner_id: str, esl_host: str, now: datetime,
              rules: CampaignSettings, windows: Sequence[Window], max_concurrent: int, cps: float) -> ClaimRound:
    """Claim at most one dialable contact at ``now``; due contacts outside their window get their next due time."""
    pg = _locking(engine)
    with Session(immediate(engine)) as s, s.begin():
        query = select(Campaign).where(Campaign.id == campaign_id)
        campaign = s.scalar(query.with_for_update() if pg else query)
        if campaign is None or campaign.paused:
            return ClaimRound(paused=True)
        in_flight = s.scalar(select(func.count()).select_from(CallAttempt).where(
            CallAttempt.campaign_id == campaign_id, CallAttempt.ended_at.is_(None))) or 0
        full = capacity(in_flight, max_concurrent) == 0 or _over_share(s, campaign_id, runner_id, now, max_concurrent)
        slot = pace(now, campaign.next_dial_at, cps)
        due = (select(Contact).where(Contact.campaign_id == campaign_id, Contact.state == "pending",
                                     or_(Contact.next_due_at.is_(None), Contact.next_due_at <= now))
               .order_by(Contact.next_due_at.asc().nulls_first(), Contact.id).limit(rules.claim_batch))
        contacts = list(s.scalars(due.with_for_update(skip_locked=True, of=Contact) if pg else due))
        blocked = set(s.scalars(select(Dnc.number).where(Dnc.number.in_([c.number for c in contacts])))) \
            if contacts else set()
        examined = 0
        for contact in contacts:
            decision = triage(resolve_zones(contact.zones, rules.default_tz), contact.attempts,
                              contact.number in blocked, now, windows, rules.max_attempts)
            match decision:
                case Final(state=state, reason=reason):
                    contact.state, contact.reason = state, reason
                    examined += 1
                case Later(due=when):
                    contact.next_due_at = when
                    examined += 1
                case Dial() if full or not slot.allowed:  # someone to call, but not yet
                    return ClaimRound(examined=examined, full=full, wait_s=None if full else slot.wait_s)
                case Dial():
                    claim = _take(s, campaign, contact, runner_id, esl_host, now, rules, pg)
                    if claim is None:
                        continue
                    campaign.next_dial_at = slot.next_slot
                    if campaign.first_run_at is None:
                        campaign.first_run_at = now
                    return ClaimRound(claim=claim, examined=examined)
        return ClaimRound(examined=examined)


def _over_share(s: Session, campaign_id: int, runner_id: str, now: datetime, max_concurrent: int) -> bool:
    """With several live runners, each keeps to its share of ``max_concurrent`` (rounded up), so that the
    work is shared rather than taken by whichever started first."""
    runners = s.scalar(select(func.count()).select_from(Runner).where(
        Runner.campaign_id == campaign_id, Runner.stopped_at.is_(None), Runner.lease_expires_at > now)) or 1
    if runners < 2:
        return False
    mine = s.scalar(select(func.count()).select_from(CallAttempt).where(
        CallAttempt.campaign_id == campaign_id, CallAttempt.ended_at.is_(None), CallAttempt.runner_id == runner_id))
    return (mine or 0) >= -(-max_concurrent // runners)


def _take(s: Session, campaign: Campaign, contact: Contact, runner_id: str, esl_host: str, now: datetime,
          rules: CampaignSettings, pg: bool) -> Claim | None:
    attempt_no = contact.attempts + 1
    if not pg:  # SQLite: the conditional update is the claim (the write lock is already ours)
        taken = s.execute(update(Contact).where(Contact.id == contact.id, Contact.state == "pending")
                          .values(state="in_progress", attempts=attempt_no)
                          .execution_options(synchronize_session=False)).rowcount
        if taken != 1:
            return None
        s.expire(contact)
    else:
        contact.state, contact.attempts = "in_progress", attempt_no
    call_uuid = str(uuidlib.uuid4())
    dial = rules.dial_template.replace("{number}", contact.number)
    attempt = CallAttempt(call_uuid=call_uuid, contact_id=contact.id, campaign_id=campaign.id, attempt_no=attempt_no,
                          runner_id=runner_id, esl_host=esl_host, lease_expires_at=now + timedelta(seconds=rules.lease_s),
                          started_at=now, destination=dial, scenario=campaign.scenario, flags=[], intents=[],
                          barge_ins=[], abandoned=False, recorded_at=now)
    s.add(attempt)
    s.flush()
    return Claim(call_uuid, attempt.id, contact.id, contact.number, attempt_no, dial, now)


# ---- leases ---------------------------------------------------------------------------------

def renew(engine: Engine, campaign_id: int, runner_id: str, esl_host: str, call_uuids: Sequence[str],
          now: datetime, lease_s: float) -> None:
    """Extend the leases of this runner's live calls, and its own."""
    until = now + timedelta(seconds=lease_s)
    with Session(immediate(engine)) as s, s.begin():
        if call_uuids:
            s.execute(update(CallAttempt).where(CallAttempt.call_uuid.in_(list(call_uuids)),
                                                CallAttempt.ended_at.is_(None)).values(lease_expires_at=until))
        _heartbeat(s, campaign_id, runner_id, esl_host, now, until)


def register_runner(engine: Engine, campaign_id: int, runner_id: str, esl_host: str, now: datetime,
                    lease_s: float, clock: dict | None) -> None:
    """This runner works the campaign (a write: it also proves the database takes writes before any dial)."""
    with Session(immediate(engine)) as s, s.begin():
        _heartbeat(s, campaign_id, runner_id, esl_host, now, now + timedelta(seconds=lease_s), started=True)
        campaign = s.get(Campaign, campaign_id)
        assert campaign is not None
        campaign.clock = clock


def set_clock(engine: Engine, campaign_id: int, clock: dict | None) -> None:
    """The run's clock, for `campaign status` (None: the wall clock)."""
    with Session(immediate(engine)) as s, s.begin():
        s.execute(update(Campaign).where(Campaign.id == campaign_id).values(clock=clock))


def unregister_runner(engine: Engine, campaign_id: int, runner_id: str, now: datetime, clock: dict | None) -> None:
    with Session(immediate(engine)) as s, s.begin():
        s.execute(update(Runner).where(Runner.campaign_id == campaign_id, Runner.runner_id == runner_id)
                  .values(lease_expires_at=now, stopped_at=now))
        campaign = s.get(Campaign, campaign_id)
        if campaign is not None:
            campaign.clock = clock


def _heartbeat(s: Session, campaign_id: int, runner_id: str, esl_host: str, now: datetime, until: datetime,
               started: bool = False) -> None:
    row = s.scalar(select(Runner).where(Runner.campaign_id == campaign_id, Runner.runner_id == runner_id))
    if row is None:
        s.add(Runner(campaign_id=campaign_id, runner_id=runner_id, esl_host=esl_host, started_at=now,
                     lease_expires_at=until))
        return
    row.lease_expires_at, row.esl_host = until, esl_host
    if started:
        row.started_at, row.stopped_at = now, None


# ---- reconciliation -------------------------------------------------------------------------

def default_runner_id() -> str:
    """``HOST:PID``: unique while the process lives, and tells a later process on the host that it died."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_process_gone(runner_id: str | None) -> bool:
    """A ``HOST:PID`` runner id of this host whose process no longer exists (its attempts need no lease wait)."""
    host, _, pid = (runner_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


@dataclass(frozen=True)
class InFlight:
    """An attempt on our switch that no call of this process holds: a dead runner's, or another live one's."""

    call_uuid: str
    runner_id: str | None
    lease_expires_at: datetime | None

    def orphaned(self, now: datetime, runner_gone: Callable[[str | None], bool]) -> bool:
        """Its lease expired, or its runner is known to be gone (then waiting for the lease is pointless)."""
        return self.lease_expires_at is None or self.lease_expires_at < now or runner_gone(self.runner_id)


def in_flight(engine: Engine, campaign_id: int, esl_host: str, exclude: Sequence[str] = ()) -> list[InFlight]:
    """Attempts in flight on OUR switch besides ``exclude`` (other switches' are theirs to reconcile)."""
    with Session(engine) as s:
        rows = s.execute(select(CallAttempt.call_uuid, CallAttempt.runner_id, CallAttempt.lease_expires_at).where(
            CallAttempt.campaign_id == campaign_id, CallAttempt.ended_at.is_(None), CallAttempt.esl_host == esl_host))
        skip = set(exclude)
        return [InFlight(u, r, t) for u, r, t in rows if u not in skip]


def close_orphan(engine: Engine, call_uuid: str, found: str, now: datetime, rules: CampaignSettings) -> bool:
    """Record a reconciled attempt as ``interrupted`` (``found``: ``gone``, or ``hung_up`` when it was still up
    and we ended it) and reschedule its contact; False if another runner closed it first."""
    with Session(immediate(engine)) as s, s.begin():  # the row lock: two reconcilers, one close
        attempt = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call_uuid).with_for_update())
        if attempt is None or attempt.ended_at is not None:
            return False
        attempt.ended_at, attempt.outcome, attempt.reconciled = now, "interrupted", found
        attempt.disposition = attempt.disposition or f"reconciled_{found}"
        attempt.flags = [*(attempt.flags or []), f"reconciled_{found}"]
        contact = s.get(Contact, attempt.contact_id) if attempt.contact_id is not None else None
        if contact is not None and contact.state == "in_progress":
            change = after_attempt("interrupted", contact.attempts, rules.max_attempts, rules.retry_after, now)
            contact.state, contact.next_due_at, contact.reason = change.state, change.next_due_at, change.reason
            contact.last_outcome = "interrupted"
        return True
