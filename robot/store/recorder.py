"""Writes call records as they happen, from one OS thread: to the database, or to the journal while it is unavailable.

Calls hand records over with non-blocking methods (a call greenlet never waits on a disk); the
thread writes them in small batches, one transaction each. When the database is locked,
read-only, full or unreachable, the batch goes to the local journal (robot.store.journal) and
so does every record after it, until a retry (every ``retry_s``) replays the journal into the
database; then writing goes back to the database. If the queue is full, the record is journaled
by the caller itself: nothing is dropped.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.robot.store import records
from callbot.robot.store.engine import explain, immediate, is_unavailable
from callbot.robot.store.journal import Journal, ReplayResult

log = logging.getLogger(__name__)

Item = tuple[dict[str, Any], "concurrent.futures.Future[str] | None"]


class CallRecorder:
    """The writer thread; :meth:`submit` queues a record (robot.store.records) and returns at once."""

    def __init__(self, engine: Engine, journal: Journal, *, max_queued: int = 10000, batch_max: int = 200,
                 retry_s: float = 5.0) -> None:
        self.engine = engine
        self.journal = journal
        self.batch_max = batch_max
        self.retry_s = retry_s
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=max_queued)
        self.db_ok = True
        self.last_error: str | None = None
        self._retry_at = 0.0
        self.written = 0  # records in the database
        self.journaled = 0  # records that went to the journal
        self.replayed = 0  # journal records applied later
        self.rejected = 0  # records the database refused for their content (kept in a .rejected journal)
        self._thread = threading.Thread(target=self._run, name="call-recorder", daemon=True)
        self._thread.start()

    # ---- producers (any thread) --------------------------------------------------------------

    def submit(self, record: dict[str, Any], wait: bool = False) -> concurrent.futures.Future[str] | None:
        """Queue one record; with ``wait`` the Future says where it went (``db`` or ``journal``)."""
        future: concurrent.futures.Future[str] | None = concurrent.futures.Future() if wait else None
        try:
            self._queue.put_nowait((record, future))
        except queue.Full:
            self.journal.append(record)
            self.journaled += 1
            if future is not None:
                future.set_result("journal")
        return future

    def flush(self, timeout: float = 30.0) -> str:
        """Wait until everything queued so far is written or journaled."""
        future = self.submit({"kind": "flush"}, wait=True)
        assert future is not None
        return future.result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.journal.close()

    def replay_now(self) -> ReplayResult:
        """Apply the journal's pending files now (a start-up step; the thread also does it on its own)."""
        return self.journal.replay(self._apply_journal)

    # ---- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:  # while the database is down, wake up to replay the journal even if no call writes
                first = self._queue.get(timeout=None if self.db_ok else self.retry_s)
            except queue.Empty:
                self._try_recover()
                continue
            if first is None:
                return
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    return
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[Item]) -> None:
        recs = [r for r, _ in batch if r.get("kind") != "flush"]
        where = "db"
        if not self.db_ok and time.monotonic() >= self._retry_at:
            self._try_recover()
        if self.db_ok and recs:
            try:
                self._apply(recs)
                self.written += len(recs)
            except Exception as exc:  # noqa: BLE001 - sorted below: unavailable vs refused
                if is_unavailable(exc):
                    self._went_down(exc)
                else:
                    where = self._one_by_one(recs)
        if not self.db_ok and recs:
            for r in recs:
                self.journal.append(r)
            self.journaled += len(recs)
            where = "journal"
        for _, future in batch:
            if future is not None and not future.done():
                future.set_result(where)

    def _apply(self, recs: list[dict[str, Any]]) -> None:
        with Session(immediate(self.engine)) as session, session.begin():
            records.apply(session, recs)

    def _apply_journal(self, recs: list[dict[str, Any]]) -> None:
        """One journal file: all in one transaction; if the database refuses some content, the rest
        one by one and the refused records set aside. Unavailable again: raise (the file is kept)."""
        try:
            self._apply(recs)
            self.replayed += len(recs)
        except Exception as exc:  # noqa: BLE001
            if is_unavailable(exc):
                raise
            self._one_by_one(recs, replaying=True)

    def _one_by_one(self, recs: list[dict[str, Any]], replaying: bool = False) -> str:
        """A batch the database refused: write what it takes, and keep each refused record with its error.
        A database that goes away meanwhile: the rest to the journal, or (``replaying`` it) raise."""
        for r in recs:
            try:
                self._apply([r])
            except Exception as exc:  # noqa: BLE001
                if not is_unavailable(exc):
                    self._reject(r, exc)
                elif replaying:
                    raise
                else:
                    self._went_down(exc)
                    self.journal.append(r)
                    self.journaled += 1
                continue
            if replaying:
                self.replayed += 1
            else:
                self.written += 1
        return "db" if self.db_ok else "journal"

    def _reject(self, record: dict[str, Any], exc: BaseException) -> None:
        self.rejected += 1
        log.error("call record refused by the database; kept in the journal's rejected file",
                  extra={"kind": record.get("kind"), "call_uuid": record.get("call_uuid"), "error": str(exc)[:300]})
        self.journal.reject(record, f"{type(exc).__name__}: {exc}"[:500])

    def _went_down(self, exc: BaseException) -> None:
        if self.db_ok:
            log.error("database unavailable; call records go to the journal until it is back",
                      extra={"error": explain(exc), "journal": str(self.journal.dir)})
        self.db_ok = False
        self.last_error = explain(exc)
        self._retry_at = time.monotonic() + self.retry_s

    def _try_recover(self) -> None:
        result = self.journal.replay(self._apply_journal)
        if result.error is None:
            self.db_ok = True
            self.last_error = None
            log.warning("database back; journal replayed", extra={"records": result.records, "files": result.files})
        else:
            self._retry_at = time.monotonic() + self.retry_s
