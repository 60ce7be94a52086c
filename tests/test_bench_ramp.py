"""`callbot bench --ramp-to N --step K`: the steps, the knee, the plot; and CPU read over a process tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbot.app.bench.plot import draw_ramp
from callbot.app.bench.proc import child_pids, tree_cpu_s
from callbot.app.bench.ramp import find_knee, ramp_counts, run_ramp
from callbot.app.cli import main
from callbot.app.replay import FIXTURES_DIR

CLI = [sys.executable, "-c", "from callbot.app.cli import main; main()"]
CONTRACT_KEYS = {"calls", "wall_s", "barge_in", "stt", "cpu_s", "peak_rss_mb"}


def _doc(calls: int, p95: float | None, missed: int = 0, failed: int = 0) -> dict:
    """A bench document with what the ramp reads (DESIGN section 5 keys)."""
    return {"calls": calls, "wall_s": 10.0, "failed": failed, "ramp_s": 0.0, "per_call": [{"fixture": "x"}],
            "barge_in": {"expected": calls, "detected": calls - missed, "missed": missed, "false": 0,
                         "latency_ms": {"p50": p95 and p95 / 2, "p95": p95, "p99": p95, "max": p95}},
            "stt": {}, "cpu_s": {"audio_server": calls / 10, "robot": 0.5, "switch": 1.0}, "peak_rss_mb": 100.0}


def test_ramp_counts_end_at_the_target() -> None:
    assert ramp_counts(200, 50) == [50, 100, 150, 200]
    assert ramp_counts(90, 40) == [40, 80, 90]
    assert ramp_counts(5, 10) == [5]
    with pytest.raises(ValueError, match="at least 1"):
        ramp_counts(10, 0)


def test_the_knee_is_the_first_miss_failure_or_p95_past_40_ms() -> None:
    assert find_knee([_doc(10, 5.0), _doc(20, 40.0)]) is None  # 40 ms is within the budget
    assert find_knee([_doc(10, 5.0), _doc(20, 41.0), _doc(30, 90.0, missed=2)]) == \
        {"calls": 20, "last_good_calls": 10, "reasons": ["barge-in latency p95 41 ms > 40 ms"]}
    knee = find_knee([_doc(10, 5.0, missed=1, failed=2)])
    assert knee == {"calls": 10, "last_good_calls": None,
                    "reasons": ["1 of 10 barge-ins missed", "2 calls failed"]}
    assert find_knee([_doc(10, None)]) is None  # no barge-in expected, none missed


def test_run_ramp_keeps_each_steps_contract_keys_and_draws_a_png(tmp_path: Path) -> None:
    ran = []

    def run_one(calls: int) -> dict:
        ran.append(calls)
        return _doc(calls, 3.0 * calls / 10, missed=int(calls >= 150))

    ramp = run_ramp(run_one, 200, 50)
    assert ran == [50, 100, 150, 200]
    assert all(CONTRACT_KEYS <= set(step) and "per_call" not in step for step in ramp["steps"])
    assert ramp["steps"][1]["cores_busy"] == {"audio_server": 1.0, "robot": 0.05, "switch": 0.1}
    assert ramp["knee"]["calls"] == 150 and ramp["knee"]["last_good_calls"] == 100
    png = tmp_path / "ramp.png"
    draw_ramp(ramp, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ramp_options_say_what_goes_together() -> None:
    result = CliRunner().invoke(main, ["bench", "--png", "x.png"])
    assert result.exit_code == 2 and "--step and --png go with --ramp-to N" in result.output
    result = CliRunner().invoke(main, ["bench", "--ramp-to", "10", "--calls", "5"])
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_tree_cpu_counts_live_children_and_reaped_ones() -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    spawner = ("import subprocess, sys, time\n"
               f"subprocess.run([sys.executable, '-c', {burn!r}])\n"  # a child that burns 0.4 s, then is reaped
               f"live = subprocess.Popen([sys.executable, '-c', {burn!r} + 'time.sleep(30)'])\n"
               "print('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", spawner], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while tree_cpu_s(proc.pid) < 0.8 and time.monotonic() < deadline:  # the live child is still burning
            time.sleep(0.05)
        assert len(child_pids(proc.pid)) == 1
        assert tree_cpu_s(proc.pid) >= 0.8  # 0.4 s reaped + 0.4 s live (+ the interpreters' start-up)
    finally:
        for pid in child_pids(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait()


@pytest.mark.slow  # two real benches (2 and 4 calls, real time): about a minute
def test_a_real_ramp_prints_steps_and_writes_its_png(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    for name in ("pauses_2500ms", "short_yes"):  # one barge-in, one short answer
        for suffix in (".wav", ".json"):
            shutil.copy(FIXTURES_DIR / f"{name}{suffix}", fixtures)
    png = tmp_path / "ramp.png"
    out = subprocess.run([*CLI, "bench", "--ramp-to", "4", "--step", "2", "--no-stt", "--server-workers", "2",
                          "--fixtures", str(fixtures), "--png", str(png)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ramp = json.loads(out.stdout)
    assert [s["calls"] for s in ramp["steps"]] == [2, 4] and ramp["png"] == str(png)
    for step in ramp["steps"]:
        assert CONTRACT_KEYS <= set(step) and step["audio_server_workers"] == 2
        assert step["barge_in"]["expected"] == step["calls"] // 2 and step["barge_in"]["false"] == 0
        assert step["cpu_s"]["audio_server"] > 0
    assert "bench ramp: step 2/2: 4 calls" in out.stderr
    assert png.stat().st_size > 10_000
