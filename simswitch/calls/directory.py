"""Where an originate leads: simswitch's own dial specs, and numbers mapped by ``--callees FILE.csv``.

DESIGN section 8 (contract): the CSV has a header with the columns ``number,callee``; ``callee`` is
a dial spec simswitch understands (``fixture/<wav>?answer_delay_ms=…``, ``error/<cause>``, …), a
relative WAV path being relative to the CSV's folder. An originate whose endpoint's last ``/``
segment (after any ``{…}`` and ``[…]`` variables, before any ``@host``) is a number of the file
reaches that callee; numbers compare as ``+`` and digits. A number not in the file gets
``UNALLOCATED_NUMBER``. ``fixture/…`` and ``error/…`` endpoints keep working beside the file.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from callbot.simswitch.calls.callees import CalleeSpec, DialError, parse_dial

OWN_ENDPOINTS = ("fixture", "error")


class CalleesFileError(ValueError):
    """The ``--callees`` file cannot be used; the message names the file, the line and what to do."""


def as_number(text: str) -> str | None:
    """A number as ``+`` and digits (``+1 (555) 010-0`` → ``+15550100``); None without a digit."""
    number = "".join(c for c in text if c == "+" or c.isdigit())
    return number if any(c.isdigit() for c in number) else None


def dialled_number(endpoint: str) -> str | None:
    """The number an endpoint dials: its last ``/`` segment after any ``{…}``/``[…]`` variables and
    before any ``@host``, as ``+`` and digits (``[a=b]sofia/gateway/gw/+15550100@host`` → ``+15550100``).
    simswitch's own ``fixture/`` and ``error/`` endpoints dial no number."""
    while endpoint.startswith(("{", "[")):
        end = endpoint.find("}" if endpoint[0] == "{" else "]")
        if end == -1:
            return None
        endpoint = endpoint[end + 1:]
    if endpoint.partition("/")[0] in OWN_ENDPOINTS:
        return None
    return as_number(endpoint.rsplit("/", 1)[-1].split("@", 1)[0])


class CalleeDirectory:
    """Resolves an originate's endpoint and variables to the callee it reaches (raises DialError)."""

    def __init__(self, fixtures_dir: Path | None, default_answer_delay_ms: int,
                 numbers: dict[str, str] | None = None) -> None:
        self.fixtures_dir = fixtures_dir
        self.default_answer_delay_ms = default_answer_delay_ms
        self.numbers = numbers  # number → dial spec with absolute WAV paths; None without --callees

    @classmethod
    def with_callees_file(cls, path: str | Path, fixtures_dir: Path | None,
                          default_answer_delay_ms: int) -> "CalleeDirectory":
        """Load and check the whole file at start: a bad row stops the switch before any call."""
        path = Path(path)
        directory = cls(fixtures_dir, default_answer_delay_ms, {})
        assert directory.numbers is not None
        try:
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CalleesFileError(f"{path}: cannot read the callees file ({exc})") from None
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if "number" not in header or "callee" not in header:
            raise CalleesFileError(f"{path}:1: the header must name the columns number,callee (found {rows[0] if rows else 'an empty file'})")
        col_number, col_callee = header.index("number"), header.index("callee")
        for line, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(col_number, col_callee):
                raise CalleesFileError(f"{path}:{line}: expected the columns number,callee, got {row}")
            number, spec = as_number(row[col_number]), row[col_callee].strip()
            if number is None:
                raise CalleesFileError(f"{path}:{line}: {row[col_number]!r} is not a number")
            if number in directory.numbers:
                raise CalleesFileError(f"{path}:{line}: {number} is listed twice")
            spec = _anchored(spec, path.parent)
            try:
                parse_dial(spec, {}, fixtures_dir, default_answer_delay_ms)
            except DialError as exc:
                raise CalleesFileError(f"{path}:{line}: callee {row[col_callee]!r} cannot be dialled ({exc})") from None
            directory.numbers[number] = spec
        return directory

    def resolve(self, endpoint: str, variables: dict[str, str]) -> CalleeSpec:
        """The callee of an endpoint (its ``{…}``/``[…]`` variables already taken off)."""
        if endpoint.partition("/")[0] in OWN_ENDPOINTS or self.numbers is None:
            return parse_dial(endpoint, variables, self.fixtures_dir, self.default_answer_delay_ms)
        number = dialled_number(endpoint)
        spec = self.numbers.get(number) if number is not None else None
        if spec is None:
            raise DialError("UNALLOCATED_NUMBER", f"{endpoint!r}: {number or 'no number'} is not in the callees file")
        callee = parse_dial(spec, variables, self.fixtures_dir, self.default_answer_delay_ms)
        return dataclasses.replace(callee, destination=number)


def _anchored(spec: str, folder: Path) -> str:
    """``fixture/<relative WAV>`` made absolute from the CSV's folder when the file is there (with or
    without ``.wav``); otherwise unchanged, so that a bundled name (``fixture/long_reply``) still works."""
    endpoint, _, rest = spec.partition("/")
    wav, mark, query = rest.partition("?")
    if endpoint != "fixture" or not wav or Path(wav).is_absolute():
        return spec
    path = (folder / wav).resolve()
    for candidate in (path, path.with_name(path.name + ".wav")):
        if candidate.is_file():
            return f"fixture/{candidate}{mark}{query}"
    return spec
