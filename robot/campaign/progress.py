"""What a campaign run shows while it works: a rich progress bar on a terminal, one log line per attempt otherwise.

Both write to stderr only (stdout is kept for ``--json``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

log = logging.getLogger("callbot.campaign")


class RunProgress(Protocol):
    def start(self, name: str, total: int, final: int) -> None: ...
    def attempt(self, number: str, attempt_no: int, outcome: str, counts: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class LogProgress:
    """One log line per ended attempt (for pipes, CI and log collectors)."""

    def start(self, name: str, total: int, final: int) -> None:
        log.info("campaign run started", extra={"campaign": name, "contacts": total, "final": final})

    def attempt(self, number: str, attempt_no: int, outcome: str, counts: dict[str, Any]) -> None:
        log.info("attempt ended", extra={"number": number, "attempt": attempt_no, "outcome": outcome, **counts})

    def note(self, text: str) -> None:
        log.info(text)

    def close(self) -> None:
        pass


class RichProgress:
    """A progress bar of contacts made final, with live counts, on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[counts]}"), console=self.console,
                            transient=False)
        self.task: Any = None

    def start(self, name: str, total: int, final: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, completed=final, counts="")

    def attempt(self, number: str, attempt_no: int, outcome: str, counts: dict[str, Any]) -> None:
        text = " ".join(f"{k}={v}" for k, v in counts.items() if k != "final")
        self.bar.update(self.task, completed=counts.get("final", 0), counts=text)

    def note(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        self.bar.stop()


def for_stderr() -> RunProgress:
    return RichProgress() if sys.stderr.isatty() else LogProgress()
