"""Simulated callees, chosen by the originate dial string.

Dial strings:
- ``fixture/<wav>``: rings, answers, then the WAV is the callee's voice from the answer on
  (sample 0 = call time 0, so a sidecar's times are call times). ``<wav>`` is an absolute path or a
  name under the fixtures dir (``.wav`` may be omitted). The WAV's first channel is the callee.
- ``error/<cause>``: fails at once with ``-ERR <CAUSE>`` and no channel events, like FreeSWITCH's
  error endpoint (``error/user_busy``, ``error/no_answer``, ...).

Options, as channel variables in ``{}`` (``sim_<name>=...``) or as a query suffix on the fixture
(``fixture/x.wav?answer_delay_ms=800&hangup_after_s=6``); the query wins:
- ``answer_delay_ms``: ring time before the answer (default ``simswitch.answer_delay_ms``);
- ``answer=false``: never answers (the originate ends with ``NO_ANSWER`` at its timeout);
- ``reject=<CAUSE>``: rings for ``answer_delay_ms``, then fails with that cause;
- ``hangup_after_s``: the callee hangs up at this call time;
- ``hangup_at_end=true``: the callee hangs up when the WAV ends;
- ``hangup_cause``: cause of a callee hangup (default NORMAL_CLEARING);
- ``dtmf=<digits>@<seconds>[;…]``: the callee presses keys, e.g. ``dtmf=9@4.5`` or ``dtmf=12@3;#@8``.
  The switch receives each digit (RFC 2833, a DTMF event) at that call time; further digits of a
  group follow ``DTMF_SPACING_S`` apart;
- ``echo_db=<dB>`` (-60..0) and ``echo_delay_ms`` (0..1000, default ``DEFAULT_ECHO_DELAY_MS``): the
  line returns the robot's playback into the callee's audio, this far below it and this late,
  band-limited to 300-3400 Hz (``media.line_echo``), e.g. ``echo_db=-12&echo_delay_ms=120``;
- ``event_delay_ms`` (0..60000): a lagging switch, as with 200 answers at once: CHANNEL_ANSWER and the
  channel's events after it reach the event socket this late (the originate's reply too), each with its
  own Event-Date-Timestamp; a hangup delivers the backlog at once. A robot that starts its audio stream
  on the answer starts it this late, so the stream's sample 0 comes this long after call time 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

_CAUSE = re.compile(r"^[A-Za-z_]{2,40}$")
_OPTIONS = ("answer_delay_ms", "answer", "reject", "hangup_after_s", "hangup_at_end", "hangup_cause", "dtmf",
            "echo_db", "echo_delay_ms", "event_delay_ms")
MAX_EVENT_DELAY_MS = 60000.0
DEFAULT_ECHO_DELAY_MS = 120.0
DTMF_DIGITS = "0123456789*#ABCD"
DTMF_SPACING_S = 0.3  # between the digits of one group: a 250 ms tone and a 50 ms gap


class DialError(ValueError):
    """The dial string cannot be called; ``cause`` is the FreeSWITCH hangup cause to report."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(f"{cause}: {detail}")
        self.cause = cause


@dataclass(frozen=True)
class CalleeSpec:
    """What the far end of a call does."""

    destination: str  # Caller-Destination-Number
    wav: Path | None = None
    fail_cause: str | None = None  # fail at once, no channel
    answer_delay_s: float = 0.2
    answers: bool = True
    reject_cause: str | None = None  # fail after ringing
    hangup_after_s: float | None = None
    hangup_at_end: bool = False
    hangup_cause: str = "NORMAL_CLEARING"
    dtmf: tuple[tuple[float, str], ...] = ()  # (call time, digit), in time order
    echo_db: float | None = None  # line echo of the robot's playback, dB relative to it (None: no echo)
    echo_delay_ms: float = DEFAULT_ECHO_DELAY_MS
    event_delay_s: float = 0.0  # CHANNEL_ANSWER and what follows reach the event socket this late


