"""Where calls are recorded: SQLAlchemy 2 models and a writer thread that keeps the database off the call path.

SQLite (WAL) is the default (``sqlite:///callbot.db``); the same code runs on PostgreSQL. A call
session never touches the database: its report goes to :class:`StoreWriter`, whose own OS thread
does the writing, so a slow disk can never delay a barge-in. Campaign leasing (several robots on
one campaign) is a later issue; the campaign and contact tables are here so attempts can point
at them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Campaign(Base):
    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scenario: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Contact(Base):
    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"), index=True)
    destination: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(40), default="pending")


class CallAttempt(Base):
    __tablename__ = "call_attempt"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), nullable=True, index=True)
    destination: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str] = mapped_column(String(200))
    disposition: Mapped[str | None] = mapped_column(String(60), nullable=True)
    amd: Mapped[str | None] = mapped_column(String(20), nullable=True)
    amd_cause: Mapped[str | None] = mapped_column(String(40), nullable=True)
    amd_decided_at_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # call time
    hangup_by: Mapped[str | None] = mapped_column(String(20), nullable=True)
    hangup_cause: Mapped[str | None] = mapped_column(String(60), nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    intents: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    events: Mapped[list["CallEvent"]] = relationship(back_populates="attempt", order_by="CallEvent.seq")
    transcripts: Mapped[list["Transcript"]] = relationship(back_populates="attempt", order_by="Transcript.start_s")


class CallEvent(Base):
    __tablename__ = "call_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("call_attempt.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    t: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempt: Mapped[CallAttempt] = relationship(back_populates="events")


class Transcript(Base):
    __tablename__ = "transcript"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("call_attempt.id"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)
    attempt: Mapped[CallAttempt] = relationship(back_populates="transcripts")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout so a reader never blocks the writer."""
    engine = create_engine(url, json_serializer=lambda o: json.dumps(o, default=str))
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


class Store:
    """Records call reports and reads them back."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)

    def record_call(self, report: dict[str, Any], destination: str, scenario: str,
                    contact_id: int | None = None) -> int:
        """Store one call's report (robot.report.build_report) with its timeline and finals; returns its id."""
        with Session(self.engine) as s, s.begin():
            attempt = CallAttempt(
                call_uuid=report["call_uuid"], contact_id=contact_id, destination=destination, scenario=scenario,
                disposition=report["disposition"], amd=report["amd"], amd_cause=report.get("amd_cause"),
                amd_decided_at_s=report.get("amd_decided_at_s"), hangup_by=report["hangup"]["by"],
                hangup_cause=report["hangup"]["cause"], flags=report["flags"], intents=report["intents"])
            s.add(attempt)
            s.flush()
            for seq, row in enumerate(report["events"]):
                data = {k: v for k, v in row.items() if k not in ("t", "source", "type")}
                s.add(CallEvent(attempt_id=attempt.id, seq=seq, t=row["t"], source=row["source"],
                                type=row["type"], data=data))
            for tr in report["transcripts"]:
                s.add(Transcript(attempt_id=attempt.id, start_s=tr["start_s"], end_s=tr["end_s"], text=tr["text"]))
            return attempt.id

    def attempt(self, call_uuid: str) -> dict[str, Any] | None:
        """One stored call as plain data (for the CLI and tests)."""
        with Session(self.engine) as s:
            a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call_uuid))
            if a is None:
                return None
            return {"call_uuid": a.call_uuid, "destination": a.destination, "disposition": a.disposition,
                    "amd": a.amd, "amd_cause": a.amd_cause, "amd_decided_at_s": a.amd_decided_at_s,
                    "hangup_by": a.hangup_by, "flags": a.flags, "intents": a.intents,
                    "events": [{"t": e.t, "source": e.source, "type": e.type, **e.data} for e in a.events],
                    "transcripts": [{"start_s": t.start_s, "end_s": t.end_s, "text": t.text} for t in a.transcripts]}


class StoreWriter:
    """A bounded queue and one OS thread that writes reports; ``submit`` never blocks the caller."""

    def __init__(self, store: Store, max_queued: int = 1000) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self.written = 0
        self.failed = 0

    def submit(self, report: dict[str, Any], destination: str, scenario: str) -> bool:
        """Queue a report; False (and an error log) when the queue is full: the result is then lost."""
        try:
            self._queue.put_nowait((report, destination, scenario))
            return True
        except queue.Full:
            self.failed += 1
            log.error("store queue full; call result not recorded",
                      extra={"call_uuid": report.get("call_uuid"), "max": self._queue.maxsize})
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.store.record_call(*item)
                self.written += 1
            except Exception:  # one bad write must not stop later ones
                self.failed += 1
                log.exception("store write failed", extra={"call_uuid": item[0].get("call_uuid")})
