"""The robot's database: SQLAlchemy 2 models, Alembic migrations, call recording with a local journal, DNC.

SQLite (WAL) is the embedded default (``sqlite:///callbot.db``); PostgreSQL runs the same code.
"""

import logging

logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-plugin info lines say nothing to an operator

from callbot.robot.store.calls import Store, StoreWriter  # noqa: E402
from callbot.robot.store.engine import make_engine  # noqa: E402
from callbot.robot.store.models import (  # noqa: E402
    Base, CallAttempt, CallEvent, Campaign, Contact, Dnc, Runner, Transcript,
)
from callbot.robot.store.schema import SchemaError, ensure_schema, upgrade  # noqa: E402

__all__ = ["Base", "CallAttempt", "CallEvent", "Campaign", "Contact", "Dnc", "Runner", "SchemaError", "Store",
           "StoreWriter", "Transcript", "ensure_schema", "make_engine", "upgrade"]