def _bool(value: str, name: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise DialError("INVALID_URL", f"option {name}={value!r} is not a boolean")


def _cause(value: str, name: str) -> str:
    if not _CAUSE.match(value):
        raise DialError("INVALID_URL", f"option {name}={value!r} is not a cause name like USER_BUSY")
    return value.upper()


def _number(value: str, name: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DialError("INVALID_URL", f"option {name}={value!r} is not a number") from None
    if not 0 <= x <= 86400:
        raise DialError("INVALID_URL", f"option {name}={value!r} is out of range 0..86400")
    return x


def _echo(opts: dict[str, str]) -> tuple[float | None, float]:
    """``echo_db`` and ``echo_delay_ms``: a level -60..0 dB and a delay 0..1000 ms; a delay alone is refused."""
    if "echo_db" not in opts:
        if "echo_delay_ms" in opts:
            raise DialError("INVALID_URL", "option echo_delay_ms needs echo_db (the echo's level, e.g. echo_db=-12)")
        return None, DEFAULT_ECHO_DELAY_MS
    try:
        level = float(opts["echo_db"])
    except ValueError:
        level = float("nan")
    if not -60 <= level <= 0:
        raise DialError("INVALID_URL", f"option echo_db={opts['echo_db']!r}: the echo's level in dB below the "
                                       "playback, -60..0 (e.g. -12)")
    delay = _number(opts.get("echo_delay_ms", str(DEFAULT_ECHO_DELAY_MS)), "echo_delay_ms")
    if delay > 1000:
        raise DialError("INVALID_URL", f"option echo_delay_ms={delay:g} is out of range 0..1000")
    return level, delay


def _event_delay(value: str) -> float:
    """``event_delay_ms`` in seconds: 0..MAX_EVENT_DELAY_MS ms of lag."""
    try:
        delay = float(value)
    except ValueError:
        delay = float("nan")
    if not 0 <= delay <= MAX_EVENT_DELAY_MS:
        raise DialError("INVALID_URL", f"option event_delay_ms={value!r}: the events' lag after the answer in ms, "
                                       f"0..{MAX_EVENT_DELAY_MS:g} (e.g. 300)")
    return delay / 1000


def _dtmf(value: str) -> tuple[tuple[float, str], ...]:
    keys: list[tuple[float, str]] = []
    for group in filter(None, (g.strip() for g in value.split(";"))):
        digits, at, when = group.partition("@")
        digits = digits.strip().upper()
        if not at or not digits or any(d not in DTMF_DIGITS for d in digits):
            raise DialError("INVALID_URL", f"option dtmf={value!r}: write <digits>@<seconds>[;…] with digits "
                                           f"from {DTMF_DIGITS}, e.g. dtmf=9@4.5;12@7")
        t = _number(when.strip(), "dtmf")
        keys += [(round(t + i * DTMF_SPACING_S, 6), d) for i, d in enumerate(digits)]
    return tuple(sorted(keys))


def resolve_fixture(name: str, fixtures_dir: Path | None) -> Path:
    """An absolute path as is; otherwise a name that must stay inside the fixtures dir."""
    p = Path(name)
    if not p.is_absolute():
        if fixtures_dir is None:
            raise DialError("UNALLOCATED_NUMBER", f"fixture {name!r} is relative and no fixtures dir is set")
        base = fixtures_dir.resolve()
        p = (base / p).resolve()
        if base not in p.parents:
            raise DialError("UNALLOCATED_NUMBER", f"fixture {name!r} leaves the fixtures dir {base}")
    if not p.is_file() and p.suffix != ".wav" and p.with_name(p.name + ".wav").is_file():
        p = p.with_name(p.name + ".wav")
    if not p.is_file():
        raise DialError("UNALLOCATED_NUMBER", f"fixture WAV {p} does not exist")
    return p


def parse_dial(dial: str, variables: dict[str, str], fixtures_dir: Path | None,
               default_answer_delay_ms: int) -> CalleeSpec:
    """The callee for a dial string plus the originate's ``{}`` variables (raises DialError)."""
    endpoint, _, rest = dial.partition("/")
    if endpoint == "error":
        return CalleeSpec(destination=rest, fail_cause=_cause(rest or "DESTINATION_OUT_OF_ORDER", "error/"))
    if endpoint != "fixture":
        raise DialError("CHAN_NOT_IMPLEMENTED", f"endpoint {endpoint!r} is not emulated (use fixture/ or error/)")
    path, _, query = rest.partition("?")
    opts = {k[4:]: v for k, v in variables.items() if k.startswith("sim_") and k[4:] in _OPTIONS}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k not in _OPTIONS:
            raise DialError("INVALID_URL", f"unknown fixture option {k!r}; known: {', '.join(_OPTIONS)}")
        opts[k] = v
    wav = resolve_fixture(path, fixtures_dir)
    echo_db, echo_delay_ms = _echo(opts)
    return CalleeSpec(
        destination=wav.stem,
        wav=wav,
        answer_delay_s=_number(opts.get("answer_delay_ms", str(default_answer_delay_ms)), "answer_delay_ms") / 1000,
        answers=_bool(opts.get("answer", "true"), "answer"),
        reject_cause=_cause(opts["reject"], "reject") if "reject" in opts else None,
        hangup_after_s=_number(opts["hangup_after_s"], "hangup_after_s") if "hangup_after_s" in opts else None,
        hangup_at_end=_bool(opts.get("hangup_at_end", "false"), "hangup_at_end"),
        hangup_cause=_cause(opts.get("hangup_cause", "NORMAL_CLEARING"), "hangup_cause"),
        dtmf=_dtmf(opts.get("dtmf", "")),
        echo_db=echo_db,
        echo_delay_ms=echo_delay_ms,
        event_delay_s=_event_delay(opts.get("event_delay_ms", "0")),
    )
