"""`campaign run` against simswitch and a real audio server (real sockets): calls as greenlets on one ESL client,
every timeline row written as it happens, outcomes and retries, status, report, preflight refusals.

Callees here are fixture WAVs named after their numbers (``fixture/{number}``), which today's simswitch
serves; tests/test_campaign_e2e.py runs the DESIGN section 8 ``--callees`` mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from callbot.app.cli import main
from callbot.app.replay import FIXTURES_DIR, audio_server_thread
from callbot.config import Settings
from callbot.robot.store import CallAttempt, CallEvent, make_engine
from callbot.simswitch import SimSwitchThread
from test_store_kit import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures)

SPEED = 10
START = "2024-06-03T14:00:00Z"  # a Monday, 10:00 in New York
HUMANS = {"+12125550101": "long_reply", "+12125550102": "short_yes", "+12125550103": "silence"}
UNALLOCATED = "+12125550199"  # no fixture by that name: simswitch answers UNALLOCATED_NUMBER


@pytest.fixture(scope="module")
def audio_port():
    settings = Settings().replace(**{"stt.enabled": False})
    with audio_server_thread(settings) as port:
        yield port


@pytest.fixture
def callees(tmp_path) -> Path:
    folder = tmp_path / "callees"
    folder.mkdir()
    for number, name in HUMANS.items():
        os.symlink(FIXTURES_DIR / f"{name}.wav", folder / f"{number}.wav")
    return folder


def _env(url: str, esl_port: int, audio_port: int) -> dict[str, str]:
    return {"CALLBOT_DB_URL": url, "CALLBOT_ESL_PORT": str(esl_port), "CALLBOT_ESL_PASSWORD": "pw",
            "CALLBOT_AUDIO_SERVER_PORT": str(audio_port)}


def _create(url: str, tmp_path: Path, numbers: list[str], **extra: object) -> dict[str, str]:
    settings = {"dial_template": "fixture/{number}", "windows": ["mon-sun 00:00-24:00"], "ring_timeout_s": 15,
                "calls_per_second": 5, "max_concurrent": 3, "max_attempts": 2,
                "retry_after": {"busy": 0, "no_answer": 0, "failed": 0, "machine": 0, "interrupted": 0},
                "journal_dir": str(tmp_path / "journal"), **extra}
    lines = ["[campaign]"] + [f"{k} = {json.dumps(v) if not isinstance(v, dict) else _table(v)}"
                              for k, v in settings.items()]
    (tmp_path / "campaign.toml").write_text("\n".join(lines) + "\n")
    (tmp_path / "contacts.csv").write_text("number\n" + "\n".join(numbers) + "\n")
    env = {"CALLBOT_DB_URL": url}
    runner = CliRunner()
    assert runner.invoke(main, ["campaign", "create", "c", "--scenario", "survey_en", "--settings",
                                str(tmp_path / "campaign.toml")], env=env).exit_code == 0
    result = runner.invoke(main, ["campaign", "import", "c", str(tmp_path / "contacts.csv")], env=env)
    assert result.exit_code == 0, result.output
    return env


def _table(d: dict) -> str:
    return "{ " + ", ".join(f"{k} = {v}" for k, v in d.items()) + " }"


def test_a_campaign_runs_to_completion_and_every_row_is_recorded(db_url, tmp_path, callees, audio_port):  # noqa: F811
    _create(db_url, tmp_path, [*HUMANS, UNALLOCATED])
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", fixtures_dir=callees, start=START) as switch:
        env = _env(db_url, switch.esl_port, audio_port)
        result = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED), "--start", START,
                                           "--runner-id", "r1", "--max-concurrent", "2", "--cps", "4", "--json"],
                                    env=env)
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["reason"] == "done" and run["attempts"] == 4
    status = json.loads(CliRunner().invoke(main, ["campaign", "status", "c", "--json"], env=env).stdout)
    assert status["state"] == "done" and status["contacts"]["done"] == 3 and status["contacts"]["failed"] == 1
    assert status["outcomes"]["completed"] == 3 and status["outcomes"]["unallocated"] == 1
    assert status["abandoned"] == 0 and status["abandon_rate"] == 0.0 and status["next_due"] is None
    report = json.loads(CliRunner().invoke(main, ["campaign", "report", "c", "--json"], env=env).stdout)
    by_number = {a["number"]: a for a in report["attempts"]}
    spans = [(a["started_at"], +1) for a in report["attempts"]] + [(a["ended_at"], -1) for a in report["attempts"]]
    up = [sum(d for _, d in sorted(spans, key=lambda x: (x[0], x[1]))[:i + 1]) for i in range(len(spans))]
    assert max(up) <= 2  # --max-concurrent 2 over the campaign's 3
    long_reply = by_number["+12125550101"]
    assert long_reply["barge_ins"] and long_reply["answered_at"] and long_reply["runner"] == "r1"
    assert long_reply["started_at"] >= "2024-06-03T14:00" and long_reply["started_at"] < "2024-06-03T15:00"
    assert by_number[UNALLOCATED]["outcome"] == "unallocated" and by_number[UNALLOCATED]["answered_at"] is None
    engine = make_engine(db_url)
    with Session(engine) as s:
        for a in s.scalars(select(CallAttempt).where(CallAttempt.campaign_id.is_not(None))):
            rows = s.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.attempt_id == a.id))
            assert rows > 3, a.call_uuid  # the timeline, row by row
    png = tmp_path / "png"
    csv_path = tmp_path / "report.csv"
    out = CliRunner().invoke(main, ["campaign", "report", "c", "--csv", str(csv_path), "--png", str(png)], env=env)
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in png.iterdir()) == ["amd.png", "answers_per_hour.png", "barge_in_timing.png",
                                                      "outcomes.png"]
    assert csv_path.read_text().splitlines()[0].startswith("contact,number,attempt,runner,esl_host,call_uuid")


def test_paused_exits_3_and_nothing_due_exits_0_saying_when(sqlite_url, tmp_path, callees, audio_port):  # noqa: F811
    env = _create(sqlite_url, tmp_path, ["+12125550102", "+14155550123"], windows=["mon-fri 09:00-20:00"])
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", fixtures_dir=callees, start=START) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        CliRunner().invoke(main, ["campaign", "pause", "c"], env=env)
        paused = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED), "--start", START], env=env)
        assert paused.exit_code == 3 and "paused" in paused.stderr
        CliRunner().invoke(main, ["campaign", "resume", "c"], env=env)
        result = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED), "--start", START,
                                           "--json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    # New York was called; Los Angeles is at 07:00 and opens at 09:00 local
    assert doc["reason"] == "nothing_due" and doc["next_due"] == "2024-06-03T16:00:00.000Z"
    assert "next contact due at 2024-06-03T16:00:00.000Z" in result.stderr
    status = json.loads(CliRunner().invoke(main, ["campaign", "status", "c", "--json"], env=env).stdout)
    assert status["state"] == "idle" and status["contacts"]["scheduled"] == 1 and status["contacts"]["done"] == 1


def test_a_read_only_database_refuses_to_dial(tmp_path, callees, audio_port):
    path = tmp_path / "c.db"
    _create(f"sqlite:///{path}", tmp_path, list(HUMANS))
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", fixtures_dir=callees, start=START) as switch:
        env = _env(f"sqlite:///file:{path}?mode=ro&uri=true", switch.esl_port, audio_port)
        result = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED)], env=env)
    assert result.exit_code == 1 and "refusing to dial" in result.stderr and "read-only" in result.stderr
    with Session(make_engine(f"sqlite:///{path}")) as s:
        assert s.scalar(select(func.count()).select_from(CallAttempt)) == 0  # nothing claimed, nothing dialled


def test_an_unreachable_switch_refuses_to_dial(sqlite_url, tmp_path):  # noqa: F811
    _create(sqlite_url, tmp_path, list(HUMANS))
    env = {"CALLBOT_DB_URL": sqlite_url, "CALLBOT_ESL_PORT": "1", "CALLBOT_ESL_PASSWORD": "pw"}
    result = CliRunner().invoke(main, ["campaign", "run", "c"], env=env)
    assert result.exit_code == 1 and "refusing to dial" in result.stderr and "connection refused" in result.stderr


def test_metrics_port_serves_the_runners_counters(sqlite_url, tmp_path, callees, audio_port):  # noqa: F811
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _create(sqlite_url, tmp_path, ["+12125550102", UNALLOCATED])
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", fixtures_dir=callees, start=START) as switch:
        env = _env(sqlite_url, switch.esl_port, audio_port)
        result = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED), "--runner-id", "m1",
                                           "--metrics-port", str(port)], env=env)
    assert result.exit_code == 0, result.output
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {(s.name, s.labels.get("outcome")): s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.labels.get("runner") == "m1"}
    assert samples[("callbot_originates_total", None)] == 2
    assert samples[("callbot_outcomes_total", "completed")] == 1
    assert samples[("callbot_outcomes_total", "unallocated")] == 1
    assert samples[("callbot_calls_in_progress", None)] == 0


def test_progress_on_a_terminal_is_a_rich_bar_on_stderr(capsys):
    from callbot.robot.campaign.progress import RichProgress

    bar = RichProgress()
    bar.start("c", 4, 1)
    bar.attempt("+12125550102", 1, "completed", {"final": 2, "live": 1, "completed": 1})
    bar.note("nothing due")
    bar.close()
    out = capsys.readouterr()
    assert out.out == "" and "nothing due" in out.err


def test_a_database_locked_mid_campaign_loses_nothing(tmp_path, callees, audio_port):
    """The write lock is taken from under a running campaign: claims stop (exit 1), the calls up finish into
    the journal, and the next run replays it before dialling the rest."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "c.db"
    url = f"sqlite:///{path}"
    _create(url, tmp_path, [*HUMANS, UNALLOCATED], max_concurrent=2, calls_per_second=0.5)
    with SimSwitchThread(speed=SPEED, esl_port=0, password="pw", fixtures_dir=callees, start=START) as switch:
        env = _env(url, switch.esl_port, audio_port)
        result: dict = {}
        run = threading.Thread(target=lambda: result.update(first=CliRunner().invoke(
            main, ["campaign", "run", "c", "--speed", str(SPEED), "--json"], env=env)))
        run.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not switch.switch.live:
            time.sleep(0.02)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the database while calls are up
        time.sleep(7)
        holder.execute("ROLLBACK")
        holder.close()
        run.join(120)
        first = result["first"]
        assert first.exit_code == 1, first.output
        assert "database became unavailable" in first.stderr and "journal" in first.stderr
        second = CliRunner().invoke(main, ["campaign", "run", "c", "--speed", str(SPEED), "--json"], env=env)
    assert second.exit_code == 0, second.output
    engine = make_engine(url)
    with Session(engine) as s:
        attempts = list(s.scalars(select(CallAttempt).where(CallAttempt.campaign_id.is_not(None))))
        assert attempts and all(a.outcome and a.ended_at for a in attempts)
        for a in attempts:
            if a.answered_at is not None:
                assert s.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.attempt_id == a.id)) > 3
    status = json.loads(CliRunner().invoke(main, ["campaign", "status", "c", "--json"], env={"CALLBOT_DB_URL": url}).stdout)
    assert status["state"] == "done" and status["contacts"]["done"] == 3
    assert not list((tmp_path / "journal").glob("journal-*.jsonl"))  # replayed and removed
