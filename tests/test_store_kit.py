"""Shared fixtures of the store, campaign and DNC tests (imported by them; holds no test of its own).

PostgreSQL tests use ``$CALLBOT_TEST_PG_URL`` (``.ci/postgres.sh`` prints it) and get a fresh
database each; they skip, saying why, only when it is unset or unreachable.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ENV = "CALLBOT_TEST_PG_URL"


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: run `eval \"$(.ci/postgres.sh)\"` to start PostgreSQL for these tests")
    return url


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    base = _pg_admin_url()
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"callbot_t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.skip(f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} is unreachable or "
                    f"refuses CREATE DATABASE: {str(exc).splitlines()[0]}")
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'callbot.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each test that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'callbot.db'}"
    return request.getfixturevalue("pg_url")
