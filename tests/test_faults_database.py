"""Fault suite, the database under `callbot call`: read-only, locked, missing directory, full.

Each fault ends one of two ways, and the test says which: the dial is refused before the switch
sees an originate, with one line naming the problem; or the call runs, its record goes to the
journal, and the next run puts it into the database whole. The call runs through the real CLI
(in-process, click's runner) against simswitch on loopback; no audio server (the call goes on
without barge-in, flagged), so only the database is at fault.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event
from sqlalchemy.pool import Pool

from callbot.app.cli import main
from callbot.robot.store import Store, ensure_schema, make_engine
from callbot.simswitch import SimSwitchThread
from faults_testkit import FIXTURES, PASSWORD, free_port

SPEED = 10.0
LOCK_WAIT_S = 30.0


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimSwitchThread]:
    """simswitch on loopback, and `callbot call`'s settings for it; the journal lives in tmp_path."""
    monkeypatch.chdir(tmp_path)
    with SimSwitchThread(speed=SPEED, esl_port=0, password=PASSWORD, fixtures_dir=FIXTURES) as sim:
        for name, value in {"ESL_PORT": sim.esl_port, "ESL_PASSWORD": PASSWORD, "AUDIO_SERVER_PORT": free_port(),
                            "ROBOT_SPEED": SPEED}.items():
            monkeypatch.setenv(f"CALLBOT_{name}", str(value))
        yield sim


def originates(sim: SimSwitchThread) -> int:
    """How many originates the switch turned into channels since it started."""
    assert sim.switch is not None
    registry = sim.switch.registry
    return sim.call(lambda: registry.sessions_since_start)


def call(monkeypatch: pytest.MonkeyPatch, db_url: str, fixture: str = "fixture/short_yes") -> Result:
    monkeypatch.setenv("CALLBOT_DB_URL", db_url)
    return CliRunner().invoke(main, ["call", fixture, "--json"])


def made_db(path: Path) -> str:
    """A database at the schema's head (as `callbot db upgrade` leaves it)."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    return url


def assert_refused(result: Result, sim: SimSwitchThread, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "refusing to dial" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    assert originates(sim) == 0  # the switch never saw a dial


def assert_recorded_whole(url: str, report: dict[str, Any], destination: str) -> None:
    stored = Store(url).attempt(report["call_uuid"])
    assert stored is not None, "the call's record is lost"
    assert stored["destination"] == destination and stored["disposition"] == report["disposition"]
    assert stored["flags"] == report["flags"]
    assert [(e["source"], e["type"]) for e in stored["events"]] == [(e["source"], e["type"]) for e in report["events"]]


def journal_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "callbot-journal"
    return sorted(folder.glob("journal-*")) if folder.is_dir() else []


def test_fault_read_only_database_refuses_the_dial(switch, monkeypatch, tmp_path):
    url = made_db(tmp_path / "calls.db")
    read_only = f"sqlite:///file:{tmp_path / 'calls.db'}?mode=ro&uri=true"  # CI runs as root: file modes would not bite
    result = call(monkeypatch, read_only)
    assert_refused(result, switch, "readonly", "the database is read-only")
    assert Store(url).attempt("x") is None and not journal_files(tmp_path)


def test_fault_missing_directory_refuses_the_dial(switch, monkeypatch, tmp_path):
    result = call(monkeypatch, f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'calls.db'}")
    assert_refused(result, switch, "unable to open database file", "check that its directory exists")


@pytest.mark.slow
def test_fault_database_locked_before_the_dial_refuses_it(switch, monkeypatch, tmp_path):
    url = made_db(tmp_path / "calls.db")
    holder = sqlite3.connect(tmp_path / "calls.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock past the 5 s busy timeout
    try:
        result = call(monkeypatch, url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_refused(result, switch, "database is locked", "another process holds a write lock")


@pytest.mark.slow
def test_fault_database_locked_mid_call_goes_to_the_journal_then_into_the_database(switch, monkeypatch, tmp_path):
    url = made_db(tmp_path / "calls.db")
    locked, release = threading.Event(), threading.Event()

    def lock_once_the_attempt_is_written() -> None:
        holder = sqlite3.connect(tmp_path / "calls.db", isolation_level=None, timeout=LOCK_WAIT_S)
        while not holder.execute("SELECT count(*) FROM call_attempt").fetchone()[0]:
            pass
        holder.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(120)
        holder.execute("ROLLBACK")
        holder.close()

    thread = threading.Thread(target=lock_once_the_attempt_is_written, daemon=True)
    thread.start()
    try:
        first = call(monkeypatch, url, "fixture/silence")
    finally:
        release.set()
        thread.join(10)
    assert locked.is_set()
    assert first.exit_code == 0, first.output  # the call itself ran its scenario
    report = json.loads(first.stdout)
    assert "could not take this call's record" in first.stderr and "database is locked" in first.stderr
    assert journal_files(tmp_path), "nothing went to the journal"
    print(f"measured: {sum(len(p.read_text().splitlines()) for p in journal_files(tmp_path))} record(s) journaled "
          f"of {len(report['events'])} timeline rows")
    second = call(monkeypatch, url)  # the next run replays the journal before it dials
    assert second.exit_code == 0, second.output
    assert_recorded_whole(url, report, "fixture/silence")
    assert not journal_files(tmp_path)


@pytest.mark.slow
def test_fault_database_full_goes_to_the_journal_then_into_the_database(switch, monkeypatch, tmp_path):
    path = tmp_path / "calls.db"
    url = made_db(path)
    full = {"on": True}

    def clamp(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        """Every connection to this file may not grow it: PRAGMA max_page_count at its current size."""
        files = [row[2] for row in dbapi_conn.execute("PRAGMA database_list")]
        if full["on"] and str(path) in files:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")
        elif str(path) in files:
            dbapi_conn.execute("PRAGMA max_page_count = 1073741823")

    event.listen(Pool, "checkout", clamp)
    try:
        first = call(monkeypatch, url, "fixture/silence")
        full["on"] = False
        assert first.exit_code == 0, first.output
        report = json.loads(first.stdout)
        assert "could not take this call's record" in first.stderr and "full" in first.stderr
        assert journal_files(tmp_path), "nothing went to the journal"
        stored_first = len(Store(url).attempt(report["call_uuid"])["events"])
        assert stored_first < len(report["events"])  # what did not fit
        print(f"measured: {stored_first} of {len(report['events'])} rows fitted before the database was full")
        second = call(monkeypatch, url)
    finally:
        event.remove(Pool, "checkout", clamp)
    assert second.exit_code == 0, second.output
    assert_recorded_whole(url, report, "fixture/silence")
    assert not journal_files(tmp_path)
