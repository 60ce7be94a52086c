"""A campaign end to end against simswitch's ``--callees``/``--cdr``/``--start`` (DESIGN section 8), on its virtual
clock: a mix of callees runs to completion and every outcome, retry count and DNC entry is what the mix implies;
SIGKILL of the runner mid-campaign then a restart; two runners sharing one PostgreSQL campaign. The CDR, written
by the switch, is checked against the campaign: no contact in two calls at once, none dialled more than
max_attempts times, outside its window or while on DNC, and every originate has its attempt and outcome."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from callbot.app.replay import audio_server_thread
from callbot.config import Settings
from callbot.robot.store import Dnc, make_engine
from callbot.simswitch import SimSwitchThread
from test_store_kit import pg_url, sqlite_url  # noqa: F401 (fixtures)


def _mix_kit():
    """scripts/campaign_mix.py: the mix, its files and its checks, shared with the 1,000-contact run."""
    path = Path(__file__).resolve().parents[1] / "scripts" / "campaign_mix.py"
    spec = importlib.util.spec_from_file_location("campaign_mix", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


kit = _mix_kit()
SPEED = 5  # robots, audio server and switch share 2 cores: faster, and wall hiccups become call seconds
MIX = kit.build_mix()  # the CI mix: a few dozen contacts


@pytest.fixture(scope="module")
def audio_port():
    with audio_server_thread(Settings().replace(**{"stt.enabled": False})) as port:
        yield port


def _env(url: str, esl_port: int, audio_port: int) -> dict[str, str]:
    return {**os.environ, "CALLBOT_DB_URL": url, "CALLBOT_ESL_PORT": str(esl_port), "CALLBOT_ESL_PASSWORD": "pw",
            "CALLBOT_AUDIO_SERVER_PORT": str(audio_port)}


def _switch(callees: Path, cdr: Path) -> SimSwitchThread:
    return SimSwitchThread(speed=SPEED, esl_port=0, password="pw", callees=callees, cdr=cdr, start=kit.START)


def _start_runner(env: dict[str, str], *extra: str, **popen: object) -> subprocess.Popen:
    """`campaign run mix` in the background, on the switch's virtual clock."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([*kit.CALLBOT, "campaign", "run", "mix", "--speed", str(SPEED), "--start", kit.START,
                             *extra], env=env, **popen)  # type: ignore[call-overload]


def _run(env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """`campaign run mix --wait-s 130 --json` to its end."""
    proc = _start_runner(env, "--wait-s", str(kit.WAIT_S), "--json")
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wait_live(switch: SimSwitchThread, calls: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and len(switch.switch.live) < calls:
        time.sleep(0.05)
    assert len(switch.switch.live) >= calls, f"the runner never had {calls} calls up"


def _on_dnc(engine) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(Dnc.number)))


def checked_cdr(cdr: Path, env: dict[str, str]):
    """The switch's CDR against the campaign (DESIGN section 8 guarantees); no violation allowed."""
    seen = kit.check_against_cdr(MIX, cdr, env)
    assert seen.violations == [], "\n".join(seen.violations)
    return seen


