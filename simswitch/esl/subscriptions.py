"""What one ESL connection listens to: ``event``/``nixevent``/``noevents``/``filter``, as plain state.

Sans-I/O: commands in, Reply-Text out, and ``wants(event)`` for delivery. Semantics of
mod_event_socket (wire-facts 2.3): the format keyword only as the first token; names are
case-insensitive and may carry ``SWITCH_EVENT_``; every token after ``CUSTOM`` is a subclass;
``ALL`` includes every subclass; subscriptions add up; a later ``event json`` switches the format
of everything. Filters OR together, ``-`` values veto, ``/regex/`` values match by regex, and an
event lacking a filtered header does not match (so ``filter Unique-ID x`` drops BACKGROUND_JOB).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from callbot.esl.protocol import EslEvent

FORMATS = ("plain", "json", "xml")
MAX_FILTERS = 256
MAX_FILTER_VALUE = 512


def _parse_names(tokens: list[str]) -> tuple[set[str], set[str], bool]:
    """Event names (upper-cased, ``SWITCH_EVENT_`` dropped), the subclasses after CUSTOM, and ALL."""
    names: set[str] = set()
    subclasses: set[str] = set()
    all_ = custom = False
    for tok in tokens:
        if custom:
            subclasses.add(tok)
            continue
        name = tok.upper().removeprefix("SWITCH_EVENT_")
        if name == "CUSTOM":
            custom = True
        elif name == "ALL":
            all_ = True
        else:
            names.add(name)
    return names, subclasses, all_


@dataclass
class Subscription:
    """The event subscription and filters of one listener."""

    fmt: str | None = None  # None: not listening
    all: bool = False
    names: set[str] = field(default_factory=set)
    custom: set[str] = field(default_factory=set)
    filters: list[tuple[str, str]] = field(default_factory=list)
    _regex: dict[str, re.Pattern[str] | None] = field(default_factory=dict)

    def event(self, args: str) -> str:
        tokens = args.split()
        fmt = "plain"
        if tokens and tokens[0].lower() in FORMATS:
            fmt = tokens.pop(0).lower()
        if not tokens:
            return "-ERR no keywords supplied"
        names, subclasses, all_ = _parse_names(tokens)
        self.names |= names
        self.custom |= subclasses
        self.all = self.all or all_
        self.fmt = fmt
        return f"+OK event listener enabled {fmt}"

    def nixevent(self, args: str) -> str:
        if self.fmt is None:
            return "-ERR not listening for events"
        names, subclasses, all_ = _parse_names(args.split())
        if all_:
            self.all = False
            self.names.clear()
            self.custom.clear()
        self.names -= names
        self.custom -= subclasses
        return "+OK events nixed"

    def noevents(self) -> str:
        if self.fmt is None:
            return "-ERR not listening for events"
        self.fmt, self.all = None, False
        self.names.clear()
        self.custom.clear()
        return "+OK no longer listening for events"

    def filter(self, args: str) -> str:
        parts = args.split(None, 1)
        if parts and parts[0].lower() == "delete":
            rest = parts[1].split(None, 1) if len(parts) > 1 else []
            if not rest:
                return "-ERR invalid syntax"
            name, value = rest[0], rest[1].strip() if len(rest) > 1 else ""
            if name.lower() == "all":
                self.filters.clear()
            else:
                self.filters = [(n, v) for n, v in self.filters if not (n == name and (not value or v == value))]
            return f"+OK filter deleted. [{name}][{value}]"
        if len(parts) < 2 or not parts[1].strip():
            return "-ERR invalid syntax"
        name, value = parts[0], parts[1].strip()
        if len(self.filters) >= MAX_FILTERS or len(value) > MAX_FILTER_VALUE:
            return "-ERR invalid syntax"
        self.filters.append((name, value))
        return f"+OK filter added. [{name}]=[{value}]"

    def wants(self, event: EslEvent) -> bool:
        """Would FreeSWITCH deliver this event to this listener?"""
        if self.fmt is None:
            return False
        name = event.name
        if not (self.all or name in self.names or (name == "CUSTOM" and event.subclass in self.custom)):
            return False
        return self._passes_filters(event) if self.filters else True

    def _passes_filters(self, event: EslEvent) -> bool:
        send = False
        for hname, raw in self.filters:
            hval = event.get(hname)
            if hval is None:
                continue
            positive, value = True, raw
            while value and value[0] in "+- ":
                if value[0] == "+":
                    positive = True
                elif value[0] == "-":
                    positive = False
                value = value[1:]
            if send and positive:
                continue
            if raw.startswith("/"):
                pattern = self._compile(value.strip("/"))
                matched = bool(pattern and pattern.search(hval))
            else:
                matched = hval.lower() == value.lower()
            if matched:
                if not positive:
                    return False
                send = True
        return send

    def _compile(self, text: str) -> re.Pattern[str] | None:
        if text not in self._regex:
            try:
                self._regex[text] = re.compile(text)
            except re.error:
                self._regex[text] = None
        return self._regex[text]
