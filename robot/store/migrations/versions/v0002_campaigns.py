"""Campaigns: contacts with E.164 numbers, zones and states; attempts with leases and outcomes; DNC; runners.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("first_run_at", TS, nullable=True))
        batch.add_column(sa.Column("next_dial_at", TS, nullable=True))
        batch.add_column(sa.Column("clock", sa.JSON(), nullable=True))

    with op.batch_alter_table("contact") as batch:
        batch.alter_column("destination", new_column_name="number", existing_type=sa.String(200),
                           existing_nullable=False)
        batch.alter_column("status", new_column_name="state", existing_type=sa.String(40), existing_nullable=False)
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("language", sa.String(20), nullable=True))
        batch.add_column(sa.Column("tz", sa.String(64), nullable=True))
        batch.add_column(sa.Column("zones", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("reason", sa.String(60), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("next_due_at", TS, nullable=True))
        batch.add_column(sa.Column("last_outcome", sa.String(40), nullable=True))
        batch.add_column(sa.Column("line", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("created_at", TS, nullable=True))
    with op.batch_alter_table("contact") as batch:  # a second pass: constraints on renamed columns
        batch.create_unique_constraint("uq_contact_campaign_number", ["campaign_id", "number"])
    op.create_index("ix_contact_due", "contact", ["campaign_id", "state", "next_due_at"])  # after the renames

    with op.batch_alter_table("call_attempt") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("attempt_no", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("runner_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("esl_host", sa.String(200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", TS, nullable=True))
        batch.add_column(sa.Column("started_at", TS, nullable=True))
        batch.add_column(sa.Column("answered_at", TS, nullable=True))
        batch.add_column(sa.Column("ended_at", TS, nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(40), nullable=True))
        batch.add_column(sa.Column("abandoned", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("first_audio_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("barge_ins", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("reconciled", sa.String(40), nullable=True))
        batch.create_foreign_key("fk_call_attempt_campaign_id", "campaign", ["campaign_id"], ["id"])
    op.create_index("ix_call_attempt_live", "call_attempt", ["campaign_id", "ended_at"])
    # calls recorded before campaigns existed are over: they were written once, at their end
    op.execute("UPDATE call_attempt SET ended_at = recorded_at WHERE ended_at IS NULL")

    with op.batch_alter_table("call_event") as batch:
        batch.create_unique_constraint("uq_call_event_attempt_seq", ["attempt_id", "seq"])

    op.create_table(
        "dnc",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("number", sa.String(200), nullable=False, unique=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("added_at", TS, nullable=False),
    )
    op.create_table(
        "runner",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("campaign_id", sa.Integer(), sa.ForeignKey("campaign.id"), nullable=False),
        sa.Column("runner_id", sa.String(200), nullable=False),
        sa.Column("esl_host", sa.String(200), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("lease_expires_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.UniqueConstraint("campaign_id", "runner_id", name="uq_runner_campaign_runner"),
    )
    op.create_index("ix_runner_campaign_id", "runner", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_runner_campaign_id", "runner")
    op.drop_table("runner")
    op.drop_table("dnc")
    with op.batch_alter_table("call_event") as batch:
        batch.drop_constraint("uq_call_event_attempt_seq", type_="unique")
    op.drop_index("ix_call_attempt_live", "call_attempt")
    with op.batch_alter_table("call_attempt") as batch:
        batch.drop_constraint("fk_call_attempt_campaign_id", type_="foreignkey")
        for name in ("reconciled", "barge_ins", "first_audio_s", "abandoned", "outcome", "ended_at", "answered_at",
                     "started_at", "lease_expires_at", "esl_host", "runner_id", "attempt_no", "campaign_id"):
            batch.drop_column(name)
    op.drop_index("ix_contact_due", "contact")
    with op.batch_alter_table("contact") as batch:
        batch.drop_constraint("uq_contact_campaign_number", type_="unique")
        for name in ("created_at", "line", "last_outcome", "next_due_at", "attempts", "reason", "attributes",
                     "zones", "tz", "language", "name"):
            batch.drop_column(name)
        batch.alter_column("state", new_column_name="status", existing_type=sa.String(40), existing_nullable=False)
        batch.alter_column("number", new_column_name="destination", existing_type=sa.String(200),
                           existing_nullable=False)
    with op.batch_alter_table("campaign") as batch:
        for name in ("clock", "next_dial_at", "first_run_at", "paused", "settings"):
            batch.drop_column(name)
