"""`callbot call DEST --scenario FILE`: one call against a real FreeSWITCH (or simswitch), recorded as it happens.

Before the dial: the journal left by earlier runs goes into the database, and the attempt's row is
written; a database that cannot take that write (read-only, locked, full, missing) refuses the dial.
During the call each timeline row goes to the database as it happens, or to the local journal
(``[campaign] journal_dir``) while the database cannot take it; the next `callbot call` or
`campaign run` replays the journal. A run killed mid-call leaves its attempt open: the next run on
the same host and switch asks the switch about it, hangs it up if it is still there, and closes it
as ``interrupted``.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid as uuidlib
from typing import Any, Callable

import click

from callbot.cli_context import CliContext
from callbot.config import Settings
from callbot.robot.campaign.claims import default_runner_id, runner_process_gone

log = logging.getLogger(__name__)
RESULT_WAIT_S = 60.0  # wall seconds for the result to reach the database or the journal


def live_printer(row: dict[str, Any]) -> None:
    from callbot.robot.report import describe

    line = describe(row)
    if line is not None:
        click.echo(line, err=True)


@click.command("call")
@click.argument("destination")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False), default=None,
              help="Scenario TOML (default: robot.scenario, else the bundled English example).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout.")
@click.option("--no-db", is_flag=True, help="Do not record the call in the database (db.url).")
@click.pass_obj
def call(obj: CliContext, destination: str, scenario_path: str | None, as_json: bool, no_db: bool) -> None:
    """Place one call to DESTINATION (a dial string such as sofia/gateway/gw/123) and run the scenario.

    The switch is [esl] host/port/password; the audio server is audio_server.public_url. The live
    timeline goes to stderr as it happens; the result follows on stdout. The call is recorded in
    db.url as it happens; a database that cannot take a write refuses the dial.
    """
    from callbot.robot.call.record import CallRecord
    from callbot.robot.checks import StartupCheckError
    from callbot.robot.esl.client import EslError
    from callbot.robot.esl.commands import DialStringError, check_dial_string
    from callbot.robot.report import build_report, render_text
    from callbot.robot.scenario.loader import ScenarioError, bundled_scenario, load_scenario
    from callbot.robot.shell.gevent_thread import GeventThread
    from callbot.robot.shell.one_call import run_one_call

    settings = obj.settings(**{"robot.scenario": scenario_path})
    try:
        check_dial_string(destination)
    except DialStringError as exc:
        raise click.BadParameter(str(exc), param_hint="DESTINATION") from None
    try:
        sc = load_scenario(settings.robot.scenario or bundled_scenario(), rate=settings.robot.prompt_rate,
                           prompts_dir=settings.prompts.path(), max_call_s=settings.robot.max_call_s)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    call_uuid = str(uuidlib.uuid4())
    book = None if no_db else OneCallRecord.open(settings, destination, sc.name, call_uuid)
    on_entry = live_printer if book is None else book.entry_writer(live_printer)
    robot = GeventThread("robot")
    robot.start()
    try:
        record: CallRecord = robot.call(run_one_call, settings, sc, destination, call_uuid=call_uuid,
                                        on_entry=on_entry, on_client=None if book is None else book.reconcile)
    except (StartupCheckError, EslError) as exc:
        if book is not None:
            book.not_dialled(str(exc))
        raise click.ClickException(str(exc)) from None
    except BaseException as exc:  # a bug before the dial: the attempt is closed, not left for a reconcile
        if book is not None:
            book.not_dialled(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        robot.stop()
    report = build_report(record)
    if book is not None:
        book.finish(report)
    click.echo(json.dumps(report, indent=2) if as_json else render_text(report))
    sys.exit(call_exit_code(record))


def call_exit_code(record: Any) -> int:
    """0 for a call that ran its scenario to an end; 1 when something failed; 3 when the call did not
    complete (not answered, busy, the callee hung up before the end)."""
    if record.scenario_completed:
        return 0
    return 1 if "error" in record.flags else 3


class OneCallRecord:
    """The durable record of one `callbot call`: the attempt row before the dial, each timeline row as it
    happens, the result at the end; the journal holds what the database cannot take."""

    def __init__(self, settings: Settings, call_uuid: str, recorder: Any, engine: Any, rules: Any,
                 orphans: list[str]) -> None:
        self.settings = settings
        self.uuid = call_uuid
        self.recorder = recorder
        self.engine = engine
        self.rules = rules
        self.orphans = orphans  # open attempts of killed runs on this host and switch
        self.found: dict[str, str] = {}  # orphan -> hung_up | gone, once the switch was asked
        self.seq = 0

    @classmethod
    def open(cls, settings: Settings, destination: str, scenario: str, call_uuid: str) -> "OneCallRecord":
        """Replay the journal, then write the attempt row; ClickException ("refusing to dial: ...") if either fails."""
        from sqlalchemy.orm import Session

        from callbot.robot.store.engine import explain, is_unavailable, make_engine, redact
        from callbot.robot.store.journal import Journal, JournalError
        from callbot.robot.store.models import CallAttempt, utcnow
        from callbot.robot.store.recorder import CallRecorder
        from callbot.robot.store.schema import SchemaError, ensure_schema

        url = settings.db.url
        rules = settings.campaign
        recorder = None
        try:
            engine = make_engine(url)
            ensure_schema(engine)
            journal = Journal(rules.journal_dir)
            journal.check()
            recorder = CallRecorder(engine, journal)
            replayed = recorder.replay_now()
            if replayed.error is not None:
                raise click.ClickException(f"refusing to dial: the journal in {journal.dir} cannot be replayed into "
                                           f"the database at {redact(url)} ({replayed.error})")
            orphans = _orphans(engine, _esl_host(settings))
            with Session(engine) as s, s.begin():  # a write now: a database that cannot take one refuses the dial
                s.add(CallAttempt(call_uuid=call_uuid, destination=destination, scenario=scenario,
                                  runner_id=default_runner_id(), esl_host=_esl_host(settings), started_at=utcnow()))
        except (SchemaError, JournalError) as exc:
            _close(recorder)
            raise click.ClickException(f"refusing to dial: {exc}") from None
        except click.ClickException:
            _close(recorder)
            raise
        except Exception as exc:  # noqa: BLE001 - sorted: unavailable database vs a bug
            _close(recorder)
            if not is_unavailable(exc):
                raise
            raise click.ClickException(f"refusing to dial: the database at {redact(url)} cannot take a write: "
                                       f"{explain(exc)}") from None
        return cls(settings, call_uuid, recorder, engine, rules, orphans)

    def entry_writer(self, also: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """The call's ``on_entry``: each row to the recorder (never blocks on the database), then to ``also``."""
        from callbot.robot.store import records

        def on_entry(row: dict[str, Any]) -> None:
            self.recorder.submit(records.event(self.uuid, self.seq, row))
            self.seq += 1
            also(row)
        return on_entry

    def reconcile(self, client: Any) -> None:
        """Before the dial (robot thread): hang up what killed runs left on the switch; closed in :meth:`finish`."""
        from callbot.robot.esl.commands import kill_command

        for orphan in self.orphans:
            try:
                up = client.api(f"uuid_exists {orphan}").strip() == "true"
                if up:
                    client.api(kill_command(orphan, "NORMAL_CLEARING"))
            except Exception as exc:  # noqa: BLE001 - the next run asks again
                log.warning("open attempt of a killed run not reconciled", extra={"call_uuid": orphan,
                                                                                   "error": str(exc)})
                continue
            self.found[orphan] = "hung_up" if up else "gone"
            click.echo(f"an earlier run died during call {orphan}: "
                       f"{'hung it up' if up else 'it had ended'}; recorded as interrupted", err=True)

    def not_dialled(self, error: str) -> None:
        """The start-up checks failed: the attempt is closed as an error that never reached the switch."""
        from callbot.robot.store import records
        from callbot.robot.store.models import utcnow

        self.recorder.submit(records.event(self.uuid, self.seq, {"t": None, "source": "robot", "type": "not_dialled",
                                                                 "error": error[:500]}))
        self.recorder.submit(records.finish(self.uuid, {"ended_at": utcnow(), "disposition": "error",
                                                        "flags": ["error", "not_dialled"]}, [], None))
        self._close()

    def finish(self, report: dict[str, Any]) -> None:
        """The result, then the orphans found; says on stderr when any of it waits in the journal."""
        from callbot.robot.store import records
        from callbot.robot.store.models import utcnow

        fields = {"ended_at": utcnow(), "disposition": report["disposition"], "amd": report["amd"],
                  "amd_cause": report.get("amd_cause"), "amd_decided_at_s": report.get("amd_decided_at_s"),
                  "hangup_by": report["hangup"]["by"], "hangup_cause": report["hangup"]["cause"],
                  "flags": report["flags"], "intents": report["intents"], "barge_ins": report.get("barge_ins", [])}
        self.recorder.submit(records.finish(self.uuid, fields, report["transcripts"], None))
        self._close()

    def _close(self) -> None:
        from callbot.robot.campaign.claims import close_orphan
        from callbot.robot.store.engine import explain
        from callbot.robot.store.models import utcnow

        self.recorder.close(RESULT_WAIT_S)  # everything queued is in the database or the journal
        if self.recorder.journal.pending():
            self.recorder.replay_now()  # the database may be back already (the thread is gone: no second replay)
        pending = self.recorder.journal.pending()
        if pending:
            why = self.recorder.last_error or "see the log"
            click.echo(f"warning: the database could not take this call's record ({why}); it is kept in "
                       f"{self.recorder.journal.dir} and goes into the database at the next `callbot call` or "
                       "`callbot campaign run`", err=True)
        for orphan, found in self.found.items():
            try:
                close_orphan(self.engine, orphan, found, utcnow(), self.rules)
            except Exception as exc:  # noqa: BLE001 - still open: the next run closes it
                log.warning("could not close the killed run's attempt", extra={"call_uuid": orphan,
                                                                                "error": explain(exc)})


def _close(recorder: Any) -> None:
    if recorder is not None:
        recorder.close()


def _esl_host(settings: Settings) -> str:
    return f"{settings.esl.host}:{settings.esl.port}"


def _orphans(engine: Any, esl_host: str) -> list[str]:
    """Open one-off attempts on this switch whose run, on this host, is gone (killed mid-call)."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from callbot.robot.store.models import CallAttempt

    with Session(engine) as s:
        rows = s.execute(select(CallAttempt.call_uuid, CallAttempt.runner_id).where(
            CallAttempt.campaign_id.is_(None), CallAttempt.ended_at.is_(None), CallAttempt.esl_host == esl_host))
        return [u for u, runner in rows if runner_process_gone(runner)]


commands = [call]
