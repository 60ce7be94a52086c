"""`callbot campaign create|import|run|pause|resume|status|report` (DESIGN section 8)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import click

from callbot.cli_context import CliContext
from callbot.robot.cli.db import AS_JSON, REGION, USAGE, exits_cleanly, fail, open_engine, region_or_exit


def _rules_for(obj: CliContext) -> Any:
    from callbot.robot.campaign.settings import effective

    settings = obj.settings()
    return lambda campaign: effective(settings, campaign.settings, f"campaign {campaign.name} settings")


def _scenario_ref(value: str, obj: CliContext) -> str:
    """A scenario file (stored as an absolute path) or a bundled name; loaded now, so a broken one is refused."""
    from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario

    path = Path(value)
    if path.suffix == ".toml" or path.exists() or "/" in value:
        ref, target = str(path.resolve()), path
    else:
        ref, target = value, bundled_scenario(value)
        if not target.is_file():
            fail(f"--scenario {value!r} is neither a file nor a bundled scenario (survey_en, survey_fr)", USAGE)
    from callbot.robot.campaign.runner import prompts_dir

    settings = obj.settings()
    try:
        load_scenario(target, rate=settings.robot.prompt_rate, prompts_dir=prompts_dir(settings))
    except ScenarioError as exc:
        fail(str(exc), USAGE)
    return ref


@click.group("campaign")
def campaign_group() -> None:
    """Outbound campaigns: contacts, calling windows, retries and pacing, worked by any number of runners."""


@campaign_group.command("create")
@click.argument("name")
@click.option("--scenario", "scenario", required=True, help="Scenario TOML file, or a bundled one: survey_en, survey_fr.")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), default=None,
              help="TOML file with a [campaign] table overriding the [campaign] settings for this campaign.")
@AS_JSON
@click.pass_obj
@exits_cleanly
def create_command(obj: CliContext, name: str, scenario: str, settings_file: str | None, as_json: bool) -> None:
    """Create campaign NAME (a draft until its first run)."""
    from callbot.robot.campaign.contacts import create_campaign
    from callbot.robot.campaign.settings import as_plain, effective, read_settings_file

    overrides = read_settings_file(settings_file) if settings_file else {}
    rules = effective(obj.settings(), overrides, settings_file or "campaign settings")
    ref = _scenario_ref(scenario, obj)
    campaign = create_campaign(open_engine(obj), name, ref, overrides)
    if as_json:
        click.echo(json.dumps({"name": campaign.name, "scenario": ref, "settings": as_plain(rules)}))
    else:
        click.echo(f"created campaign {campaign.name} (scenario {ref})")


@campaign_group.command("import")
@click.argument("name")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@REGION
@AS_JSON
@click.pass_obj
@exits_cleanly
def import_command(obj: CliContext, name: str, csv_file: str, region: str | None, as_json: bool) -> None:
    """Import contacts from FILE.csv into campaign NAME, in one transaction.

    The header must have `number`; `tz`, `name` and `language` are optional, other columns become
    contact attributes. Bad rows are reported (line, column, value, reason) and the rest imported;
    a file that cannot be read as a whole imports nothing and exits 2.
    """
    from sqlalchemy.orm import Session

    from callbot.robot.campaign.contacts import get_campaign, import_contacts
    from callbot.robot.campaign.importer import read_contacts, read_file

    region = region_or_exit(region)
    engine = open_engine(obj)
    with Session(engine) as s:
        rules = _rules_for(obj)(get_campaign(s, name))
    parsed = read_contacts(read_file(csv_file), csv_file, region, rules.default_tz)
    result = import_contacts(engine, name, parsed)
    if as_json:
        click.echo(json.dumps(result.as_json()))
        return
    click.echo(f"{name}: imported {result.imported}, on DNC {result.dnc}, duplicates {result.duplicates}, "
               f"rejected {len(result.rejected)}")
    for r in result.rejected:
        click.echo(f"  line {r.line}, column {r.column}: {r.value!r}: {r.reason}")


@campaign_group.command("run")
@click.argument("name")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Calls at once, campaign-wide, as this runner claims (default: the campaign's max_concurrent).")
@click.option("--cps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Originates per second, campaign-wide, as this runner claims (default: calls_per_second).")
@click.option("--wait-s", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Keep running while the next contact is due within this many seconds (campaign clock).")
@click.option("--runner-id", default=None, help="This runner's name in the attempts (default HOST:PID).")
@click.option("--metrics-port", type=click.IntRange(min=1, max=65535), default=None,
              help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Run on simswitch's virtual clock at this speed (the value given to simswitch).")
@click.option("--start", "start", default=None, help="With --speed: the virtual clock's start, ISO-8601 "
                                                     "(the value given to simswitch's --start).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout at the end.")
@click.pass_obj
@exits_cleanly
def run_command(obj: CliContext, name: str, max_concurrent: int | None, cps: float | None, wait_s: float,
                runner_id: str | None, metrics_port: int | None, speed: float, start: str | None,
                as_json: bool) -> None:
    """Work campaign NAME until every contact is final, nothing is due within --wait-s, or it is paused.

    Exit codes: 0 done or nothing due (stderr says when the next contact is due), 3 paused,
    2 usage or settings error, 1 database or switch error. SIGTERM stops claiming and lets live
    calls finish (up to [campaign] stop_grace_s). Uses the configured switch ([esl]) and audio
    server (audio_server.public_url); starts neither.
    """
    from callbot.robot.campaign.metrics import RunnerMetrics
    from callbot.robot.campaign.progress import for_stderr
    from callbot.robot.campaign.runner import CampaignRunner, RunOptions
    from callbot.robot.campaign.times import parse_iso

    try:
        start_at = parse_iso(start) if start else None
    except ValueError as exc:
        fail(f"--start: {exc}", USAGE)
    from callbot.robot.campaign.claims import default_runner_id

    runner = runner_id or default_runner_id()
    metrics = None
    if metrics_port is not None:
        metrics = RunnerMetrics(name, runner)
        try:
            metrics.serve(metrics_port)
        except OSError as exc:
            fail(f"--metrics-port {metrics_port}: cannot listen ({exc.strerror or exc})", USAGE)
    settings = obj.settings()
    engine = open_engine(obj, check_schema=False)  # the runner checks it, and says it refuses to dial
    options = RunOptions(name=name, runner_id=runner, max_concurrent=max_concurrent, cps=cps, wait_s=wait_s,
                         speed=speed, start=start_at)
    result = CampaignRunner(settings, engine, options, _rules_for(obj), for_stderr(), metrics).run()
    if as_json:
        click.echo(json.dumps(result.as_json(name, runner)))
    if result.exit_code:
        click.echo(f"Error: {result.message}" if result.exit_code == 1 else result.message, err=True)
    else:
        click.echo(f"{name}: {result.message} ({result.attempts} attempts this run)", err=True)
    sys.exit(result.exit_code)


def _pause_command(verb: str, paused: bool, doc: str) -> click.Command:
    @click.argument("name")
    @click.pass_obj
    @exits_cleanly
    def command(obj: CliContext, name: str) -> None:
        from callbot.robot.campaign.contacts import set_paused

        set_paused(open_engine(obj), name, paused)
        click.echo(f"campaign {name} {verb}d")

    command.__doc__ = doc
    return campaign_group.command(verb)(command)


_pause_command("pause", True, "Pause campaign NAME: runners stop claiming, let live calls finish, and exit 3.")
_pause_command("resume", False, "Resume campaign NAME (start `callbot campaign run NAME` again to work it).")


@campaign_group.command("status")
@click.argument("name")
@AS_JSON
@click.pass_obj
@exits_cleanly
def status_command(obj: CliContext, name: str, as_json: bool) -> None:
    """Where campaign NAME stands: contacts by state, attempts by outcome and AMD verdict, abandonment, next due."""
    from callbot.robot.campaign.status import status

    doc = status(open_engine(obj), name, _rules_for(obj))
    if as_json:
        click.echo(json.dumps(doc))
        return
    c = doc["contacts"]
    click.echo(f"campaign {doc['name']}: {doc['state']}")
    click.echo("  contacts: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    click.echo(f"  attempts: {doc['attempts']}  " + ", ".join(f"{k} {v}" for k, v in doc["outcomes"].items() if v))
    click.echo("  amd: " + ", ".join(f"{k} {v}" for k, v in doc["amd"].items()))
    click.echo(f"  abandoned: {doc['abandoned']} (rate {doc['abandon_rate']:.2%})  next due: {doc['next_due']}")


@campaign_group.command("report")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print every attempt as one JSON document on stdout.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), default=None,
              help="Write every attempt to this CSV file (- for stdout); lists as JSON text.")
@click.option("--png", "png_dir", type=click.Path(file_okay=False), default=None,
              help="Draw outcome, AMD, barge-in timing and answers-per-hour charts into this folder.")
@click.pass_obj
@exits_cleanly
def report_command(obj: CliContext, name: str, as_json: bool, csv_file: str | None, png_dir: str | None) -> None:
    """Every attempt of campaign NAME: runner, switch, times, outcome, AMD, barge-ins, transcript."""
    from callbot.robot.campaign.status import REPORT_COLUMNS, report

    doc = report(open_engine(obj), name)
    if csv_file:
        text = _csv(doc["attempts"], REPORT_COLUMNS)
        if csv_file == "-":
            if as_json:
                fail("--csv - and --json both want stdout; give --csv a file name", USAGE)
            click.echo(text, nl=False)
        else:
            Path(csv_file).write_text(text, encoding="utf-8")
            click.echo(f"wrote {len(doc['attempts'])} attempts to {csv_file}", err=True)
    if png_dir:
        from callbot.robot.campaign.charts import draw

        paths = draw(doc, png_dir)
        click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)
    if as_json:
        click.echo(json.dumps(doc))
    elif not csv_file and not png_dir:
        for a in doc["attempts"]:
            click.echo(f"{a['started_at']}  {a['number']:>16}  #{a['attempt']}  {a['outcome'] or 'in flight':12}  "
                       f"{a['disposition'] or '':14}  amd={a['amd']}  {a['runner']}")


def _csv(attempts: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for a in attempts:
        writer.writerow([json.dumps(a[c]) if isinstance(a[c], (list, dict)) else
                         ("" if a[c] is None else str(a[c]).lower() if isinstance(a[c], bool) else a[c])
                         for c in columns])
    return buf.getvalue()


commands = [campaign_group]
