"""Database load per call: a campaign of N calls against simswitch, on a fresh PostgreSQL database.

    .venv/bin/python deploy/measure_db_load.py --calls 40 [--pg-url postgresql+psycopg://…/postgres]

Starts simswitch (its virtual clock at --speed) and an audio server, creates a campaign of N
contacts that all answer and talk over the greeting (fixture long_reply), runs one runner to the
end, and reads PostgreSQL's own counters (pg_stat_database) for that database before and after.
Prints one JSON document: transactions, rows written and rows read, in total and per call attempt.
The database is dropped afterwards. Needs a role that may CREATE DATABASE (.ci/postgres.sh makes one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

CALLBOT = [sys.executable, "-m", "callbot"]
START = "2024-06-03T14:00:00Z"  # a Monday, 10:00 in New York: inside the window below
COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_fetched",
            "tup_returned")


def _listening(proc: subprocess.Popen, log: Path, msg: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("msg") == msg and "worker" not in record:
                return int(record["port"])
        if proc.poll() is not None:
            raise SystemExit(f"{msg!r} never came; the process exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise SystemExit(f"{msg!r} did not come within {timeout:g} s: {log.read_text()[-2000:]}")


def _stats(admin, name: str) -> dict[str, int]:
    """The database's counters now (PostgreSQL 15+ is asked to flush its pending ones first)."""
    with admin.connect() as conn:
        if conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'pg_stat_force_next_flush'")).scalar():
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
        row = conn.execute(text(f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = :name"),
                           {"name": name}).one()
    return dict(zip(COUNTERS, map(int, row)))


def measure(pg_url: str, calls: int, speed: float) -> dict:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"callbot_dbload_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="callbot-dbload-") as tmp_dir:
            tmp = Path(tmp_dir)
            numbers = [f"+1212555{1000 + i:04d}" for i in range(calls)]
            (tmp / "callees.csv").write_text("number,callee\n" + "".join(f"{n},fixture/long_reply\n" for n in numbers))
            (tmp / "contacts.csv").write_text("number,name\n" + "".join(f"{n},c{i}\n" for i, n in enumerate(numbers)))
            (tmp / "campaign.toml").write_text(
                '[campaign]\ndial_template = "sofia/gateway/carrier/{number}"\nwindows = ["mon-fri 09:00-20:00"]\n'
                f"max_concurrent = {min(calls, 20)}\ncalls_per_second = 5\nmax_attempts = 1\nring_timeout_s = 15\n"
                f'lease_s = 30\njournal_dir = "{tmp / "journal"}"\n')
            from callbot.resources import demo_calls_dir

            logs = {kind: tmp / f"{kind}.log" for kind in ("switch", "audio")}
            with open(logs["switch"], "w") as out:
                procs.append(subprocess.Popen(
                    [*CALLBOT, "--log-json", "simswitch", "--esl-port", "0", "--password", "pw", "--speed", str(speed),
                     "--fixtures", str(demo_calls_dir()), "--callees", str(tmp / "callees.csv"), "--start", START],
                    stdout=subprocess.DEVNULL, stderr=out))
            with open(logs["audio"], "w") as out:
                procs.append(subprocess.Popen([*CALLBOT, "--log-json", "audio-server", "--port", "0", "--no-stt",
                                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=out))
            esl_port = _listening(procs[0], logs["switch"], "simswitch listening")
            audio_port = _listening(procs[1], logs["audio"], "audio server listening")
            env = {**os.environ, "CALLBOT_DB_URL": url, "CALLBOT_ESL_PORT": str(esl_port),
                   "CALLBOT_ESL_PASSWORD": "pw", "CALLBOT_AUDIO_SERVER_PORT": str(audio_port)}
            for args in (["campaign", "create", "load", "--scenario", "survey_en", "--settings",
                          str(tmp / "campaign.toml")], ["campaign", "import", "load", str(tmp / "contacts.csv")]):
                subprocess.run([*CALLBOT, *args], env=env, check=True, capture_output=True, timeout=120)
            time.sleep(1.0)
            before = _stats(admin, name)
            started = time.monotonic()
            run = subprocess.run([*CALLBOT, "campaign", "run", "load", "--speed", str(speed), "--start", START,
                                  "--json"], env=env, capture_output=True, text=True, timeout=1800)
            wall = time.monotonic() - started
            if run.returncode != 0:
                raise SystemExit(f"campaign run exited {run.returncode}: {run.stderr[-2000:]}")
            time.sleep(1.5)  # the server flushes its counters at most once a second
            after = _stats(admin, name)
            result = json.loads(run.stdout)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    attempts = int(result.get("attempts") or calls)
    delta = {k: after[k] - before[k] for k in COUNTERS}
    return {"calls": calls, "attempts": attempts, "speed": speed, "wall_s": round(wall, 1), "run": result,
            "total": delta,
            "per_call": {k: round(v / attempts, 1) for k, v in delta.items()},
            "load_avg": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--speed", type=float, default=10.0, help="simswitch's virtual clock (calls take 1/speed)")
    parser.add_argument("--pg-url", default=os.environ.get("CALLBOT_TEST_PG_URL",
                                                          "postgresql+psycopg://callbot:callbot@127.0.0.1:5432/postgres"),
                        help="a database URL of a role that may CREATE DATABASE (default: $CALLBOT_TEST_PG_URL)")
    args = parser.parse_args()
    print(json.dumps(measure(args.pg_url, args.calls, args.speed), indent=1))


if __name__ == "__main__":
    main()
