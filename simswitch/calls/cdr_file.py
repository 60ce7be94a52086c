"""``--cdr FILE.jsonl``: one JSON line per originate received, appended when the call ends (DESIGN section 8).

Keys (contract): ``uuid`` (the origination uuid), ``dial_string``, ``number``, ``received_at``,
``answered``, ``hangup_cause``, ``ended_at``. Times are epoch seconds of simswitch's clock
(virtual under ``--speed``, from ``--start`` when given). An originate that fails at once is
written at once, with ``ended_at`` = ``received_at``; a call still up at shutdown is written then,
with ``ended_at`` and ``hangup_cause`` null.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Originate:
    """What the CDR knows of an originate when it arrives."""

    uuid: str
    dial_string: str
    number: str | None
    received_us: int  # epoch µs of the switch's clock


def _seconds(us: int | None) -> float | None:
    return None if us is None else round(us / 1_000_000, 6)


class CdrFile:
    """Appends CDR lines, one per originate, each flushed as written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"simswitch: cannot append to the CDR file {self.path} ({exc.strerror})") from None
        self._open: dict[str, Originate] = {}  # calls that got a channel, by uuid

    def failed(self, originate: Originate, cause: str | None) -> None:
        """The originate failed without a channel (a dial error, a refusal): written now."""
        self._write(originate, answered=False, cause=cause, ended_us=originate.received_us)

    def opened(self, originate: Originate) -> None:
        """A channel was created: the line waits for the call's end."""
        self._open[originate.uuid] = originate

    def ended(self, uuid: str, answered: bool, cause: str | None, ended_us: int | None) -> None:
        """The call ended (``ended_us`` None: still up at shutdown)."""
        originate = self._open.pop(uuid, None)
        if originate is not None:
            self._write(originate, answered=answered, cause=cause, ended_us=ended_us)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, originate: Originate, *, answered: bool, cause: str | None, ended_us: int | None) -> None:
        if self._file is None:
            return
        line = {"uuid": originate.uuid, "dial_string": originate.dial_string, "number": originate.number,
                "received_at": _seconds(originate.received_us), "answered": answered, "hangup_cause": cause,
                "ended_at": _seconds(ended_us)}
        try:
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._file.flush()
        except OSError as exc:
            log.error("CDR line lost", extra={"path": str(self.path), "uuid": originate.uuid, "error": str(exc)})
