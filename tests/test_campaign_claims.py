"""Claims with leases on SQLite and PostgreSQL: attempt row first, DNC at claim time, windows, pacing, capacity,
two concurrent claimers that never take a contact twice, and expired-lease reconciliation."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callbot.config import CampaignSettings
from callbot.robot.campaign import claims
from callbot.robot.campaign.contacts import create_campaign, import_contacts
from callbot.robot.campaign.dnc import add_numbers
from callbot.robot.campaign.importer import read_contacts
from callbot.windows import parse_windows
from callbot.robot.store import CallAttempt, Campaign, Contact, ensure_schema, make_engine
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)

MONDAY_10_NY = datetime(2024, 6, 3, 14, 0, tzinfo=timezone.utc)
RULES = CampaignSettings(max_concurrent=1000, calls_per_second=1000, switch_sps=1000, max_attempts=2, lease_s=30,
                         dial_template="sofia/gateway/carrier/{number}")
WINDOWS = parse_windows(RULES.windows)


def _campaign(url: str, numbers: list[str], name: str = "c") -> tuple:
    engine = make_engine(url)
    ensure_schema(engine)
    campaign = create_campaign(engine, name, "survey_en", {})
    csv = "number\n" + "\n".join(numbers) + "\n"
    import_contacts(engine, name, read_contacts(csv.encode(), "x.csv", None, None))
    return engine, campaign.id


def _claim(engine, cid, now=MONDAY_10_NY, rules=RULES, runner="r1"):
    return claims.claim_one(engine, cid, runner, "sw1:8021", now, rules, WINDOWS, rules.max_concurrent, rules.cps)


def test_a_claim_writes_the_attempt_with_its_uuid_before_any_dial(db_url):  # noqa: F811
    engine, cid = _campaign(db_url, ["+12125550101"])
    step = _claim(engine, cid)
    claim = step.claim
    assert claim is not None and claim.dial_string == "sofia/gateway/carrier/+12125550101" and claim.attempt_no == 1
    with Session(engine) as s:
        attempt = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == claim.call_uuid))
        assert (attempt.runner_id, attempt.esl_host, attempt.ended_at) == ("r1", "sw1:8021", None)
        assert attempt.lease_expires_at == MONDAY_10_NY + timedelta(seconds=30)
        contact = s.get(Contact, claim.contact_id)
        assert (contact.state, contact.attempts) == ("in_progress", 1)
    assert _claim(engine, cid).claim is None  # nothing else is due


def test_dnc_is_checked_at_claim_time_and_windows_push_contacts_to_their_next_opening(db_url):  # noqa: F811
    engine, cid = _campaign(db_url, ["+12125550101", "+14155550102", "+33612345678"])
    add_numbers(engine, ["+33612345678"], "manual")  # after the import
    step = _claim(engine, cid)  # 10:00 in New York, 07:00 in Los Angeles
    assert step.claim is not None and step.claim.number == "+12125550101"
    step = _claim(engine, cid)
    assert step.claim is None and step.examined == 1
    with Session(engine) as s:
        la = s.scalar(select(Contact).where(Contact.number == "+14155550102"))
        paris = s.scalar(select(Contact).where(Contact.number == "+33612345678"))
        assert la.state == "pending" and la.next_due_at == datetime(2024, 6, 3, 16, 0, tzinfo=timezone.utc)
        assert paris.state == "dnc"
    later = _claim(engine, cid, now=datetime(2024, 6, 3, 16, 0, tzinfo=timezone.utc))
    assert later.claim is not None and later.claim.number == "+14155550102"


def test_pacing_capacity_and_pause_are_campaign_wide(db_url):  # noqa: F811
    engine, cid = _campaign(db_url, [f"+1212555{i:04d}" for i in range(100, 110)])
    slow = CampaignSettings(max_concurrent=2, calls_per_second=2)
    assert _claim(engine, cid, rules=slow, runner="a").claim is not None
    waiting = _claim(engine, cid, rules=slow, runner="b")  # another runner, same instant
    assert waiting.claim is None and waiting.wait_s == 0.5
    half = MONDAY_10_NY + timedelta(seconds=0.5)
    assert _claim(engine, cid, now=half, rules=slow, runner="b").claim is not None
    full = _claim(engine, cid, now=half + timedelta(seconds=5), rules=slow, runner="c")
    assert full.full and full.claim is None
    with Session(engine) as s, s.begin():
        s.get(Campaign, cid).paused = True
    assert _claim(engine, cid, now=half + timedelta(seconds=10)).paused


def test_contacts_without_a_zone_become_invalid_and_max_attempts_fails_them(sqlite_url):  # noqa: F811
    engine, cid = _campaign(sqlite_url, ["+12125550101"])
    with Session(engine) as s, s.begin():
        s.add(Contact(campaign_id=cid, number="+80012345678", state="pending", zones=[], attributes={}, attempts=0))
        s.scalar(select(Contact).where(Contact.number == "+12125550101")).attempts = 2
    step = _claim(engine, cid)
    assert step.claim is None and step.examined == 2
    with Session(engine) as s:
        states = dict(s.execute(select(Contact.number, Contact.reason)).all())
    assert states == {"+12125550101": "max_attempts", "+80012345678": "no_timezone"}


def _race(url: str, runners: int) -> list[str]:
    """Each runner claims until nothing is left; returns every claimed contact number. A shared fake clock
    moves 10 ms per claim attempt, so pacing (1000/s) never holds them back."""
    taken: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    tick = itertools.count()

    def work(name: str) -> None:
        engine = make_engine(url)
        try:
            for _ in range(5000):
                with lock:
                    now = MONDAY_10_NY + timedelta(milliseconds=10 * next(tick))
                step = _claim(engine, 1, now=now, runner=name)
                if step.claim is None and not step.examined and step.wait_s is None:
                    return
                if step.claim is not None:
                    with lock:
                        taken.append(step.claim.number)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=work, args=(f"r{i}",), daemon=True) for i in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return taken


def test_two_claimers_on_postgres_never_take_a_contact_twice(pg_url):  # noqa: F811
    numbers = [f"+1212555{i:04d}" for i in range(1000, 1200)]
    engine, cid = _campaign(pg_url, numbers)
    assert cid == 1
    taken = _race(pg_url, 2)
    assert sorted(taken) == sorted(numbers)  # every contact once, none twice
    with Session(engine) as s:
        per_runner = dict(s.execute(select(CallAttempt.runner_id, func.count()).group_by(CallAttempt.runner_id)).all())
        assert sum(per_runner.values()) == 200 and set(per_runner) == {"r0", "r1"}
        assert s.scalar(select(func.count(func.distinct(CallAttempt.contact_id)))) == 200


def test_two_claimers_on_sqlite_never_take_a_contact_twice(sqlite_url):  # noqa: F811
    numbers = [f"+1212555{i:04d}" for i in range(1000, 1060)]
    _campaign(sqlite_url, numbers)
    taken = _race(sqlite_url, 2)
    assert sorted(taken) == sorted(numbers)


def test_an_expired_lease_is_reconciled_as_interrupted_and_retried(db_url):  # noqa: F811
    engine, cid = _campaign(db_url, ["+12125550101"])
    claim = _claim(engine, cid).claim
    later = MONDAY_10_NY + timedelta(seconds=31)
    (orphan,) = claims.in_flight(engine, cid, "sw1:8021")
    assert orphan.orphaned(later, lambda r: False) and not orphan.orphaned(MONDAY_10_NY, lambda r: False)
    assert orphan.orphaned(MONDAY_10_NY, lambda r: r == "r1")  # its runner is known dead
    assert claims.in_flight(engine, cid, "sw2:8021") == []  # another switch's runner reconciles it, not us
    assert claims.close_orphan(engine, claim.call_uuid, "gone", later, RULES)
    assert not claims.close_orphan(engine, claim.call_uuid, "gone", later, RULES)  # once
    with Session(engine) as s:
        attempt = s.scalar(select(CallAttempt).where(CallAttempt.call_uuid == claim.call_uuid))
        contact = s.get(Contact, claim.contact_id)
    assert (attempt.outcome, attempt.reconciled, attempt.ended_at) == ("interrupted", "gone", later)
    assert contact.state == "pending" and contact.next_due_at == later + timedelta(seconds=300)


def test_two_reconcilers_close_an_orphan_once(pg_url):  # noqa: F811
    engine, cid = _campaign(pg_url, [f"+1212555{i:04d}" for i in range(1000, 1020)])
    taken = [_claim(engine, cid, now=MONDAY_10_NY + timedelta(milliseconds=10 * i)).claim for i in range(20)]
    later = MONDAY_10_NY + timedelta(seconds=60)
    closed: list[bool] = []
    barrier = threading.Barrier(2)

    def reconcile() -> None:
        own = make_engine(pg_url)
        barrier.wait()
        closed.extend(claims.close_orphan(own, c.call_uuid, "gone", later, RULES) for c in taken)
        own.dispose()

    threads = [threading.Thread(target=reconcile) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert closed.count(True) == 20 and closed.count(False) == 20
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Contact).where(Contact.attempts == 1)) == 20
