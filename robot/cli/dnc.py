"""`callbot dnc add|remove|import|list`: the do-not-call list, shared by every campaign."""

from __future__ import annotations

import json
from pathlib import Path

import click

from callbot.cli_context import CliContext
from callbot.robot.cli.db import AS_JSON, REGION, USAGE, exits_cleanly, fail, open_engine, region_or_exit


def _numbers(values: tuple[str, ...], region: str | None) -> list[str]:
    """Every value as E.164, or exit 2 naming each bad one (nothing is changed)."""
    from callbot.robot.campaign.numbers import NumberError, to_e164

    region = region_or_exit(region)
    good, bad = [], []
    for value in values:
        try:
            good.append(to_e164(value, region))
        except NumberError as exc:
            bad.append(f"{value!r} ({exc})")
    if bad:
        fail(f"not a phone number: {', '.join(bad)}; nothing changed", USAGE)
    return good


@click.group("dnc")
def dnc_group() -> None:
    """The do-not-call list: checked whenever a contact is claimed, and at import."""


@dnc_group.command("add")
@click.argument("numbers", nargs=-1, required=True)
@REGION
@click.option("--source", default="manual", show_default=True, help="Where the request came from.")
@AS_JSON
@click.pass_obj
@exits_cleanly
def add_command(obj: CliContext, numbers: tuple[str, ...], region: str | None, source: str, as_json: bool) -> None:
    """Put NUMBER… on the list (pending contacts with them become `dnc` at once)."""
    from callbot.robot.campaign.dnc import add_numbers

    done = add_numbers(open_engine(obj), _numbers(numbers, region), source)
    if as_json:
        click.echo(json.dumps({"added": done.changed, "already": done.unchanged}))
    else:
        click.echo(f"added {len(done.changed)}, already listed {len(done.unchanged)}")


@dnc_group.command("remove")
@click.argument("numbers", nargs=-1, required=True)
@REGION
@AS_JSON
@click.pass_obj
@exits_cleanly
def remove_command(obj: CliContext, numbers: tuple[str, ...], region: str | None, as_json: bool) -> None:
    """Take NUMBER… off the list (contacts that were `dnc` only for it become dialable again)."""
    from callbot.robot.campaign.dnc import remove_numbers

    done = remove_numbers(open_engine(obj), _numbers(numbers, region))
    if as_json:
        click.echo(json.dumps({"removed": done.changed, "not_listed": done.unchanged}))
    else:
        click.echo(f"removed {len(done.changed)}, not listed {len(done.unchanged)}")


@dnc_group.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@REGION
@AS_JSON
@click.pass_obj
@exits_cleanly
def import_command(obj: CliContext, csv_file: str, region: str | None, as_json: bool) -> None:
    """Import FILE.csv (header with `number`, optional `source`) in one transaction; bad rows are reported."""
    from callbot.robot.campaign.dnc import import_rows
    from callbot.robot.campaign.importer import read_dnc, read_file

    region = region_or_exit(region)
    engine = open_engine(obj)
    rows, rejected = read_dnc(read_file(csv_file), csv_file, region)
    result = import_rows(engine, rows, rejected, f"import:{Path(csv_file).name}")
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    click.echo(f"imported {result.imported}, duplicates {result.duplicates}, rejected {len(result.rejected)}")
    for r in result.rejected:
        click.echo(f"  line {r.line}, column {r.column}: {r.value!r}: {r.reason}")


@dnc_group.command("list")
@AS_JSON
@click.pass_obj
@exits_cleanly
def list_command(obj: CliContext, as_json: bool) -> None:
    """Every listed number with its source and when it was added."""
    from callbot.robot.campaign.dnc import list_numbers

    rows = list_numbers(open_engine(obj))
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['number']:>16}  {r['added_at']}  {r['source']}")


commands = [dnc_group]
