"""Campaigns and their contacts in the database: create, import (one transaction), pause and resume."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from callbot.robot.campaign.importer import ParsedFile, Rejection
from callbot.robot.store.engine import immediate
from callbot.robot.store.models import Campaign, Contact, Dnc, utcnow

CHUNK = 500  # numbers per IN (...) query


class CampaignError(Exception):
    """A campaign command that cannot proceed; ``exit_code`` 2 for usage, 1 for the database."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def get_campaign(session: Session, name: str) -> Campaign:
    campaign = session.scalar(select(Campaign).where(Campaign.name == name))
    if campaign is None:
        known = session.scalars(select(Campaign.name).order_by(Campaign.name).limit(20)).all()
        hint = f"; campaigns: {', '.join(known)}" if known else ""
        raise CampaignError(f"no campaign named {name!r}: create it with `callbot campaign create {name} "
                            f"--scenario survey_en`{hint}")
    return campaign


def create_campaign(engine: Engine, name: str, scenario: str, overrides: Mapping[str, Any]) -> Campaign:
    """A new campaign (draft); the name must be free."""
    if not name or len(name) > 200 or any(c in name for c in "\n\r\t"):
        raise CampaignError(f"campaign name {name!r}: 1 to 200 characters, one line")
    with Session(immediate(engine), expire_on_commit=False) as s, s.begin():
        if s.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            raise CampaignError(f"campaign {name!r} already exists (`callbot campaign status {name}`)")
        campaign = Campaign(name=name, scenario=scenario, settings=dict(overrides), paused=False, created_at=utcnow())
        s.add(campaign)
    return campaign


def set_paused(engine: Engine, name: str, paused: bool) -> Campaign:
    with Session(immediate(engine), expire_on_commit=False) as s, s.begin():
        campaign = get_campaign(s, name)
        campaign.paused = paused
    return campaign


@dataclass
class ImportResult:
    imported: int = 0
    dnc: int = 0
    duplicates: int = 0
    invalid: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "dnc": self.dnc, "duplicates": self.duplicates,
                "rejected": [r.as_json() for r in self.rejected]}


def import_contacts(engine: Engine, name: str, parsed: ParsedFile) -> ImportResult:
    """Write the accepted rows in one transaction: new numbers only; numbers on DNC become ``dnc`` contacts."""
    result = ImportResult(rejected=list(parsed.rejected))
    with Session(immediate(engine)) as s, s.begin():
        campaign = get_campaign(s, name)
        numbers = [r.number for r in parsed.rows]
        seen = _existing(s, select(Contact.number).where(Contact.campaign_id == campaign.id), Contact.number, numbers)
        blocked = _existing(s, select(Dnc.number), Dnc.number, numbers)
        now = utcnow()
        for row in parsed.rows:
            if row.number in seen:
                result.duplicates += 1
                continue
            seen.add(row.number)
            state, reason = row.state, row.reason
            if state == "pending" and row.number in blocked:
                state, reason = "dnc", "dnc"
            s.add(Contact(campaign_id=campaign.id, number=row.number, state=state, reason=reason, name=row.name,
                          language=row.language, tz=row.tz, zones=list(row.zones), attributes=row.attributes,
                          attempts=0, next_due_at=None, line=row.line, created_at=now))
            if state == "pending":
                result.imported += 1
            elif state == "dnc":
                result.dnc += 1
            else:
                result.invalid += 1
    return result


def _existing(session: Session, query: Any, column: Any, numbers: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(numbers), CHUNK):
        found.update(session.scalars(query.where(column.in_(numbers[i:i + CHUNK]))))
    return found
