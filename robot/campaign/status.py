"""`campaign status` and `campaign report`: counts that partition the contacts, outcome totals, every attempt.

The time used is the campaign's own (robot.campaign.times.campaign_now): the wall clock, or the
virtual clock of its last simulated run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.config import CampaignSettings
from callbot.robot.campaign.contacts import get_campaign
from callbot.robot.campaign.numbers import resolve_zones
from callbot.robot.campaign.rules import OUTCOMES, Dial, Final, Later, triage
from callbot.robot.campaign.times import campaign_now, iso
from callbot.windows import parse_windows
from callbot.robot.store.models import CallAttempt, Campaign, Contact, Dnc, Runner, Transcript

AMD_RESULTS = ("human", "machine", "notsure")
REPORT_COLUMNS = ("contact", "number", "attempt", "runner", "esl_host", "call_uuid", "started_at", "answered_at",
                  "ended_at", "outcome", "abandoned", "disposition", "amd", "hangup_cause", "barge_ins", "transcript")


@dataclass(frozen=True)
class Waiting:
    """Contacts not final: due now, due later (with the earliest instant), in calls."""

    pending: int
    scheduled: int
    in_progress: int
    next_due: datetime | None
    becoming_final: Counter  # due contacts that the next claim will make final (dnc, invalid, failed)


def waiting(session: Session, campaign: Campaign, rules: CampaignSettings, now: datetime) -> Waiting:
    """Classify the campaign's non-final contacts at ``now`` with the dialer's own rules."""
    windows = parse_windows(rules.windows)
    blocked_numbers = select(Dnc.number)
    rows = session.execute(select(Contact.zones, Contact.attempts, Contact.next_due_at, Contact.number.in_(
        blocked_numbers)).where(Contact.campaign_id == campaign.id, Contact.state == "pending"))
    pending = scheduled = 0
    next_due: datetime | None = None
    becoming: Counter = Counter()
    verdicts: dict[tuple[tuple[str, ...], int, bool], Any] = {}
    for zones, attempts, due_at, on_dnc in rows:
        if due_at is not None and due_at > now:
            scheduled += 1
            next_due = due_at if next_due is None else min(next_due, due_at)
            continue
        key = (tuple(zones or ()), attempts, bool(on_dnc))
        if key not in verdicts:
            verdicts[key] = triage(resolve_zones(key[0], rules.default_tz), attempts, bool(on_dnc), now, windows,
                                   rules.max_attempts)
        decision = verdicts[key]
        match decision:
            case Dial():
                pending += 1
                next_due = now if next_due is None else min(next_due, now)
            case Later(due=when):
                scheduled += 1
                next_due = when if next_due is None else min(next_due, when)
            case Final(state=state):
                becoming[state] += 1
    in_progress = session.scalar(select(func.count()).select_from(Contact).where(
        Contact.campaign_id == campaign.id, Contact.state == "in_progress")) or 0
    return Waiting(pending, scheduled, in_progress, next_due, becoming)


def runner_live(session: Session, campaign_id: int, now: datetime) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Runner).where(
        Runner.campaign_id == campaign_id, Runner.stopped_at.is_(None), Runner.lease_expires_at > now)))


def status(engine: Engine, name: str, rules_for: Any) -> dict[str, Any]:
    """The DESIGN section 8 ``campaign status --json`` document. ``rules_for(campaign)`` gives its settings."""
    with Session(engine) as s:
        campaign = get_campaign(s, name)
        rules: CampaignSettings = rules_for(campaign)
        now = campaign_now(campaign.clock)
        states = dict(s.execute(select(Contact.state, func.count()).where(Contact.campaign_id == campaign.id)
                                .group_by(Contact.state)).all())
        wait = waiting(s, campaign, rules, now)
        total = sum(states.values())
        attempts = s.execute(select(CallAttempt.outcome, CallAttempt.amd, CallAttempt.abandoned,
                                    CallAttempt.answered_at).where(CallAttempt.campaign_id == campaign.id)).all()
        live = runner_live(s, campaign.id, now)
    outcomes = {o: 0 for o in OUTCOMES}
    amd = {r: 0 for r in AMD_RESULTS}
    abandoned = abandoned_person = answered_person = 0
    for outcome, verdict, was_abandoned, answered_at in attempts:
        if outcome in outcomes:
            outcomes[outcome] += 1
        if verdict in amd:
            amd[verdict] += 1
        abandoned += bool(was_abandoned)
        if answered_at is not None and verdict != "machine":
            answered_person += 1
            abandoned_person += bool(was_abandoned)
    contacts = {
        "total": total,
        "pending": wait.pending,
        "scheduled": wait.scheduled,
        "in_progress": wait.in_progress,
        "done": states.get("done", 0),
        "failed": states.get("failed", 0) + wait.becoming_final.get("failed", 0),
        "dnc": states.get("dnc", 0) + wait.becoming_final.get("dnc", 0),
        "invalid": states.get("invalid", 0) + wait.becoming_final.get("invalid", 0),
    }
    not_final = wait.pending + wait.scheduled + wait.in_progress
    if campaign.paused:
        state = "paused"
    elif total and not not_final:
        state = "done"
    elif live:
        state = "running"
    elif campaign.first_run_at is None and not attempts:
        state = "draft"
    else:
        state = "idle"
    return {
        "name": campaign.name,
        "state": state,
        "contacts": contacts,
        "attempts": len(attempts),
        "outcomes": outcomes,
        "amd": amd,
        "abandoned": abandoned,
        "abandon_rate": round(abandoned_person / answered_person, 6) if answered_person else 0.0,
        "next_due": iso(wait.next_due) if (wait.pending or wait.scheduled) else None,
    }


def report(engine: Engine, name: str) -> dict[str, Any]:
    """Every attempt of the campaign, oldest first (DESIGN section 8 ``campaign report --json``)."""
    with Session(engine) as s:
        campaign = get_campaign(s, name)
        rows = s.execute(select(CallAttempt, Contact.number).join(Contact, Contact.id == CallAttempt.contact_id)
                         .where(CallAttempt.campaign_id == campaign.id)
                         .order_by(CallAttempt.started_at, CallAttempt.id)).all()
        texts: dict[int, list[str]] = {}
        for attempt_id, text in s.execute(select(Transcript.attempt_id, Transcript.text).join(
                CallAttempt, CallAttempt.id == Transcript.attempt_id).where(CallAttempt.campaign_id == campaign.id)
                .order_by(Transcript.attempt_id, Transcript.start_s)):
            texts.setdefault(attempt_id, []).append(text)
        attempts = [{
            "contact": a.contact_id, "number": number, "attempt": a.attempt_no, "runner": a.runner_id,
            "esl_host": a.esl_host, "call_uuid": a.call_uuid, "started_at": iso(a.started_at),
            "answered_at": iso(a.answered_at), "ended_at": iso(a.ended_at), "outcome": a.outcome,
            "abandoned": bool(a.abandoned), "disposition": a.disposition, "amd": a.amd,
            "hangup_cause": a.hangup_cause, "barge_ins": list(a.barge_ins or []),
            "transcript": " ".join(texts.get(a.id, [])),
        } for a, number in rows]
        return {"campaign": campaign.name, "attempts": attempts}


def next_due(engine: Engine, campaign: Campaign, rules: CampaignSettings, now: datetime) -> tuple[int, datetime | None]:
    """(contacts not final, the earliest instant one is due); for the runner's "anything left?"."""
    with Session(engine) as s:
        wait = waiting(s, campaign, rules, now)
    return wait.pending + wait.scheduled + wait.in_progress + sum(wait.becoming_final.values()), wait.next_due
