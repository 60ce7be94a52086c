"""A mixed campaign end to end against simswitch, checked against what the mix implies; prints one JSON document.

Usage: python scripts/campaign_mix.py [--contacts 1000] [--speed 5] [--dir DIR] [--db URL] [--workers N]
       python scripts/campaign_mix.py --simulate [--day] [--contacts 100] [--speed 60]

Builds a contacts CSV and a simswitch ``--callees`` CSV from the bundled demo calls (and the answering
machines of tests/fixtures/amd): people talking over the greeting, short replies, silent people, busy,
no answer, rejected, unallocated numbers, answering machines with a beep, DTMF opt-outs, numbers already
on DNC and numbers where it is night. It starts ``callbot simswitch --callees --cdr --start --speed`` and
``callbot audio-server --no-stt`` as their own processes, creates and imports the campaign, runs
``callbot campaign run --speed`` to its end, then checks every attempt's outcome, every retry count and
every DNC entry against the mix, and the switch's CDR against the campaign (DESIGN section 8: no
contact in two calls at once, none dialled more than max_attempts times, outside its window or while
on DNC, every originate has its attempt with an outcome). Exit 0 when there is no violation.

With ``--simulate`` the run is ``callbot campaign simulate`` instead: simswitch, the audio server and the runner
in one process on one clock, in lockstep, so the decisions do not depend on ``--speed``; ``--day`` runs it from
06:00Z until every contact is final (the Tokyo contacts in their afternoon, then New York's).

tests/test_campaign_e2e.py runs the same mix (its few dozen contacts) with these builders and checks, and
tests/test_campaign_simulate.py the simulated one at two speeds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
AMD = REPO / "tests" / "fixtures" / "amd"
START = "2024-06-03T14:00:00Z"  # Monday: 10:00 in New York, 23:00 in Tokyo
NEXT_MORNING = "2024-06-04T00:00:00.000Z"  # 09:00 in Tokyo: when the night contacts are due
DAY_START = "2024-06-03T06:00:00Z"  # --day: Monday 02:00 in New York (opens at 13:00Z), 15:00 in Tokyo
DAY_WAIT_S = 86400  # --day: run until every contact is final
WINDOWS = ["mon-fri 09:00-20:00", "sat 10:00-18:00"]
MAX_ATTEMPTS = 2
WAIT_S = 130  # campaign seconds a run waits for due retries (retry_after below is 60 s)
CALLBOT = [sys.executable, "-m", "callbot"]


@dataclass(frozen=True)
class Kind:
    """One kind of callee: its simswitch callee spec (None: not in the file, so unallocated), the outcomes its
    attempts must have, in order, and the contact's final state."""

    name: str
    share: int  # contacts of this kind in the CI mix of 26; a larger mix keeps the proportions
    callee: str | None
    outcomes: tuple[str, ...]
    state: str


KINDS = (
    Kind("barge-in", 4, "fixture/long_reply", ("completed",), "done"),
    Kind("short reply", 3, "fixture/short_yes", ("completed",), "done"),
    Kind("silent", 2, "fixture/silence?hangup_after_s=12", ("completed",), "done"),
    Kind("busy", 3, "error/user_busy", ("busy",) * MAX_ATTEMPTS, "failed"),
    Kind("no answer", 2, "fixture/short_yes?answer=false", ("no_answer",) * MAX_ATTEMPTS, "failed"),
    Kind("rejected", 2, "fixture/short_yes?reject=CALL_REJECTED&answer_delay_ms=500", ("failed",) * MAX_ATTEMPTS,
         "failed"),
    Kind("unallocated", 2, None, ("unallocated",), "failed"),
    Kind("machine", 2, f"fixture/{AMD / 'vm_en_us_beep1000.wav'}", ("completed",), "done"),
    Kind("opt-out", 2, "fixture/long_reply?dtmf=9@1.5", ("opted_out",), "done"),
    Kind("dnc", 2, "fixture/short_yes", (), "dnc"),  # on DNC before the import: never dialled
    Kind("night", 2, "fixture/short_yes", (), "scheduled"),  # 23:00 in Tokyo: due at 09:00 there
)
CI_CONTACTS = sum(k.share for k in KINDS)


@dataclass
class Mix:
    """number -> its kind; numbers in the order of the contacts CSV."""

    kinds: dict[str, Kind] = field(default_factory=dict)

    @property
    def pre_dnc(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k.state == "dnc"]

    @property
    def night(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k.name == "night"]

    def states(self) -> Counter:
        return Counter(k.state for k in self.kinds.values())


