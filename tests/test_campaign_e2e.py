"""A campaign end to end against simswitch's ``--callees``/``--cdr``/``--start`` (DESIGN section 8), on its virtual
clock: a mix of callees runs to completion and every outcome, retry count and DNC entry is what the mix implies;
SIGKILL of the runner mid-campaign then a restart; two runners sharing one PostgreSQL campaign. The CDR, written
by the switch, is checked against the campaign: no contact in two calls at once, none dialled more than
max_attempts times, outside its window or while on DNC, and every originate has its attempt and outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from callbot.app.cli import main
from callbot.app.replay import audio_server_thread
from callbot.config import Settings
from callbot.robot.campaign.numbers import number_zones
from callbot.robot.campaign.windows import is_open, parse_windows
from callbot.simswitch import SimSwitchThread
from test_store_kit import pg_url, sqlite_url  # noqa: F401 (fixtures)

SPEED = 5  # robots, audio server and switch share 2 cores: faster, and wall hiccups become call seconds
START = "2024-06-03T14:00:00Z"  # Monday: 10:00 in New York, 23:00 in Tokyo
AMD = Path(__file__).parent / "fixtures" / "amd"
WINDOWS = ["mon-fri 09:00-20:00", "sat 10:00-18:00"]
MAX_ATTEMPTS = 2
CALLBOT = [sys.executable, "-m", "callbot"]

# number -> (callee spec or None for "not in the file", expected outcomes of its attempts, final state)
MIX: dict[str, tuple[str | None, list[str], str]] = {}


def _add(kind: str, count: int, callee: str | None, outcomes: list[str], state: str, first: int) -> None:
    for i in range(count):
        MIX[f"+1212555{first + i:04d}"] = (callee, outcomes, state)


_add("barge-in", 4, "fixture/long_reply", ["completed"], "done", 101)
_add("short reply", 3, "fixture/short_yes", ["completed"], "done", 111)
_add("silent", 2, "fixture/silence?hangup_after_s=12", ["completed"], "done", 121)
_add("busy", 3, "error/user_busy", ["busy", "busy"], "failed", 131)
_add("no answer", 2, "fixture/short_yes?answer=false", ["no_answer", "no_answer"], "failed", 141)
_add("rejected", 2, "fixture/short_yes?reject=CALL_REJECTED&answer_delay_ms=500", ["failed", "failed"], "failed", 151)
_add("unallocated", 2, None, ["unallocated"], "failed", 161)
_add("machine", 2, f"fixture/{AMD / 'vm_en_us_beep1000.wav'}", ["completed"], "done", 171)
_add("opt-out", 2, "fixture/long_reply?dtmf=9@1.5", ["opted_out"], "done", 181)
_add("dnc", 2, "fixture/short_yes", [], "dnc", 191)
NIGHT = {"+81312345678": "fixture/short_yes", "+81312345679": "fixture/short_yes"}  # 23:00 in Tokyo
PRE_DNC = [n for n, (_, _, state) in MIX.items() if state == "dnc"]


@pytest.fixture(scope="module")
def audio_port():
    with audio_server_thread(Settings().replace(**{"stt.enabled": False})) as port:
        yield port


def _write_files(tmp: Path) -> tuple[Path, Path, Path]:
    callees = tmp / "callees.csv"
    rows = [f"{n},{spec}" for n, (spec, _, _) in MIX.items() if spec] + [f"{n},{s}" for n, s in NIGHT.items()]
    callees.write_text("number,callee\n" + "\n".join(rows) + "\n")
    contacts = tmp / "contacts.csv"
    contacts.write_text("number,name\n" + "\n".join(f"{n},c{i}" for i, n in enumerate([*MIX, *NIGHT])) + "\n")
    settings = tmp / "campaign.toml"
    settings.write_text("[campaign]\n"
                        'dial_template = "sofia/gateway/carrier/{number}"\n'
                        f"windows = {json.dumps(WINDOWS)}\n"
                        "max_concurrent = 6\ncalls_per_second = 5\n"
                        f"max_attempts = {MAX_ATTEMPTS}\nring_timeout_s = 15\nlease_s = 5\n"
                        "retry_after = { busy = 60, no_answer = 60, failed = 60, machine = 60, interrupted = 30 }\n"
                        f'journal_dir = "{tmp / "journal"}"\n')
    return callees, contacts, settings


def _prepare(url: str, tmp: Path) -> Path:
    callees, contacts, settings = _write_files(tmp)
    env = {"CALLBOT_DB_URL": url}
    runner = CliRunner()
    assert runner.invoke(main, ["campaign", "create", "mix", "--scenario", "survey_en", "--settings", str(settings)],
                         env=env).exit_code == 0
    assert runner.invoke(main, ["dnc", "add", *PRE_DNC], env=env).exit_code == 0
    imported = runner.invoke(main, ["campaign", "import", "mix", str(contacts), "--json"], env=env)
    assert json.loads(imported.stdout) == {"imported": len(MIX) + len(NIGHT) - len(PRE_DNC), "dnc": len(PRE_DNC),
                                           "duplicates": 0, "rejected": []}
    return callees


def _env(url: str, esl_port: int, audio_port: int) -> dict[str, str]:
    return {**os.environ, "CALLBOT_DB_URL": url, "CALLBOT_ESL_PORT": str(esl_port), "CALLBOT_ESL_PASSWORD": "pw",
            "CALLBOT_AUDIO_SERVER_PORT": str(audio_port)}


def _start_runner(env: dict[str, str], *extra: str, **popen: object) -> subprocess.Popen:
    """`campaign run mix` in the background, on the switch's virtual clock."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([*CALLBOT, "campaign", "run", "mix", "--speed", str(SPEED), "--start", START, *extra],
                            env=env, **popen)  # type: ignore[call-overload]


