"""Alembic migrations: an empty database, a pre-migration one (stamped, then migrated, nothing lost), models = head."""

from __future__ import annotations

import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from callbot.robot.store import Base, CallAttempt, Contact, SchemaError, Store, ensure_schema, make_engine, upgrade
from callbot.robot.store.schema import head_revision
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)

# What robot/store.py's create_all made before migrations (SQLite DDL, as it printed it).
LEGACY_DDL = """
CREATE TABLE campaign (id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, scenario VARCHAR(500) NOT NULL,
  created_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (name));
CREATE TABLE contact (id INTEGER NOT NULL, campaign_id INTEGER NOT NULL, destination VARCHAR(200) NOT NULL,
  status VARCHAR(40) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(campaign_id) REFERENCES campaign (id));
CREATE INDEX ix_contact_campaign_id ON contact (campaign_id);
CREATE TABLE call_attempt (id INTEGER NOT NULL, call_uuid VARCHAR(36) NOT NULL, contact_id INTEGER,
  destination VARCHAR(200) NOT NULL, scenario VARCHAR(200) NOT NULL, disposition VARCHAR(60), amd VARCHAR(20),
  amd_cause VARCHAR(40), amd_decided_at_s FLOAT, hangup_by VARCHAR(20), hangup_cause VARCHAR(60),
  flags JSON NOT NULL, intents JSON NOT NULL, recorded_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (call_uuid),
  FOREIGN KEY(contact_id) REFERENCES contact (id));
CREATE INDEX ix_call_attempt_contact_id ON call_attempt (contact_id);
CREATE TABLE call_event (id INTEGER NOT NULL, attempt_id INTEGER NOT NULL, seq INTEGER NOT NULL, t FLOAT,
  source VARCHAR(10) NOT NULL, type VARCHAR(60) NOT NULL, data JSON NOT NULL, PRIMARY KEY (id),
  FOREIGN KEY(attempt_id) REFERENCES call_attempt (id));
CREATE INDEX ix_call_event_attempt_id ON call_event (attempt_id);
CREATE TABLE transcript (id INTEGER NOT NULL, attempt_id INTEGER NOT NULL, start_s FLOAT NOT NULL,
  end_s FLOAT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (id), FOREIGN KEY(attempt_id) REFERENCES call_attempt (id));
CREATE INDEX ix_transcript_attempt_id ON transcript (attempt_id);
INSERT INTO campaign VALUES (1, 'old', 'survey_en', '2024-05-01 10:00:00.000000');
INSERT INTO contact VALUES (1, 1, '+14155550123', 'pending');
INSERT INTO call_attempt VALUES (1, '0c73adf9-90d9-4084-a193-e0129c054dc8', NULL, 'fixture/long_reply', 'survey_en',
  'callback', 'notsure', 'TOOLONG', 5.02, 'robot', 'NORMAL_CLEARING', '["x"]', '[]', '2024-05-01 10:01:00.000000');
INSERT INTO call_event VALUES (1, 1, 0, 0.0, 'switch', 'CHANNEL_ANSWER', '{}');
INSERT INTO call_event VALUES (2, 1, 1, 0.1, 'robot', 'state', '{"state": "answered"}');
INSERT INTO transcript VALUES (1, 1, 1.5, 5.7, 'call me back next week');
"""


def _diff(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def test_an_empty_database_is_created_at_head_and_matches_the_models(db_url):  # noqa: F811
    engine = make_engine(db_url)
    ensure_schema(engine)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    assert _diff(engine) == []


def test_sqlite_is_in_wal_mode(sqlite_url):  # noqa: F811
    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_pre_migration_database_is_stamped_then_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_DDL)
    conn.close()
    engine = make_engine(f"sqlite:///{path}")
    with pytest.raises(SchemaError, match="callbot db upgrade"):
        ensure_schema(engine)  # never migrated behind the operator's back
    done = upgrade(engine)
    assert done.stamped_baseline and done.before is None and done.after == head_revision()
    assert _diff(engine) == []
    with Session(engine) as s:
        contact = s.scalar(select(Contact))
        assert (contact.number, contact.state, contact.attempts, contact.zones) == ("+14155550123", "pending", 0, [])
        attempt = s.scalar(select(CallAttempt))
        assert attempt.disposition == "callback" and attempt.flags == ["x"] and len(attempt.events) == 2
        assert attempt.ended_at == attempt.recorded_at  # an old call is over
        assert attempt.transcripts[0].text == "call me back next week"
    again = upgrade(engine)  # idempotent
    assert not again.stamped_baseline and again.before == again.after == head_revision()
    # and the old API still reads it
    assert Store(f"sqlite:///{path}").attempt("0c73adf9-90d9-4084-a193-e0129c054dc8")["amd_cause"] == "TOOLONG"


def test_foreign_tables_are_refused_not_stamped(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(SchemaError, match="not callbot's pre-migration tables"):
        upgrade(make_engine(f"sqlite:///{path}"))


def test_postgres_upgrade_from_empty_and_downgrade_to_baseline(pg_url):  # noqa: F811
    from alembic import command

    from callbot.robot.store.schema import alembic_config

    engine = make_engine(pg_url)
    upgrade(engine)
    assert {"dnc", "runner", "contact"} <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(pg_url), "0001")
    assert "contact" in inspect(engine).get_table_names() and "dnc" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert _diff(engine) == []
