"""`campaign status` and `report`: the contact partition, states, outcome and AMD counts, abandonment, next due;
runner identities."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from callbot.config import CampaignSettings
from callbot.robot.campaign import claims
from callbot.robot.campaign.contacts import create_campaign, import_contacts, set_paused
from callbot.robot.campaign.importer import read_contacts
from callbot.robot.campaign.status import REPORT_COLUMNS, report, status
from callbot.windows import parse_windows
from callbot.robot.store import CallAttempt, Campaign, ensure_schema, make_engine, records
from test_store_kit import db_url, pg_url  # noqa: F401 (fixtures)

NOW = datetime(2024, 6, 3, 14, 0, tzinfo=timezone.utc)  # Monday 10:00 in New York, 07:00 in Los Angeles
RULES = CampaignSettings(max_concurrent=100, calls_per_second=1000, switch_sps=1000)


def _finish(engine, claim, outcome: str, *, amd: str | None, abandoned: bool, answered: bool, state: str) -> None:
    fields = {"ended_at": NOW + timedelta(seconds=30), "outcome": outcome, "amd": amd, "abandoned": abandoned,
              "answered_at": NOW + timedelta(seconds=5) if answered else None,
              "barge_ins": [{"speech_onset_s": 1.5, "detected_s": 3.0, "break_at_switch_s": 3.02}]}
    with Session(engine) as s, s.begin():
        records.apply(s, [records.finish(claim.call_uuid, fields, [{"start_s": 3, "end_s": 4, "text": "yes"},
                                                                   {"start_s": 5, "end_s": 6, "text": "bye"}],
                                         {"state": state, "next_due_at": None, "reason": outcome,
                                          "last_outcome": outcome})])


def test_status_partitions_contacts_and_counts_attempts(db_url):  # noqa: F811
    engine = make_engine(db_url)
    ensure_schema(engine)
    create_campaign(engine, "c", "survey_en", {})
    csv = "number\n+12125550101\n+12125550102\n+12125550103\n+14155550104\n+12125550105\n"
    import_contacts(engine, "c", read_contacts(csv.encode(), "c.csv", None, None))
    with Session(engine) as s, s.begin():
        s.execute(update(Campaign).values(clock={"speed": 10.0, "frozen": "2024-06-03T14:00:00.000Z"}))
    rules_for = lambda campaign: RULES  # noqa: E731
    doc = status(engine, "c", rules_for)
    assert doc["state"] == "draft" and doc["contacts"] == {
        "total": 5, "pending": 4, "scheduled": 1, "in_progress": 0, "done": 0, "failed": 0, "dnc": 0, "invalid": 0}
    assert doc["next_due"] == "2024-06-03T14:00:00.000Z"
    claims.register_runner(engine, 1, "r1", "sw:8021", NOW, 30, {"speed": 10.0, "frozen": "2024-06-03T14:00:00Z"})
    windows = parse_windows(RULES.windows)
    taken = [claims.claim_one(engine, 1, "r1", "sw:8021", NOW + timedelta(seconds=i), RULES, windows, 100, 1000).claim
             for i in range(3)]
    _finish(engine, taken[0], "completed", amd="human", abandoned=True, answered=True, state="done")
    _finish(engine, taken[1], "machine", amd="machine", abandoned=True, answered=True, state="pending")
    doc = status(engine, "c", rules_for)
    assert doc["contacts"]["in_progress"] == 1 and doc["contacts"]["done"] == 1
    assert sum(v for k, v in doc["contacts"].items() if k != "total") == doc["contacts"]["total"]
    assert doc["attempts"] == 3 and doc["outcomes"]["completed"] == 1 and doc["outcomes"]["machine"] == 1
    assert doc["amd"] == {"human": 1, "machine": 1, "notsure": 0}
    assert doc["abandoned"] == 2 and doc["abandon_rate"] == 1.0  # a machine is not a person: 1 of 1
    assert doc["state"] == "running"  # r1's lease is live on the campaign's (frozen) clock
    set_paused(engine, "c", True)
    assert status(engine, "c", rules_for)["state"] == "paused"
    rep = report(engine, "c")
    assert rep["campaign"] == "c" and len(rep["attempts"]) == 3
    first = rep["attempts"][0]
    assert tuple(first) == REPORT_COLUMNS
    assert first["transcript"] == "yes bye" and first["runner"] == "r1" and first["attempt"] == 1
    assert first["answered_at"] == "2024-06-03T14:00:05.000Z" and first["barge_ins"][0]["detected_s"] == 3.0
    with Session(engine) as s:
        assert s.scalar(select(CallAttempt.outcome).where(CallAttempt.call_uuid == taken[2].call_uuid)) is None


def test_runner_ids_say_when_their_process_is_gone():
    assert claims.default_runner_id().endswith(f":{__import__('os').getpid()}")
    assert not claims.runner_process_gone(claims.default_runner_id())  # ourselves
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = claims.default_runner_id().rsplit(":", 1)[0]
    assert claims.runner_process_gone(f"{host}:{child.pid}")
    assert not claims.runner_process_gone(f"other-host:{child.pid}")  # not ours to judge
    assert not claims.runner_process_gone("r1") and not claims.runner_process_gone(None)