def day_mix(mix: Mix) -> Mix:
    """What ``mix`` implies from DAY_START to the end: the Tokyo contacts are in their window at the start (15:00
    there), so they answer (short replies) and are done, like the New York ones later in the day."""
    day = Kind("night", 0, "fixture/short_yes", ("completed",), "done")
    return Mix({n: day if k.name == "night" else k for n, k in mix.kinds.items()})


def build_mix(contacts: int = CI_CONTACTS) -> Mix:
    """``contacts`` numbers in the proportions of KINDS (largest remainder; the CI mix at 26), each kind in its own
    block of numbers: +1212555xxxx in New York, +8131234xxxx in Tokyo for the night contacts."""
    if not CI_CONTACTS <= contacts <= 9000:
        raise ValueError(f"contacts must be between {CI_CONTACTS} and 9000, got {contacts}")
    exact = [contacts * k.share / CI_CONTACTS for k in KINDS]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(KINDS)), key=lambda i: exact[i] - counts[i], reverse=True)[:contacts - sum(counts)]:
        counts[i] += 1
    mix, first = Mix(), 100
    for kind, count in zip(KINDS, counts):
        for i in range(count):
            number = f"+8131234{first + i:04d}" if kind.name == "night" else f"+1212555{first + i:04d}"
            mix.kinds[number] = kind
        first += count
    return mix


def write_files(mix: Mix, folder: Path) -> tuple[Path, Path, Path]:
    """simswitch's callees CSV, the contacts CSV and the campaign's settings file, in ``folder``."""
    callees = folder / "callees.csv"
    callees.write_text("number,callee\n" + "".join(f"{n},{k.callee}\n" for n, k in mix.kinds.items() if k.callee))
    contacts = folder / "contacts.csv"
    contacts.write_text("number,name\n" + "".join(f"{n},c{i}\n" for i, n in enumerate(mix.kinds)))
    settings = folder / "campaign.toml"
    settings.write_text("[campaign]\n"
                        'dial_template = "sofia/gateway/carrier/{number}"\n'
                        f"windows = {json.dumps(WINDOWS)}\n"
                        "max_concurrent = 6\ncalls_per_second = 5\n"
                        f"max_attempts = {MAX_ATTEMPTS}\nring_timeout_s = 15\nlease_s = 5\n"
                        "retry_after = { busy = 60, no_answer = 60, failed = 60, machine = 60, interrupted = 30 }\n"
                        f'journal_dir = "{folder / "journal"}"\n')
    return callees, contacts, settings


def prepare(mix: Mix, url: str, folder: Path, name: str = "mix", *, max_concurrent: int | None = None) -> Path:
    """Create campaign ``name``, put the DNC numbers on the list, import the contacts; returns the callees CSV."""
    from click.testing import CliRunner

    from callbot.app.cli import main

    callees, contacts, settings = write_files(mix, folder)
    if max_concurrent is not None:
        settings.write_text(settings.read_text().replace("max_concurrent = 6", f"max_concurrent = {max_concurrent}"))
    env = {"CALLBOT_DB_URL": url}
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        if result.exit_code != 0:
            raise RuntimeError(f"callbot {' '.join(args)} exited {result.exit_code}: {result.output}")
        return result.stdout

    cli("campaign", "create", name, "--scenario", "survey_en", "--settings", str(settings))
    cli("dnc", "add", *mix.pre_dnc)
    imported = json.loads(cli("campaign", "import", name, str(contacts), "--json"))
    expected = {"imported": len(mix.kinds) - len(mix.pre_dnc), "dnc": len(mix.pre_dnc), "duplicates": 0,
                "rejected": []}
    if imported != expected:
        raise RuntimeError(f"import: {imported}, expected {expected}")
    return callees


