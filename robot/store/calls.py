"""One-off calls (`callbot call`): a report stored whole at the end, by a writer thread off the call path.

A call session never touches the database: its report goes to :class:`StoreWriter`, whose own OS
thread does the writing, so a slow disk can never delay a barge-in. Campaign calls are recorded
as they happen instead (robot.store.recorder).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callbot.robot.store.engine import immediate, make_engine
from callbot.robot.store.models import CallAttempt, CallEvent, Transcript, utcnow
from callbot.robot.store.schema import ensure_schema

log = logging.getLogger(__name__)


class Store:
    """Records one-off call reports and reads them back."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        ensure_schema(self.engine)

    def record_call(self, report: dict[str, Any], destination: str, scenario: str,
                    contact_id: int | None = None) -> int:
        """Store one call's report (robot.report.build_report) with its timeline and finals; returns its id."""
        with Session(immediate(self.engine)) as s, s.begin():
            attempt = CallAttempt(
                call_uuid=report["call_uuid"], contact_id=contact_id, destination=destination, scenario=scenario,
                disposition=report["disposition"], amd=report["amd"], amd_cause=report.get("amd_cause"),
                amd_decided_at_s=report.get("amd_decided_at_s"), hangup_by=report["hangup"]["by"],
                hangup_cause=report["hangup"]["cause"], flags=report["flags"], intents=report["intents"],
                ended_at=utcnow(), barge_ins=report.get("barge_ins", []))
            s.add(attempt)
            s.flush()
            for seq, row in enumerate(report["events"]):
                data = {k: v for k, v in row.items() if k not in ("t", "source", "type")}
                s.add(CallEvent(attempt_id=attempt.id, seq=seq, t=row["t"], source=row["source"],
                                type=row["type"], data=data))
            for tr in report["transcripts"]:
                s.add(Transcript(attempt_id=attempt.id, start_s=tr["start_s"], end_s=tr["end_s"], text=tr["text"]))
            return attempt.id

    def attempt(self, call_uuid: str) -> dict[str, Any] | None:
        """One stored call as plain data (for the CLI and tests)."""
        with Session(self.engine) as s:
            a = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == call_uuid))
            if a is None:
                return None
            return {"call_uuid": a.call_uuid, "destination": a.destination, "disposition": a.disposition,
                    "amd": a.amd, "amd_cause": a.amd_cause, "amd_decided_at_s": a.amd_decided_at_s,
                    "hangup_by": a.hangup_by, "flags": a.flags, "intents": a.intents,
                    "events": [{"t": e.t, "source": e.source, "type": e.type, **e.data} for e in a.events],
                    "transcripts": [{"start_s": t.start_s, "end_s": t.end_s, "text": t.text} for t in a.transcripts]}


class StoreWriter:
    """A bounded queue and one OS thread that writes reports; ``submit`` never blocks the caller."""

    def __init__(self, store: Store, max_queued: int = 1000) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self.written = 0
        self.failed = 0

    def submit(self, report: dict[str, Any], destination: str, scenario: str) -> bool:
        """Queue a report; False (and an error log) when the queue is full: the result is then lost."""
        try:
            self._queue.put_nowait((report, destination, scenario))
            return True
        except queue.Full:
            self.failed += 1
            log.error("store queue full; call result not recorded",
                      extra={"call_uuid": report.get("call_uuid"), "max": self._queue.maxsize})
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.store.record_call(*item)
                self.written += 1
            except Exception:  # one bad write must not stop later ones
                self.failed += 1
                log.exception("store write failed", extra={"call_uuid": item[0].get("call_uuid")})
