"""Call records as they happen: to the database, or to the local journal when it is locked, read-only, full or
unreachable, then replayed into it (idempotently): nothing is lost, nothing is written twice."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from callbot.robot.store import CallAttempt, CallEvent, Dnc, Transcript, ensure_schema, make_engine
from callbot.robot.store import records
from callbot.robot.store.engine import explain, is_unavailable
from callbot.robot.store.journal import Journal, JournalError
from callbot.robot.store.recorder import CallRecorder
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)

NOW = datetime(2024, 6, 3, 14, 0, tzinfo=timezone.utc)


def _attempt(engine, call_uuid: str | None = None) -> str:
    call_uuid = call_uuid or str(uuid.uuid4())
    with Session(engine) as s, s.begin():
        s.add(CallAttempt(call_uuid=call_uuid, destination="fixture/x", scenario="survey_en", flags=[], intents=[],
                          barge_ins=[], recorded_at=NOW, started_at=NOW))
    return call_uuid


def _rows(n: int) -> list[dict]:
    return [{"t": i * 0.5, "source": "robot", "type": "state", "state": f"s{i}"} for i in range(n)]


def _events(engine, call_uuid: str) -> list[tuple[int, str]]:
    with Session(engine) as s:
        a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call_uuid))
        return [(e.seq, e.data["state"]) for e in a.events]


def _finish(call_uuid: str) -> dict:
    return records.finish(call_uuid, {"ended_at": NOW, "outcome": "completed", "disposition": "confirmed"},
                          [{"start_s": 1.0, "end_s": 2.0, "text": "yes"}], None)


def test_rows_are_written_as_they_happen(db_url, tmp_path):  # noqa: F811
    engine = make_engine(db_url)
    ensure_schema(engine)
    call = _attempt(engine)
    recorder = CallRecorder(engine, Journal(tmp_path / "journal"))
    for seq, row in enumerate(_rows(3)):
        recorder.submit(records.event(call, seq, row))
    assert recorder.flush() == "db"
    assert _events(engine, call) == [(0, "s0"), (1, "s1"), (2, "s2")]  # before the call is over
    recorder.submit(records.attempt(call, answered_at=NOW, first_audio_s=0.12))
    recorder.submit(_finish(call))
    recorder.close()
    with Session(engine) as s:
        a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call))
        assert (a.outcome, a.answered_at, a.first_audio_s, a.transcripts[0].text) == ("completed", NOW, 0.12, "yes")
    assert recorder.journaled == 0 and not list((tmp_path / "journal").glob("journal-*"))


def test_a_locked_database_sends_rows_to_the_journal_then_they_are_replayed_once(tmp_path):
    path = tmp_path / "calls.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url, busy_timeout_ms=50)
    ensure_schema(engine)
    call = _attempt(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    recorder = CallRecorder(engine, Journal(tmp_path / "journal"), retry_s=0.05)
    for seq, row in enumerate(_rows(4)):
        recorder.submit(records.event(call, seq, row))
    assert recorder.flush() == "journal"
    assert not recorder.db_ok and "locked" in recorder.last_error
    holder.execute("ROLLBACK")
    holder.close()
    import time

    time.sleep(0.1)
    recorder.submit(records.event(call, 4, _rows(5)[4]))  # the next write replays the journal first
    assert recorder.flush() == "db"
    recorder.close()
    assert _events(engine, call) == [(i, f"s{i}") for i in range(5)]
    assert recorder.replayed == 4 and recorder.journaled == 4


def test_a_read_only_database_then_a_writable_one_replays_the_journal(tmp_path):
    path = tmp_path / "calls.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    call = _attempt(engine)
    engine.dispose()
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    journal_dir = tmp_path / "journal"
    recorder = CallRecorder(read_only, Journal(journal_dir), retry_s=3600)
    for seq, row in enumerate(_rows(2)):
        recorder.submit(records.event(call, seq, row))
    recorder.submit(_finish(call))
    recorder.submit(records.dnc("+14155550123", "opt_out:test", NOW))
    recorder.close()
    assert recorder.journaled == 4 and "read-only" in recorder.last_error
    (journal_file,) = journal_dir.glob("journal-*.jsonl")
    assert [json.loads(line)["kind"] for line in journal_file.read_text().splitlines()] == \
        ["event", "event", "finish", "dnc"]
    # a later process with a writable database replays it
    writable = make_engine(f"sqlite:///{path}")
    later = CallRecorder(writable, Journal(journal_dir))
    result = later.replay_now()
    later.close()
    assert result.records == 4 and result.error is None and not list(journal_dir.glob("journal-*.jsonl"))
    assert _events(writable, call) == [(0, "s0"), (1, "s1")]
    with Session(writable) as s:
        assert s.scalar(select(CallAttempt.outcome).where(CallAttempt.call_uuid == call)) == "completed"
        assert s.scalar(select(Dnc.source)) == "opt_out:test"


def test_a_full_database_goes_to_the_journal(tmp_path):
    path = tmp_path / "calls.db"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    call = _attempt(engine)
    full = make_engine(f"sqlite:///{path}")

    @event.listens_for(full, "connect")
    def _cap(dbapi_conn, _record):  # no page may be added: SQLITE_FULL on the next growth
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    recorder = CallRecorder(full, Journal(tmp_path / "journal"), retry_s=3600)
    big = {"t": 0.0, "source": "audio", "type": "final", "state": "x", "text": "y" * 200_000}
    recorder.submit(records.event(call, 0, big))
    assert recorder.flush() == "journal"
    recorder.close()
    assert "full" in recorder.last_error


def test_an_unreachable_postgres_goes_to_the_journal(tmp_path):
    engine = make_engine("postgresql+psycopg://callbot:x@127.0.0.1:1/none?connect_timeout=2")
    recorder = CallRecorder(engine, Journal(tmp_path / "journal"), retry_s=3600)
    recorder.submit(records.event(str(uuid.uuid4()), 0, _rows(1)[0]))
    assert recorder.flush() == "journal"
    recorder.close()
    assert "cannot be reached" in recorder.last_error


def test_replaying_the_same_journal_twice_changes_nothing(sqlite_url, tmp_path):  # noqa: F811
    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    call = _attempt(engine)
    journal = Journal(tmp_path / "j")
    for seq, row in enumerate(_rows(3)):
        journal.append(records.event(call, seq, row))
    journal.append(_finish(call))
    journal.append(records.dnc("+14155550123", "opt_out:test", NOW))
    journal.close()
    (path,) = (tmp_path / "j").glob("journal-*.jsonl")
    shutil.copy(path, tmp_path / "j" / "journal-copy-1-0.jsonl")  # the same records, twice
    with open(path, "a") as f:
        f.write('{"kind": "event", "call_uu')  # torn last line of a crash
    recorder = CallRecorder(engine, Journal(tmp_path / "j"))
    result = recorder.replay_now()
    recorder.close()
    assert result.records == 10 and result.rejected == 1 and result.error is None
    assert _events(engine, call) == [(0, "s0"), (1, "s1"), (2, "s2")]
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Transcript)) == 1
        assert s.scalar(select(func.count()).select_from(Dnc)) == 1
        assert s.scalar(select(func.count()).select_from(CallEvent)) == 3
    assert len(list((tmp_path / "j").glob("*.rejected"))) == 1  # the torn line is kept, not dropped


def test_a_journal_result_replaces_an_interrupted_written_by_a_reconcile(sqlite_url, tmp_path):  # noqa: F811
    engine = make_engine(sqlite_url)
    ensure_schema(engine)
    call = _attempt(engine)
    with Session(engine) as s, s.begin():
        a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call))
        a.ended_at, a.outcome, a.reconciled = NOW, "interrupted", "gone"
    with Session(engine) as s, s.begin():
        records.apply(s, [_finish(call)])
    with Session(engine) as s:
        a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call))
        assert a.outcome == "completed" and a.reconciled is None
        assert "result_replayed_over_reconcile_gone" in a.flags


def test_an_unwritable_journal_directory_is_refused_with_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="journal_dir"):
        Journal(blocker / "journal").check()


def test_unavailable_means_the_database_not_the_data():
    from sqlalchemy import exc

    locked = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert is_unavailable(locked) and "write lock" in explain(locked)
    assert not is_unavailable(exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