def cli_json(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([*CALLBOT, *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"callbot {' '.join(args)} exited {out.returncode}: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


@dataclass
class Seen:
    """The switch's CDR, the campaign's report and DNC list, and what is wrong with them."""

    cdr: list[dict[str, Any]]
    report: dict[str, Any]
    dnc: set[str]
    violations: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return self.report["attempts"]


def check_against_cdr(mix: Mix, cdr_path: Path, env: dict[str, str], name: str = "mix") -> Seen:
    """The switch's CDR against the campaign's report and DNC: the guarantees of DESIGN section 8."""
    from callbot.robot.campaign.numbers import number_zones
    from callbot.windows import is_open, parse_windows

    cdr = [json.loads(line) for line in cdr_path.read_text().splitlines() if line.strip()]
    seen = Seen(cdr, cli_json(env, "campaign", "report", name), {r["number"] for r in cli_json(env, "dnc", "list")})
    bad = seen.violations.append
    attempts = {a["call_uuid"]: a for a in seen.attempts}
    windows = parse_windows(WINDOWS)
    per_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in cdr:
        attempt = attempts.get(line["uuid"])
        if attempt is None or not attempt["outcome"]:
            bad(f"originate {line['uuid']} to {line['number']} has no attempt with an outcome")
        elif attempt["number"] != line["number"]:
            bad(f"originate {line['uuid']} went to {line['number']}, its attempt says {attempt['number']}")
        per_number[line["number"]].append(line)
        at = datetime.fromtimestamp(line["received_at"], timezone.utc)
        if not is_open(windows, at, [ZoneInfo(z) for z in number_zones(line["number"])]):
            bad(f"{line['number']} dialled outside its window at {at}")
        if line["number"] in mix.pre_dnc:
            bad(f"{line['number']} dialled while on DNC")
    for number, calls in per_number.items():
        if len(calls) > MAX_ATTEMPTS:
            bad(f"{number} dialled {len(calls)} times")
        spans = sorted((c["received_at"], c["ended_at"] or float("inf")) for c in calls)
        if any(start < end for (_, end), (start, _) in zip(spans, spans[1:])):
            bad(f"{number} was in two calls at once")
    should = {n for n, k in mix.kinds.items() if "opted_out" in k.outcomes or k.state == "dnc"}
    for number in sorted(should - seen.dnc):
        bad(f"{number} is not on the DNC list")
    for number in sorted(seen.dnc - should):
        bad(f"{number} is on the DNC list, and the mix puts it nowhere near")
    return seen


def check_outcomes(mix: Mix, attempts: Sequence[dict[str, Any]]) -> list[str]:
    """Each number's attempts, in order, exactly as the mix implies (an answered person is never a machine)."""
    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in sorted(attempts, key=lambda a: a["attempt"]):
        got[a["number"]].append(a)
    bad = []
    for number, kind in mix.kinds.items():
        outcomes = tuple(a["outcome"] for a in got.get(number, []))
        if outcomes != kind.outcomes:
            detail = [(a["outcome"], a["disposition"], a["amd"], a.get("amd_cause"), a["hangup_cause"])
                      for a in got.get(number, [])]
            bad.append(f"{number} ({kind.name}): outcomes {list(outcomes)}, expected {list(kind.outcomes)}: {detail}")
    return bad


PEOPLE = frozenset({"barge-in", "short reply", "silent", "opt-out"})


def check_decisions(mix: Mix, attempts: Sequence[dict[str, Any]]) -> list[str]:
    """What the calls did, beyond their outcome: a machine got the voicemail message; a person never got it, and
    AMD never called a person a machine (a verdict that came too late to act on still says what AMD heard)."""
    bad = []
    for a in attempts:
        kind = mix.kinds[a["number"]]
        if not a["answered_at"] or a["outcome"] == "interrupted":
            continue
        if kind.name == "machine" and a["disposition"] != "voicemail_left":
            bad.append(f"{a['number']} (machine) #{a['attempt']}: disposition {a['disposition']}, amd {a['amd']}")
        if kind.name in PEOPLE and (a["amd"] == "machine" or a["disposition"] == "voicemail_left"):
            bad.append(f"{a['number']} ({kind.name}) #{a['attempt']}: amd {a['amd']}, disposition {a['disposition']}")
    return bad


def check_status(mix: Mix, status: dict[str, Any], attempts: Sequence[dict[str, Any]]) -> list[str]:
    """Contacts by state as the mix implies; the abandonment rate over the calls a person answered."""
    bad = []
    states = mix.states()
    for state in ("done", "failed", "dnc", "scheduled", "pending", "in_progress"):
        if status["contacts"].get(state, 0) != states.get(state, 0):
            bad.append(f"status: {status['contacts'].get(state, 0)} contacts {state}, expected {states.get(state, 0)}")
    person = [a for a in attempts if a["answered_at"] and a["amd"] != "machine"]
    rate = sum(a["abandoned"] for a in person) / len(person) if person else 0.0
    if abs(status["abandon_rate"] - rate) > 1e-6:
        bad.append(f"status: abandon_rate {status['abandon_rate']}, the attempts say {rate}")
    return bad


def verdict_lag(url: str) -> dict[str, Any]:
    """How late the audio server's AMD verdicts reached the calls, in call seconds after the audio they judge
    (the robot's next row after each ``amd`` row, whose time is its stream time). At 1x it is a few tens of
    ms; when it passes amd_wait_s less the verdict's own time, the call settles AMD without it."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from callbot.robot.store import CallEvent, make_engine

    lags: list[float] = []
    with Session(make_engine(url)) as s:
        rows = s.execute(select(CallEvent.attempt_id, CallEvent.t, CallEvent.source, CallEvent.type)
                         .order_by(CallEvent.attempt_id, CallEvent.seq)).all()
    for i, (attempt, t, source, kind) in enumerate(rows):
        if source == "audio" and kind == "amd" and t is not None:
            after = next((r for r in rows[i + 1:] if r[0] != attempt or r[2] == "robot"), None)
            if after is not None and after[0] == attempt and after[1] is not None:
                lags.append(max(0.0, after[1] - t))
    lags.sort()
    pick = (lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 2)) if lags else (lambda q: None)
    return {"verdicts": len(lags), "p50": pick(0.5), "p95": pick(0.95), "max": pick(1.0)}


# ---- the dry run with processes of its own ----------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before it listened")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {within_s:g} s")


def dry_run(contacts: int, speed: float, folder: Path, url: str | None = None,
            audio_workers: int = 1) -> dict[str, Any]:
    """The whole run; returns the summary (``violations`` empty when everything is as the mix implies)."""
    mix = build_mix(contacts)
    url = url or f"sqlite:///{folder / 'callbot.db'}"
    callees = prepare(mix, url, folder)
    cdr = folder / "cdr.jsonl"
    esl_port, audio_port = _free_port(), _free_port()
    env = {**os.environ, "CALLBOT_DB_URL": url, "CALLBOT_ESL_PORT": str(esl_port), "CALLBOT_ESL_PASSWORD": "pw",
           "CALLBOT_AUDIO_SERVER_PORT": str(audio_port), "CALLBOT_AUDIO_SERVER_WORKERS": str(audio_workers)}
    logs = {name: open(folder / f"{name}.log", "w") for name in ("simswitch", "audio_server", "runner")}
    procs = [
        subprocess.Popen([*CALLBOT, "simswitch", "--esl-port", str(esl_port), "--password", "pw", "--speed",
                          f"{speed:g}", "--callees", str(callees), "--cdr", str(cdr), "--start", START],
                         env=env, stdout=logs["simswitch"], stderr=subprocess.STDOUT),
        subprocess.Popen([*CALLBOT, "audio-server", "--port", str(audio_port), "--no-stt"], env=env,
                         stdout=logs["audio_server"], stderr=subprocess.STDOUT),
    ]
    try:
        _wait_port(esl_port, procs[0], "simswitch")
        _wait_port(audio_port, procs[1], "the audio server")
        cpu0 = os.times()
        started = time.monotonic()
        run = subprocess.run([*CALLBOT, "campaign", "run", "mix", "--speed", f"{speed:g}", "--start", START,
                              "--wait-s", str(WAIT_S), "--json"], env=env, stdout=subprocess.PIPE,
                             stderr=logs["runner"], text=True)
        wall = time.monotonic() - started
        cpu1 = os.times()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()
    return {**checked(mix, cdr, env, url, run, ("nothing_due", NEXT_MORNING)),
            "contacts": len(mix.kinds), "speed": speed, "wall_s": round(wall, 1), "call_time_s": round(wall * speed, 1),
            "runner_cpu_s": round((cpu1.children_user - cpu0.children_user)
                                  + (cpu1.children_system - cpu0.children_system), 1), "folder": str(folder)}


def checked(mix: Mix, cdr: Path, env: dict[str, str], url: str, run: subprocess.CompletedProcess,
            end: tuple[str, str | None]) -> dict[str, Any]:
    """The run's figures and every violation of what ``mix`` implies; ``end``: the run's reason and next_due."""
    result = json.loads(run.stdout) if run.stdout.strip() else {"exit_code": run.returncode}
    seen = check_against_cdr(mix, cdr, env)
    status = cli_json(env, "campaign", "status", "mix")
    violations = [*seen.violations, *check_outcomes(mix, seen.attempts), *check_decisions(mix, seen.attempts),
                  *check_status(mix, status, seen.attempts)]
    if run.returncode != 0 or (result.get("reason"), result.get("next_due")) != end:
        violations.append(f"campaign run: exit {run.returncode}, {result}")
    return {
        "originates": len(seen.cdr), "attempts": len(seen.attempts),
        "outcomes": dict(Counter(a["outcome"] for a in seen.attempts).most_common()),
        "amd": status["amd"], "contacts_by_state": status["contacts"], "dnc_entries": len(seen.dnc),
        "abandoned": status["abandoned"], "abandon_rate": status["abandon_rate"],
        "amd_verdict_lag_s": verdict_lag(url),
        "kinds": {k.name: n for k, n in Counter(mix.kinds.values()).items()},
        "violations": violations, "result": result,
    }


def simulated_run(contacts: int, speed: float, folder: Path, url: str | None = None, *, day: bool = False,
                  contacts_mix: Mix | None = None, free_run: bool = False) -> dict[str, Any]:
    """The same mix with ``callbot campaign simulate`` (simswitch, audio server and runner in one process, on one
    clock in lockstep): from START until nothing is due within WAIT_S, or with ``day`` from DAY_START until every
    contact is final. Returns the summary of :func:`dry_run`, the simulation's figures, and ``per_contact``
    (each number's outcomes) and ``dnc`` for comparing runs."""
    mix = contacts_mix or build_mix(contacts)
    url = url or f"sqlite:///{folder / 'callbot.db'}"
    callees = prepare(mix, url, folder)
    cdr = folder / "cdr.jsonl"
    env = {**os.environ, "CALLBOT_DB_URL": url}
    start, wait_s, end = (DAY_START, DAY_WAIT_S, ("done", None)) if day else (START, WAIT_S, ("nothing_due",
                                                                                              NEXT_MORNING))
    started = time.monotonic()
    with open(folder / "simulate.log", "w") as log:
        run = subprocess.run([*CALLBOT, "campaign", "simulate", "mix", "--callees", str(callees), "--cdr", str(cdr),
                              "--start", start, "--speed", f"{speed:g}", "--wait-s", str(wait_s), "--json",
                              *(["--free-run"] if free_run else [])],
                             env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.monotonic() - started
    summary = checked(day_mix(mix) if day else mix, cdr, env, url, run, end)
    report = cli_json(env, "campaign", "report", "mix")
    per_contact: dict[str, list[str]] = defaultdict(list)
    for a in sorted(report["attempts"], key=lambda a: (a["number"], a["attempt"])):
        per_contact[a["number"]].append(a["outcome"])
    return {"contacts": len(mix.kinds), "speed": "free run" if free_run else speed, "start": start,
            "wall_s": round(wall, 1), **summary,
            "simulation": summary["result"].get("simulation"), "per_contact": dict(per_contact),
            "dnc": sorted(r["number"] for r in cli_json(env, "dnc", "list")), "folder": str(folder)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1000, help="contacts in the mix (26 to 9000; default 1000)")
    parser.add_argument("--speed", type=float, default=5.0, help="simswitch's clock speed (default 5)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the files, logs and database here")
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in --dir)")
    parser.add_argument("--workers", type=int, default=1, help="audio server worker processes (default 1)")
    parser.add_argument("--simulate", action="store_true",
                        help="one process on one clock: `callbot campaign simulate` (decisions do not depend on --speed)")
    parser.add_argument("--day", action="store_true",
                        help=f"with --simulate: from {DAY_START} until every contact is final (Tokyo, then New York)")
    parser.add_argument("--free-run", action="store_true",
                        help="with --simulate: no speed limit (the clock goes at once to the next instant anyone waits for)")
    args = parser.parse_args(argv)
    if (args.day or args.free_run) and not args.simulate:
        parser.error("--day and --free-run need --simulate")
    folder = args.dir or Path(tempfile.mkdtemp(prefix="campaign-mix-"))
    folder.mkdir(parents=True, exist_ok=True)
    if args.simulate:
        summary = simulated_run(args.contacts, args.speed, folder, args.db, day=args.day, free_run=args.free_run)
        summary.pop("per_contact")
        summary["dnc"] = len(summary["dnc"])
    else:
        summary = dry_run(args.contacts, args.speed, folder, args.db, args.workers)
    print(json.dumps(summary, indent=2))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
