"""Engines for the store: SQLite in WAL mode with explicit transactions, or PostgreSQL; and what "unavailable" means.

SQLite: the pysqlite driver's own transaction handling is switched off, so SQLAlchemy's
``begin()`` emits ``BEGIN`` itself, and a connection made with ``execution_options(sqlite_begin=
"IMMEDIATE")`` takes the write lock at once (the campaign claims need that: SQLAlchemy ignores
``skip_locked`` on SQLite).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.engine import Engine, make_url

SQLITE_BUSY_TIMEOUT_MS = 5000


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    engine = create_engine(url, json_serializer=lambda o: json.dumps(o, default=str), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's begin() below decides when transactions start
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                except Exception:  # noqa: BLE001 - read-only or locked: the first write says so, clearly
                    pass
                cur.execute("PRAGMA foreign_keys=ON")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "")
            conn.exec_driver_sql(f"BEGIN {mode}".strip())
    return engine


def immediate(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock at BEGIN (a no-op elsewhere)."""
    return engine.execution_options(sqlite_begin="IMMEDIATE") if engine.dialect.name == "sqlite" else engine


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given
        return url


def is_unavailable(error: BaseException) -> bool:
    """True for a database that cannot take writes now (locked, read-only, full, unreachable), not for bad data."""
    if isinstance(error, (exc.IntegrityError, exc.ProgrammingError, exc.DataError)):
        return False
    return isinstance(error, (exc.OperationalError, exc.InternalError, exc.InterfaceError, exc.DatabaseError,
                              exc.TimeoutError, exc.DisconnectionError, ConnectionError, OSError))


def explain(error: BaseException) -> str:
    """One line saying what is wrong with the database, and what to do."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else repr(error)
    low = text.lower()
    if "locked" in low or "busy" in low:
        hint = "another process holds a write lock; wait or stop it"
    elif "readonly" in low or "read-only" in low or "read only" in low:
        hint = "the database is read-only; give this process write access"
    elif "full" in low or "disk" in low:
        hint = "the disk or database is full; free space"
    elif "unable to open" in low:
        hint = "the file cannot be opened; check that its directory exists and is writable"
    elif "connect" in low or "refused" in low or "could not translate" in low or "timeout" in low:
        hint = "the server cannot be reached; check db.url (CALLBOT_DB_URL) and that the server runs"
    else:
        hint = "check db.url (CALLBOT_DB_URL)"
    return f"{text} ({hint})"