def _run(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """`campaign run mix --wait-s 130 --json` to its end."""
    proc = _start_runner(env, "--wait-s", "130", "--json")
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wait_live(switch: SimSwitchThread, calls: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and len(switch.switch.live) < calls:
        time.sleep(0.05)
    assert len(switch.switch.live) >= calls, f"the runner never had {calls} calls up"


def _cli_json(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([*CALLBOT, *args, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_against_cdr(cdr_path: Path, env: dict[str, str], *, interrupted_ok: bool = False) -> dict:
    """The switch's CDR against the campaign's report and DNC: the guarantees of DESIGN section 8."""
    cdr = [json.loads(line) for line in cdr_path.read_text().splitlines() if line.strip()]
    report = _cli_json(env, "campaign", "report", "mix")
    attempts = {a["call_uuid"]: a for a in report["attempts"]}
    windows = parse_windows(WINDOWS)
    dnc_numbers = {r["number"] for r in _cli_json(env, "dnc", "list")}
    per_number: dict[str, list[dict]] = defaultdict(list)
    for line in cdr:
        attempt = attempts.get(line["uuid"])
        assert attempt is not None and attempt["outcome"], f"originate {line['uuid']} has no attempt with an outcome"
        assert attempt["number"] == line["number"]
        per_number[line["number"]].append(line)
        zones = [ZoneInfo(z) for z in number_zones(line["number"])]
        at = datetime.fromtimestamp(line["received_at"], timezone.utc)
        assert is_open(windows, at, zones), f"{line['number']} dialled outside its window at {at}"
        assert line["number"] not in PRE_DNC, f"{line['number']} dialled while on DNC"
    for number, calls in per_number.items():
        assert len(calls) <= MAX_ATTEMPTS, f"{number} dialled {len(calls)} times"
        spans = sorted((c["received_at"], c["ended_at"] or float("inf")) for c in calls)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert start >= end, f"{number} was in two calls at once"
    opted = {n for n, (_, outcomes, _) in MIX.items() if "opted_out" in outcomes}
    assert opted | set(PRE_DNC) <= dnc_numbers
    return {"cdr": cdr, "report": report, "per_number": per_number}


def check_outcomes(attempts: list[dict]) -> None:
    """Each number's attempts as the mix implies. An answered callee's AMD verdict may slip (robots, audio
    server and switch share two cores at N x, so a stream can attach late in call time): a ``machine``
    outcome is then retried, as the rules say, and the last attempt must still be as implied."""
    outcomes: dict[str, list[tuple]] = defaultdict(list)
    for a in sorted(attempts, key=lambda a: a["attempt"]):
        outcomes[a["number"]].append((a["outcome"], a["disposition"], a["amd"], a["hangup_cause"], a["runner"]))
    for number, (_, expected, _) in MIX.items():
        got = [o[0] for o in outcomes.get(number, [])]
        if "completed" not in expected and "opted_out" not in expected:
            assert got == expected, (number, outcomes.get(number))
        else:
            assert got[-1] == expected[-1] or len(got) == MAX_ATTEMPTS, (number, outcomes.get(number))
            assert set(got[:-1]) <= {"machine"} and len(got) <= MAX_ATTEMPTS, (number, outcomes.get(number))
    assert not any(n in outcomes for n in NIGHT)


def test_a_mixed_campaign_runs_to_completion_as_the_mix_implies(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = _prepare(sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", callees=callees, cdr=cdr, start=START) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        started = time.monotonic()
        result = _run(env)
        wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout)
    assert run["reason"] == "nothing_due" and run["next_due"] == "2024-06-04T00:00:00.000Z"  # 09:00 in Tokyo
    seen = check_against_cdr(cdr, env)
    check_outcomes(seen["report"]["attempts"])
    status = _cli_json(env, "campaign", "status", "mix")
    c = status["contacts"]
    assert (c["done"], c["failed"], c["dnc"], c["scheduled"], c["pending"], c["in_progress"]) == (13, 9, 2, 2, 0, 0)
    attempts = seen["report"]["attempts"]
    person = [a for a in attempts if a["answered_at"] and a["amd"] != "machine"]
    late = [a for a in person if a["abandoned"]]
    assert status["state"] == "idle" and status["abandoned"] == sum(a["abandoned"] for a in attempts)
    assert status["abandon_rate"] == pytest.approx(len(late) / len(person), abs=1e-6)
    assert status["amd"]["machine"] >= 1
    print(f"mixed campaign: {len(seen['cdr'])} originates, {wall:.1f} s wall at {SPEED}x")


def test_sigkill_mid_campaign_then_a_restart_loses_nothing(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = _prepare(sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", callees=callees, cdr=cdr, start=START) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        first = _start_runner(env, "--wait-s", "130", stdout=subprocess.DEVNULL)
        _wait_live(switch, 4)
        first.send_signal(signal.SIGKILL)  # mid-call: its calls stay up on the switch
        first.wait(10)
        result = _run(env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconciled" in result.stderr
    seen = check_against_cdr(cdr, env, interrupted_ok=True)
    report = seen["report"]["attempts"]
    interrupted = [a for a in report if a["outcome"] == "interrupted"]
    assert interrupted, "the killed runner's live calls were not reconciled"
    for number, (_, expected, state) in MIX.items():
        got = [a["outcome"] for a in report if a["number"] == number]
        if state == "done":  # a person was reached at last, or the interruption used the attempts up
            assert got[-1] in (expected[-1], "interrupted") and len(got) <= MAX_ATTEMPTS
    status = _cli_json(env, "campaign", "status", "mix")
    assert status["contacts"]["in_progress"] == 0 and status["contacts"]["pending"] == 0


def test_two_runners_share_one_postgres_campaign(pg_url, tmp_path, audio_port):  # noqa: F811
    callees = _prepare(pg_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", callees=callees, cdr=cdr, start=START) as switch:
        env = _env(pg_url, switch.esl_port, audio_port)
        procs = [_start_runner(env, "--wait-s", "130", "--runner-id", name, "--json") for name in ("A", "B")]
        outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    seen = check_against_cdr(cdr, env)
    per_runner = defaultdict(int)
    for a in seen["report"]["attempts"]:
        per_runner[a["runner"]] += 1
    total = sum(per_runner.values())
    assert set(per_runner) == {"A", "B"} and min(per_runner.values()) >= total // 4, dict(per_runner)
    check_outcomes(seen["report"]["attempts"])


def test_sigterm_stops_claiming_and_lets_live_calls_finish(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = _prepare(sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", callees=callees, cdr=cdr, start=START) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        proc = _start_runner(env, "--json")
        _wait_live(switch, 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        left_up = len(switch.switch.live)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out)["reason"] == "stopped" and left_up == 0
    report = _cli_json(env, "campaign", "report", "mix")["attempts"]
    assert report and all(a["outcome"] and a["outcome"] != "interrupted" for a in report)  # finished, not cut
    status = _cli_json(env, "campaign", "status", "mix")
    assert status["contacts"]["in_progress"] == 0 and status["contacts"]["pending"] > 0
