"""Alembic migrations of the store; run them with ``callbot db upgrade`` (robot.store.schema)."""
