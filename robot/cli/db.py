"""`callbot db upgrade`, and the database plumbing every store command shares: the engine, and clean failures.

Failures print one line on stderr and exit 2 (usage or settings: a bad file, an unknown campaign)
or 1 (the database: unreachable, locked, read-only, or a schema that needs `callbot db upgrade`).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import click

from callbot.cli_context import CliContext

F = TypeVar("F", bound=Callable[..., Any])
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
REGION = click.option("--region", default=None, help="Region code for national numbers (US, FR, ...).")
USAGE, FAILURE = 2, 1
_URL_KEY = "callbot.db_url"


def fail(message: str, code: int) -> None:
    """``Error: message`` on stderr, then exit ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def exits_cleanly(fn: F) -> F:
    """Map the store's and the campaign's errors to one line and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from callbot.config import ConfigError
        from callbot.robot.campaign.contacts import CampaignError
        from callbot.robot.campaign.importer import UnreadableFile
        from callbot.robot.store.engine import explain, is_unavailable, redact
        from callbot.robot.store.schema import SchemaError

        try:
            return fn(*args, **kwargs)
        except CampaignError as exc:
            fail(str(exc), exc.exit_code)
        except (ConfigError, UnreadableFile) as exc:
            fail(str(exc), USAGE)
        except SchemaError as exc:
            fail(str(exc), FAILURE)
        except Exception as exc:  # noqa: BLE001
            if not is_unavailable(exc):
                raise
            url = click.get_current_context().meta.get(_URL_KEY)
            where = f" at {redact(url)}" if url else ""
            fail(f"the database{where} is unavailable: {explain(exc)}", FAILURE)

    return wrapper  # type: ignore[return-value]


def region_or_exit(region: str | None) -> str | None:
    """``--region`` as phonenumbers knows it (``US``, ``FR``), or exit 2 saying what it wants."""
    from callbot.robot.campaign.numbers import check_region

    try:
        return check_region(region)
    except ValueError as exc:
        fail(str(exc), USAGE)
        raise  # unreachable: fail exits


def open_engine(obj: CliContext, check_schema: bool = True) -> Any:
    """The engine for ``db.url`` (an empty database is created at the head revision; an old one is refused)."""
    from callbot.robot.store.engine import make_engine
    from callbot.robot.store.schema import ensure_schema

    url = obj.settings().db.url
    click.get_current_context().meta[_URL_KEY] = url
    engine = make_engine(url)
    if check_schema:
        ensure_schema(engine)
    return engine


@click.group("db")
def db_group() -> None:
    """The database at db.url (CALLBOT_DB_URL): schema migrations."""


@db_group.command("upgrade")
@AS_JSON
@click.pass_obj
@exits_cleanly
def upgrade_command(obj: CliContext, as_json: bool) -> None:
    """Migrate the database to this callbot's schema (Alembic). A database made before migrations is stamped
    with the baseline first, then migrated: nothing is deleted. Safe to run again."""
    from callbot.robot.store.schema import upgrade

    done = upgrade(open_engine(obj, check_schema=False))
    if as_json:
        click.echo(json.dumps({"url": done.url, "before": done.before, "after": done.after,
                               "stamped_baseline": done.stamped_baseline}))
        return
    stamp = " (stamped the pre-migration baseline 0001 first)" if done.stamped_baseline else ""
    if done.before == done.after:
        click.echo(f"{done.url}: already at revision {done.after}")
    else:
        click.echo(f"{done.url}: revision {done.before or 'none'} -> {done.after}{stamp}")


commands = [db_group]
