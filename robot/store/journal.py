"""The local journal: append-only JSON lines that hold call records while the database cannot take them.

Each process appends to its own file, ``<dir>/journal-<host>-<pid>-<n>.jsonl``, one record per
line, flushed and fsynced, so a crash loses at most a line being written (a torn last line is
skipped on replay and kept in the ``.rejected`` file). The owner holds an exclusive ``flock`` on its
current file from before the file gets its name until it closes it (or dies: the kernel drops the
lock), and a replay takes only files whose lock it gets, so it never takes a file that another
process (or another Journal in this one) still writes. To replay, a process locks a file, renames
it to ``*.replaying-<host>-<pid>`` (atomic, so two processes never replay one file), applies every
record in one transaction (each record is idempotent: see robot.store.records), then deletes it.
A file left ``replaying`` by a process that died is taken over by the next replay on that host.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
_counter = itertools.count()


class JournalError(OSError):
    """The journal directory cannot be written: the message names it and the fix."""


@dataclass
class ReplayResult:
    """What a replay did: records applied (or found already there), files finished, and bad lines set aside."""

    records: int = 0
    files: list[str] = field(default_factory=list)
    rejected: int = 0
    error: str | None = None  # the database went away again mid-replay: the file stays for the next time


class Journal:
    """Appends records for one process; thread-safe."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self._lock = threading.Lock()
        self._file: Any = None
        self.path: Path | None = None
        self.appended = 0

    def check(self) -> None:
        """Make the directory and prove it takes a write (before any call that may need it)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".probe-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise JournalError(f"journal directory {self.dir} is not writable ({exc.strerror or exc}): set "
                               "[campaign] journal_dir to a writable local directory") from None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (flush and fsync) before returning."""
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is None:
                self.dir.mkdir(parents=True, exist_ok=True)
                self.path, self._file = _create_locked(self.dir)
                log.warning("database unavailable: call records go to the journal", extra={"path": str(self.path)})
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.appended += 1

    def reject(self, record: dict[str, Any], error: str) -> None:
        """Keep a record the database refused for its content in ``rejected-<host>-<pid>.jsonl`` (never replayed)."""
        line = json.dumps({**record, "error": error}, default=str, separators=(",", ":")) + "\n"
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / f"rejected-{_host()}-{os.getpid()}{SUFFIX}", "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def rotate(self) -> None:
        """Close the current file, so that a replay can take it; the next append starts a new one."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self.path = None

    def close(self) -> None:
        self.rotate()

    def pending(self) -> list[Path]:
        """Journal files waiting for a replay, oldest first: not one a process still writes (or replays)."""
        if not self.dir.is_dir():
            return []
        with self._lock:
            current = self.path
        files = [p for p in self.dir.iterdir() if p.name.startswith("journal-") and p != current
                 and (p.name.endswith(SUFFIX) or _abandoned_replay(p)) and _free(p)]
        return sorted(files, key=_mtime)

    def replay(self, apply: Callable[[list[dict[str, Any]]], None]) -> ReplayResult:
        """Apply every pending file with ``apply(records)`` (one transaction); stop at the first failure."""
        result = ReplayResult()
        self.rotate()
        for path in self.pending():
            base = path.name.split(".replaying-")[0]
            held = _take(path, path.with_name(f"{base}.replaying-{_host()}-{os.getpid()}"))
            if held is None:  # its owner took the lock back first, or another replay took it
                continue
            handle, taken = held
            with handle:  # the lock, until the file is gone or back under its name
                records, bad = _read(taken)
                if bad:
                    _set_aside(taken, bad)
                    result.rejected += len(bad)
                try:
                    apply(records)
                except Exception as exc:  # noqa: BLE001 - the database failed again: keep the file for next time
                    taken.rename(taken.with_name(base))
                    result.error = f"{type(exc).__name__}: {exc}"
                    return result
                taken.unlink()
            result.records += len(records)
            result.files.append(path.name)
        return result


def _create_locked(directory: Path) -> tuple[Path, Any]:
    """A new journal file, locked before it gets the name a replay looks for (no unlocked moment)."""
    path = directory / f"journal-{_host()}-{os.getpid()}-{next(_counter)}{SUFFIX}"
    hidden = directory / f".{path.name}.new"
    handle = open(hidden, "a", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(hidden, path)
    except BaseException:
        handle.close()
        raise
    return path, handle


def _take(path: Path, taken: Path) -> tuple[Any, Path] | None:
    """Lock ``path`` and rename it to ``taken``; None when another process holds it or it is gone.

    The lock (``flock``, on this open file description) conflicts with the writer's and with another
    replay's, in this process or another; the kernel drops it when its holder dies.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not os.path.samestat(os.fstat(handle.fileno()), os.stat(path)):
            raise FileNotFoundError(path)  # replayed and gone since we opened it: the name is another file's
        path.rename(taken)
    except (BlockingIOError, FileNotFoundError):
        handle.close()
        return None
    except BaseException:
        handle.close()
        raise
    return handle, taken


def _free(path: Path) -> bool:
    """Whether the file is still there and no open file (its writer, a replay) holds its lock."""
    try:
        with open(path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, FileNotFoundError):
        return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # taken by another replay meanwhile: its place in the order does not matter
        return 0.0


def _read(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    bad: list[str] = []
    for line in _lines(path):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "kind" not in record:
                raise ValueError("not a journal record")
            records.append(record)
        except ValueError:
            bad.append(line)
    return records, bad


def _lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                yield line.rstrip("\n")


def _set_aside(path: Path, lines: list[str]) -> None:
    """Torn or foreign lines go to ``<name>.rejected`` beside the journal, never silently away."""
    target = path.with_name(path.name.split(".replaying-")[0] + ".rejected")
    with open(target, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    log.warning("journal lines that are not records were set aside", extra={"path": str(target), "lines": len(lines)})


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _abandoned_replay(path: Path) -> bool:
    """A ``.replaying-<host>-<pid>`` file whose process, on this host, is gone."""
    if ".replaying-" not in path.name:
        return False
    owner = path.name.rsplit(".replaying-", 1)[1]
    host, _, pid = owner.rpartition("-")
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()
