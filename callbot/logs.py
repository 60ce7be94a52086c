"""Structured logging to stderr: one line per event, as ``key=value`` text or JSON lines."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a value that holds one (a
# text frame with a newline, say) must not start a line of its own that would pass for a log record.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``): one log line stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, with the ``extra=`` fields as keys."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


class KeyValueFormatter(logging.Formatter):
    """``time level logger msg key=value ...``: greppable and readable."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        extras = " ".join(f"{k}={escape_controls(str(v))}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname.lower():5} {record.name} {escape_controls(record.getMessage())}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(json_lines: bool = False, verbose: bool = False) -> None:
    """Send every log to stderr (stdout is kept for ``--json`` documents)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