def test_a_mixed_campaign_runs_to_completion_as_the_mix_implies(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = kit.prepare(MIX, sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with _switch(callees, cdr) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        started = time.monotonic()
        result = _run(env)
        wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout)
    assert run["reason"] == "nothing_due" and run["next_due"] == kit.NEXT_MORNING  # 09:00 in Tokyo
    seen = checked_cdr(cdr, env)
    assert kit.check_outcomes(MIX, seen.attempts) == []  # every attempt of every number, exactly
    assert kit.check_decisions(MIX, seen.attempts) == []  # machines got the message, people the survey
    status = kit.cli_json(env, "campaign", "status", "mix")
    assert kit.check_status(MIX, status, seen.attempts) == []
    assert MIX.states() == {"done": 13, "failed": 9, "dnc": 2, "scheduled": 2}
    assert status["state"] == "idle" and status["abandoned"] == sum(a["abandoned"] for a in seen.attempts)
    assert status["amd"]["machine"] >= 1
    print(f"mixed campaign: {len(seen.cdr)} originates, {wall:.1f} s wall at {SPEED}x")


def test_sigkill_mid_campaign_then_a_restart_loses_nothing(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = kit.prepare(MIX, sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with _switch(callees, cdr) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        first = _start_runner(env, "--wait-s", str(kit.WAIT_S), stdout=subprocess.DEVNULL)
        _wait_live(switch, 4)
        first.send_signal(signal.SIGKILL)  # mid-call: its calls stay up on the switch
        first.wait(10)
        result = _run(env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconciled" in result.stderr
    report = checked_cdr(cdr, env).attempts
    interrupted = [a for a in report if a["outcome"] == "interrupted"]
    assert interrupted, "the killed runner's live calls were not reconciled"
    for number, kind in MIX.kinds.items():
        got = [a["outcome"] for a in report if a["number"] == number]
        if kind.state == "done":  # a person was reached at last, or the interruption used the attempts up
            assert got[-1] in (kind.outcomes[-1], "interrupted") and len(got) <= kit.MAX_ATTEMPTS
    status = kit.cli_json(env, "campaign", "status", "mix")
    assert status["contacts"]["in_progress"] == 0 and status["contacts"]["pending"] == 0


def test_two_runners_share_one_postgres_campaign(pg_url, tmp_path, audio_port):  # noqa: F811
    callees = kit.prepare(MIX, pg_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with _switch(callees, cdr) as switch:
        env = _env(pg_url, switch.esl_port, audio_port)
        procs = [_start_runner(env, "--wait-s", str(kit.WAIT_S), "--runner-id", name, "--json") for name in ("A", "B")]
        outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    seen = checked_cdr(cdr, env)
    per_runner: dict[str, int] = defaultdict(int)
    for a in seen.attempts:
        per_runner[a["runner"]] += 1
    total = sum(per_runner.values())
    assert set(per_runner) == {"A", "B"} and min(per_runner.values()) >= total // 4, dict(per_runner)
    assert kit.check_outcomes(MIX, seen.attempts) == []


def test_sigterm_stops_claiming_and_lets_live_calls_finish(sqlite_url, tmp_path, audio_port):  # noqa: F811
    callees = kit.prepare(MIX, sqlite_url, tmp_path)
    cdr = tmp_path / "cdr.jsonl"
    with _switch(callees, cdr) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        proc = _start_runner(env, "--json")
        _wait_live(switch, 3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        left_up = len(switch.switch.live)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out)["reason"] == "stopped" and left_up == 0
    report = kit.cli_json(env, "campaign", "report", "mix")["attempts"]
    assert report and all(a["outcome"] and a["outcome"] != "interrupted" for a in report)  # finished, not cut
    status = kit.cli_json(env, "campaign", "status", "mix")
    assert status["contacts"]["in_progress"] == 0 and status["contacts"]["pending"] > 0


def test_an_opt_out_key_puts_the_number_on_dnc_during_the_call_and_ends_it_with_the_goodbye(
        sqlite_url, tmp_path, audio_port):  # noqa: F811
    """simswitch's callee presses 9 at 1.5 s: DNC while the call is up, then the scenario's opt-out step, then the
    robot hangs up (the callee would have talked for 20 s more)."""
    callees = kit.prepare(MIX, sqlite_url, tmp_path)
    opt_outs = [n for n, k in MIX.kinds.items() if k.name == "opt-out"]
    callees.write_text("number,callee\n" + "".join(f"{n},{MIX.kinds[n].callee}\n" for n in opt_outs))
    cdr = tmp_path / "cdr.jsonl"
    with _switch(callees, cdr) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        proc = _start_runner(env, "--json")
        engine = make_engine(sqlite_url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (dnc_while_up := _on_dnc(engine) & set(opt_outs)):
            time.sleep(0.02)
        up_then = len(switch.switch.live)
        out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert dnc_while_up and up_then >= 1, "the number reached DNC only after its call"
    attempts = kit.cli_json(env, "campaign", "report", "mix")["attempts"]
    mine = [a for a in attempts if a["number"] in opt_outs]
    assert [a["outcome"] for a in mine] == ["opted_out"] * len(opt_outs)
    assert {a["disposition"] for a in mine} == {"do_not_call"}  # the goodbye of the scenario's opt-out step
    assert {r["number"] for r in kit.cli_json(env, "dnc", "list")} >= set(opt_outs)
    lengths = [json.loads(line) for line in cdr.read_text().splitlines()]
    assert all(line["ended_at"] - line["received_at"] < 15 for line in lengths if line["number"] in opt_outs), lengths
