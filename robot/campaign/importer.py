"""Contact and DNC CSV files: read as a whole or refused, then checked row by row (line, column, value, reason).

A file that cannot be read as a whole (not UTF-8, empty, no ``number`` column, duplicate column
names, broken quoting) raises :class:`UnreadableFile`: nothing is imported. The CSV reader is
strict: a quote left open is refused naming the row it opened in, never read as one field that
swallows every later row. Otherwise each row is checked and either accepted (normalised: E.164
number, its zones) or reported with the physical line (the header is line 1), the column, the
value and one of the reasons of DESIGN section 8. Writing the accepted rows is
robot.campaign.store's job, in one transaction.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from callbot.robot.campaign.numbers import NumberError, is_zone, number_zones, to_e164

REASONS = ("invalid_number", "unknown_tz", "no_timezone", "missing_value", "bad_value")
CONTACT_COLUMNS = ("number", "tz", "name", "language")
_LANGUAGE = re.compile(r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")
MAX_FIELD = 1000


class UnreadableFile(ValueError):
    """The file cannot be imported at all; the message names it and says what is wrong."""


@dataclass(frozen=True)
class Rejection:
    line: int
    column: str
    value: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "value": self.value, "reason": self.reason}


@dataclass
class ContactRow:
    line: int
    number: str
    zones: tuple[str, ...]  # the tz column, else the number's zones; () = the campaign's default_tz
    tz: str | None = None
    name: str | None = None
    language: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    state: str = "pending"  # or "invalid" (no_timezone)
    reason: str | None = None


@dataclass
class ParsedFile:
    rows: list[ContactRow] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _table(data: bytes, source: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header (lower-cased names) and (line, fields) of each data row."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UnreadableFile(f"{source}: not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); "
                             "save it as UTF-8 and import again") from None
    if not text.strip():
        raise UnreadableFile(f"{source}: the file is empty; it needs a header line with a number column, then rows")
    if "\x00" in text:
        raise UnreadableFile(f"{source}: contains NUL bytes; it is not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise UnreadableFile(_csv_problem(source, exc, 1, reader.line_num)) from None
    names = [h.strip().lower() for h in header]
    if "number" not in names:
        raise UnreadableFile(f"{source}: the header (line 1) has no 'number' column; found {names}")
    dupes = sorted(n for n, times in Counter(names).items() if n and times > 1)  # linear: 100000 columns
    if dupes:
        raise UnreadableFile(f"{source}: the header (line 1) names {dupes} more than once")

    def rows() -> Iterator[tuple[int, list[str]]]:
        last = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise UnreadableFile(_csv_problem(source, exc, last + 1, reader.line_num)) from None
            line, last = last + 1, reader.line_num
            if fields and any(f.strip() for f in fields):
                yield line, fields
    return names, rows()


def _csv_problem(source: str, exc: csv.Error, first: int, at: int) -> str:
    """The one line naming the file, the line and the fix; ``first`` is the row's first line, ``at`` where it broke."""
    if str(exc) == "unexpected end of data":
        return (f"{source}: line {first}: a quote opened in this row is never closed (the file ends inside it, so "
                "every later row would be read as part of one field); close the quote, or double a quote that is "
                "part of the text (\"\")")
    if "expected after" in str(exc):
        return (f"{source}: line {at}: {exc}: text follows a closing quote; a quote that is part of a quoted "
                "field is written twice (\"\")")
    return f"{source}: line {at}: {exc}"


def read_contacts(data: bytes, source: str, region: str | None, default_tz: str | None) -> ParsedFile:
    """Check a contacts CSV: ``number`` required; ``tz``, ``name``, ``language`` optional; others are attributes."""
    names, rows = _table(data, source)
    out = ParsedFile()
    for line, fields in rows:
        problems: list[Rejection] = []
        if len(fields) > len(names):
            extra = ",".join(fields[len(names):])
            problems.append(Rejection(line, f"#{len(names) + 1}", extra[:200], "bad_value"))
        cells = {n: (fields[i].strip() if i < len(fields) else "") for i, n in enumerate(names) if n}
        for column, value in cells.items():
            if len(value) > MAX_FIELD:
                problems.append(Rejection(line, column, value[:200], "bad_value"))
        number = _number(cells.get("number", ""), line, region, problems)
        tz = cells.get("tz") or None
        if tz is not None and not is_zone(tz):
            problems.append(Rejection(line, "tz", tz, "unknown_tz"))
        language = cells.get("language") or None
        if language is not None and not _LANGUAGE.match(language):
            problems.append(Rejection(line, "language", language, "bad_value"))
        if problems:
            out.rejected.extend(problems)
            continue
        assert number is not None
        zones = (tz,) if tz else number_zones(number)
        row = ContactRow(line=line, number=number, zones=zones, tz=tz, name=cells.get("name") or None,
                         language=language,
                         attributes={k: v for k, v in cells.items() if k not in CONTACT_COLUMNS and v != ""})
        if not zones and not default_tz:
            row.state, row.reason = "invalid", "no_timezone"
            out.rejected.append(Rejection(line, "number", cells["number"], "no_timezone"))
        out.rows.append(row)
    return out


@dataclass
class DncRow:
    line: int
    number: str
    source: str | None


def read_dnc(data: bytes, source: str, region: str | None) -> tuple[list[DncRow], list[Rejection]]:
    """Check a DNC CSV: ``number`` required, ``source`` optional (default: the file's name)."""
    names, rows = _table(data, source)
    good: list[DncRow] = []
    bad: list[Rejection] = []
    for line, fields in rows:
        cells = {n: (fields[i].strip() if i < len(fields) else "") for i, n in enumerate(names) if n}
        problems: list[Rejection] = []
        number = _number(cells.get("number", ""), line, region, problems)
        if problems:
            bad.extend(problems)
            continue
        assert number is not None
        good.append(DncRow(line, number, cells.get("source") or None))
    return good, bad


def _number(value: str, line: int, region: str | None, problems: list[Rejection]) -> str | None:
    if not value:
        problems.append(Rejection(line, "number", value, "missing_value"))
        return None
    try:
        return to_e164(value, region)
    except NumberError:
        problems.append(Rejection(line, "number", value, "invalid_number"))
        return None


def read_file(path: str | Path) -> bytes:
    """The file's bytes, or UnreadableFile naming it."""
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise UnreadableFile(f"{p}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFile(f"{p}: is a directory, not a CSV file") from None
    except OSError as exc:
        raise UnreadableFile(f"{p}: cannot be read ({exc.strerror})") from None
