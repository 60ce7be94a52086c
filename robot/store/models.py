"""The database tables: campaigns, contacts, call attempts with their events and transcripts, DNC and runners.

The schema is owned by the Alembic migrations in ``robot/store/migrations``; these models must
match their head (the migration tests compare them). Every time is UTC: on SQLite,
which keeps no zone, :class:`UtcDateTime` stores naive UTC and hands back aware datetimes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """An aware UTC datetime on every backend; a naive value is refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps UTC; pass an aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


# Contact states. ``pending`` waits for its due time and window; ``done`` and ``failed`` are final.
CONTACT_STATES = ("pending", "in_progress", "done", "failed", "dnc", "invalid")
FINAL_CONTACT_STATES = ("done", "failed", "dnc", "invalid")


class Campaign(Base):
    __tablename__ = "campaign"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    scenario: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # [campaign] overrides of this campaign
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    first_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    next_dial_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # campaign-wide pacing slot
    clock: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the last run's (virtual) clock


class Contact(Base):
    __tablename__ = "contact"
    __table_args__ = (UniqueConstraint("campaign_id", "number", name="uq_contact_campaign_number"),
                      Index("ix_contact_due", "campaign_id", "state", "next_due_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"), index=True)
    number: Mapped[str] = mapped_column(String(200))  # E.164, with its +
    state: Mapped[str] = mapped_column(String(40), default="pending")
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    language: Mapped[str | None] = mapped_column(String(20), nullable=True)
    tz: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the CSV's IANA zone, if it had one
    zones: Mapped[list[str]] = mapped_column(JSON, default=list)  # tz, else the number's zones; [] = default_tz
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(String(60), nullable=True)  # why invalid / failed / dnc
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # None: due now
    last_outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    line: Mapped[int | None] = mapped_column(Integer, nullable=True)  # CSV line it came from
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, default=utcnow)


class CallAttempt(Base):
    __tablename__ = "call_attempt"
    __table_args__ = (Index("ix_call_attempt_live", "campaign_id", "ended_at"),)
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
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # campaign attempts (NULL for a one-off `callbot call`)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id"), nullable=True)
    attempt_no: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1-based, per contact
    runner_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    esl_host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # originate sent
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # NULL: in flight
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    abandoned: Mapped[bool] = mapped_column(Boolean, default=False)
    first_audio_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # first prompt, call time
    barge_ins: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reconciled: Mapped[str | None] = mapped_column(String(40), nullable=True)  # gone | hung_up: set by a reconcile
    events: Mapped[list["CallEvent"]] = relationship(back_populates="attempt", order_by="CallEvent.seq")
    transcripts: Mapped[list["Transcript"]] = relationship(back_populates="attempt", order_by="Transcript.start_s")


class CallEvent(Base):
    """One timeline row, written as it happens; (attempt, seq) makes a journal replay idempotent."""

    __tablename__ = "call_event"
    __table_args__ = (UniqueConstraint("attempt_id", "seq", name="uq_call_event_attempt_seq"),)
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


class Dnc(Base):
    """A number that must not be called, from any campaign."""

    __tablename__ = "dnc"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(200), unique=True)  # E.164
    source: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Runner(Base):
    """A `campaign run` process working a campaign; live while its lease has not expired."""

    __tablename__ = "runner"
    __table_args__ = (UniqueConstraint("campaign_id", "runner_id", name="uq_runner_campaign_runner"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"), index=True)
    runner_id: Mapped[str] = mapped_column(String(200))
    esl_host: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lease_expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
