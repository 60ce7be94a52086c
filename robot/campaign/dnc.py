"""The do-not-call list: add, remove, import, list. A number added turns pending contacts to ``dnc`` at once;
the dialer checks the list again whenever it claims a contact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.robot.campaign.importer import DncRow, Rejection
from callbot.robot.store.engine import immediate
from callbot.robot.store.models import Contact, Dnc, utcnow
from callbot.robot.store.records import add_dnc


@dataclass
class DncChange:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def add_numbers(engine: Engine, numbers: Iterable[str], source: str) -> DncChange:
    out = DncChange()
    with Session(immediate(engine)) as s, s.begin():
        now = utcnow()
        for number in dict.fromkeys(numbers):
            (out.changed if add_dnc(s, number, source, now) else out.unchanged).append(number)
    return out


def remove_numbers(engine: Engine, numbers: Iterable[str]) -> DncChange:
    """Take numbers off the list; contacts that were ``dnc`` only because of it become dialable again."""
    out = DncChange()
    with Session(immediate(engine)) as s, s.begin():
        for number in dict.fromkeys(numbers):
            gone = s.execute(delete(Dnc).where(Dnc.number == number)).rowcount
            (out.changed if gone else out.unchanged).append(number)
            if gone:
                s.execute(update(Contact).where(Contact.number == number, Contact.state == "dnc",
                                                Contact.reason == "dnc").values(state="pending", reason=None))
    return out


@dataclass
class DncImport:
    imported: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "duplicates": self.duplicates,
                "rejected": [r.as_json() for r in self.rejected]}


def import_rows(engine: Engine, rows: list[DncRow], rejected: list[Rejection], default_source: str) -> DncImport:
    """All accepted rows in one transaction; numbers already listed (or twice in the file) count as duplicates."""
    out = DncImport(rejected=list(rejected))
    with Session(immediate(engine)) as s, s.begin():
        now = utcnow()
        for row in rows:
            if add_dnc(s, row.number, row.source or default_source, now):
                out.imported += 1
            else:
                out.duplicates += 1
    return out


def list_numbers(engine: Engine) -> list[dict[str, Any]]:
    from callbot.robot.campaign.times import iso

    with Session(engine) as s:
        return [{"number": d.number, "source": d.source, "added_at": iso(d.added_at)}
                for d in s.scalars(select(Dnc).order_by(Dnc.added_at, Dnc.id))]
