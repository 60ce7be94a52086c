"""deploy/measure_db_load.py: a small campaign on a fresh PostgreSQL database, its load per call from pg_stat_database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "measure_db_load.py"
PG_ENV = "CALLBOT_TEST_PG_URL"


@pytest.mark.slow  # simswitch, an audio server and a campaign runner: about 15 s
def test_db_load_per_call_is_measured_and_the_database_dropped() -> None:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"{PG_ENV} is not set: run `eval \"$(.ci/postgres.sh)\"` to start PostgreSQL")
    out = subprocess.run([sys.executable, str(SCRIPT), "--calls", "3"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["attempts"] == 3 and doc["run"]["exit_code"] == 0
    per_call = doc["per_call"]
    assert per_call["xact_commit"] >= 2 and per_call["tup_inserted"] >= 2  # at least the attempt and its result
    assert doc["total"]["tup_inserted"] == pytest.approx(per_call["tup_inserted"] * 3, abs=2)
