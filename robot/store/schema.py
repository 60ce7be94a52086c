"""The schema's version: Alembic upgrades, the baseline stamp for pre-migration databases, and the check before use.

- An empty database is brought to the head revision on first use (``ensure_schema``).
- A database that ``create_all`` made before migrations existed (the five tables, no
  ``alembic_version``) is stamped ``0001`` (the baseline), then upgraded; nothing is deleted.
- Any other database behind the head is refused until ``callbot db upgrade`` is run.
On PostgreSQL an advisory lock makes concurrent upgrades (two runners starting) wait for each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from callbot.robot.store.engine import redact

BASELINE = "0001"
LEGACY_TABLES = {"campaign", "contact", "call_attempt", "call_event", "transcript"}
PG_LOCK_KEY = 0x6361_6C6C_626F_74  # "callbot", for pg_advisory_lock


class SchemaError(RuntimeError):
    """The database's schema is not one this code can use; the message says what to run."""


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did."""

    url: str
    before: str | None  # revision found (None: empty, or pre-migration before stamping)
    after: str
    stamped_baseline: bool


def migrations_dir() -> Path:
    return Path(str(files("callbot.robot.store").joinpath("migrations")))


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _is_legacy(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return "alembic_version" not in tables and LEGACY_TABLES <= tables


def _is_empty(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return not (tables - {"alembic_version"}) and current_revision(conn) is None


def upgrade(engine: Engine, target: str = "head") -> Upgrade:
    """Bring the database to ``target``, stamping a pre-migration database with the baseline first."""
    with _locked(engine) as conn:
        stamped = False
        before = current_revision(conn)
        if before is None and _is_legacy(conn):
            _check_legacy_columns(conn, engine)
            cfg = _config_on(conn)
            command.stamp(cfg, BASELINE)
            conn.commit()
            stamped = True
        elif before is None and not _is_empty(conn):
            found = ", ".join(sorted(inspect(conn).get_table_names()))
            raise SchemaError(f"{redact(str(engine.url))} has tables ({found}) but no alembic_version, and they are "
                              "not callbot's pre-migration tables: point db.url at a callbot database or an empty one")
        command.upgrade(_config_on(conn), target)
        conn.commit()
        after = current_revision(conn)
    return Upgrade(redact(str(engine.url)), before, after or "", stamped)


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one that is behind (``callbot db upgrade`` migrates it)."""
    head = head_revision()
    with engine.connect() as conn:
        current = current_revision(conn)
        if current == head:
            return
        empty = _is_empty(conn)
        legacy = _is_legacy(conn)
    if empty:
        upgrade(engine)
        return
    where = redact(str(engine.url))
    if legacy:
        raise SchemaError(f"{where} was made before migrations (no alembic_version): run `callbot db upgrade` "
                          "to stamp and migrate it (nothing is deleted)")
    raise SchemaError(f"{where} is at schema revision {current}, this callbot needs {head}: "
                      "run `callbot db upgrade`")


def _check_legacy_columns(conn: Connection, engine: Engine) -> None:
    cols = {c["name"] for c in inspect(conn).get_columns("contact")}
    if not {"destination", "status"} <= cols:
        raise SchemaError(f"{redact(str(engine.url))}: table contact has columns {sorted(cols)}, not the "
                          "pre-migration (destination, status): it is not a callbot database to stamp")


def _config_on(conn: Connection) -> Config:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    return cfg


class _locked:
    """A connection holding the migration lock (PostgreSQL advisory lock; SQLite: foreign keys off for batch)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_LOCK_KEY})
            self.conn.commit()
        elif self.engine.dialect.name == "sqlite":
            _pragma(self.conn, "foreign_keys=OFF")  # batch mode recreates tables that others point at
        return self.conn

    def __exit__(self, *exc: object) -> None:
        assert self.conn is not None
        try:
            self.conn.rollback()
            if self.engine.dialect.name == "postgresql":
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
                self.conn.commit()
            elif self.engine.dialect.name == "sqlite":
                _pragma(self.conn, "foreign_keys=ON")
        finally:
            self.conn.close()


def _pragma(conn: Connection, setting: str) -> None:
    """A PRAGMA outside any transaction (inside one, SQLite ignores foreign_keys)."""
    conn.connection.driver_connection.execute(f"PRAGMA {setting}")
