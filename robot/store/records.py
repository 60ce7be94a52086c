"""Call records as plain dicts, and their idempotent application to the database.

The same record is written to the database as it happens, or to the journal when the database
is unavailable and applied later; applying one twice changes nothing:
- ``event``: one timeline row, keyed by (call uuid, seq);
- ``attempt``: fields of an attempt learnt during the call (``answered_at``, ``first_audio_s``);
- ``finish``: the attempt's result, its transcripts, and the contact's next state, applied once
  (a result found in a journal also replaces an ``interrupted`` that a reconciliation wrote
  meanwhile: the journal saw the call, the reconciliation only its absence);
- ``dnc``: a number added to the do-not-call list (an opt-out during a call).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from callbot.robot.store.models import CallAttempt, CallEvent, Contact, Dnc, Transcript

ROW_KEYS = ("t", "source", "type")


def event(call_uuid: str, seq: int, row: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "event", "call_uuid": call_uuid, "seq": seq, "row": row}


def attempt(call_uuid: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "attempt", "call_uuid": call_uuid, "fields": _plain(fields)}


def finish(call_uuid: str, fields: dict[str, Any], transcripts: list[dict[str, Any]],
           contact: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": "finish", "call_uuid": call_uuid, "fields": _plain(fields), "transcripts": transcripts,
            "contact": None if contact is None else _plain(contact)}


def dnc(number: str, source: str, added_at: datetime) -> dict[str, Any]:
    return {"kind": "dnc", "number": number, "source": source, "added_at": added_at.isoformat()}


def apply(session: Session, records: Iterable[dict[str, Any]]) -> int:
    """Apply records in order inside the caller's transaction; returns how many were applied or already there."""
    count = 0
    pending_events: list[dict[str, Any]] = []
    for record in records:
        kind = record.get("kind")
        if kind == "event":
            pending_events.append(record)
            count += 1
            continue
        if pending_events:  # keep order: a finish follows its call's events
            _apply_events(session, pending_events)
            pending_events = []
        if kind == "attempt":
            _apply_attempt(session, record)
        elif kind == "finish":
            _apply_finish(session, record)
        elif kind == "dnc":
            add_dnc(session, record["number"], record["source"], _datetime(record["added_at"]))
        else:
            raise ValueError(f"journal record of unknown kind {kind!r}")
        count += 1
    if pending_events:
        _apply_events(session, pending_events)
    return count


def add_dnc(session: Session, number: str, source: str, added_at: datetime) -> bool:
    """Put ``number`` on DNC (False if it was there); pending contacts with it, in any campaign, become ``dnc``."""
    if session.scalar(select(Dnc.id).where(Dnc.number == number)) is not None:
        return False
    session.add(Dnc(number=number, source=source, added_at=added_at))
    session.execute(update(Contact).where(Contact.number == number, Contact.state == "pending")
                    .values(state="dnc", reason="dnc"))
    session.flush()
    return True


def _attempt_ids(session: Session, uuids: Iterable[str]) -> dict[str, int]:
    rows = session.execute(select(CallAttempt.call_uuid, CallAttempt.id).where(CallAttempt.call_uuid.in_(set(uuids))))
    return {u: i for u, i in rows}


def _apply_events(session: Session, records: list[dict[str, Any]]) -> None:
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_call[r["call_uuid"]].append(r)
    ids = _attempt_ids(session, by_call)
    for call_uuid, rows in by_call.items():
        attempt_id = ids.get(call_uuid)
        if attempt_id is None:
            raise LookupError(f"call events for {call_uuid}, which has no attempt row")
        have = set(session.scalars(select(CallEvent.seq).where(CallEvent.attempt_id == attempt_id,
                                                               CallEvent.seq.in_([r["seq"] for r in rows]))))
        for r in rows:
            if r["seq"] in have:
                continue
            have.add(r["seq"])
            row = r["row"]
            session.add(CallEvent(attempt_id=attempt_id, seq=r["seq"], t=row.get("t"), source=row["source"],
                                  type=row["type"], data={k: v for k, v in row.items() if k not in ROW_KEYS}))
    session.flush()


def _apply_attempt(session: Session, record: dict[str, Any]) -> None:
    row = session.scalar(select(CallAttempt).where(CallAttempt.call_uuid == record["call_uuid"]))
    if row is None:
        raise LookupError(f"attempt fields for {record['call_uuid']}, which has no attempt row")
    if row.ended_at is not None and row.reconciled is None:
        return  # finished: what was learnt during the call is in the finish
    for key, value in _typed(record["fields"]).items():
        setattr(row, key, value)


def _apply_finish(session: Session, record: dict[str, Any]) -> None:
    row = session.scalar(select(CallAttempt).where(CallAttempt.call_uuid == record["call_uuid"]).with_for_update())
    if row is None:
        raise LookupError(f"result for {record['call_uuid']}, which has no attempt row")
    if row.ended_at is not None and row.reconciled is None:
        return  # applied before
    replaced = row.reconciled is not None
    for key, value in _typed(record["fields"]).items():
        setattr(row, key, value)
    if replaced:
        row.flags = [*(row.flags or []), f"result_replayed_over_reconcile_{row.reconciled}"]
        row.reconciled = None
    if not session.scalar(select(func.count()).select_from(Transcript).where(Transcript.attempt_id == row.id)):
        for tr in record["transcripts"]:
            session.add(Transcript(attempt_id=row.id, start_s=tr["start_s"], end_s=tr["end_s"], text=tr["text"]))
    change = record.get("contact")
    if change and row.contact_id is not None:
        contact = session.get(Contact, row.contact_id)
        latest = session.scalar(select(func.max(CallAttempt.attempt_no)).where(CallAttempt.contact_id == row.contact_id))
        if contact is not None and latest == row.attempt_no and (contact.state == "in_progress" or replaced):
            for key, value in _typed(change).items():
                setattr(contact, key, value)
    session.flush()


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()}


def _typed(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: (_datetime(v) if k.endswith("_at") and isinstance(v, str) else v) for k, v in fields.items()}


def _datetime(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
