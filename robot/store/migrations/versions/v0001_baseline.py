"""Baseline: the tables that robot/store.py's create_all made before migrations existed.

A database made that way has no alembic_version table; ``callbot db upgrade`` stamps it with this
revision, then applies the later ones.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("scenario", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "contact",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaign.id"), nullable=False),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("status", sa.String(40), nullable=False),
    )
    op.create_index("ix_contact_campaign_id", "contact", ["campaign_id"])
    op.create_table(
        "call_attempt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("call_uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contact.id"), nullable=True),
        sa.Column("destination", sa.String(200), nullable=False),
        sa.Column("scenario", sa.String(200), nullable=False),
        sa.Column("disposition", sa.String(60), nullable=True),
        sa.Column("amd", sa.String(20), nullable=True),
        sa.Column("amd_cause", sa.String(40), nullable=True),
        sa.Column("amd_decided_at_s", sa.Float(), nullable=True),
        sa.Column("hangup_by", sa.String(20), nullable=True),
        sa.Column("hangup_cause", sa.String(60), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("intents", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_call_attempt_contact_id", "call_attempt", ["contact_id"])
    op.create_table(
        "call_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("attempt_id", sa.Integer(), sa.ForeignKey("call_attempt.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float(), nullable=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("type", sa.String(60), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_call_event_attempt_id", "call_event", ["attempt_id"])
    op.create_table(
        "transcript",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("attempt_id", sa.Integer(), sa.ForeignKey("call_attempt.id"), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_index("ix_transcript_attempt_id", "transcript", ["attempt_id"])


def downgrade() -> None:
    for table in ("transcript", "call_event", "call_attempt", "contact", "campaign"):
        op.drop_table(table)
