"""`callbot campaign simulate`: the CI mix of scripts/campaign_mix.py in one process on simswitch's clock, in
lockstep, at two speeds and free-running. The decisions must not depend on the speed: every contact's outcomes, the DNC list
and the AMD verdicts are the same, the CDR keeps DESIGN section 8's guarantees (no contact in two calls at
once, none over max_attempts, outside its window or while on DNC) and nobody is abandoned."""

from __future__ import annotations

import pytest

from test_campaign_e2e import kit  # scripts/campaign_mix.py: the mix, its files and its checks

pytestmark = pytest.mark.slow  # three simulated campaigns: about a minute and a half on two cores

RUNS = {"10x": (10, False), "40x": (40, False), "free run": (10, True)}  # name: (--speed, --free-run)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {name: kit.simulated_run(kit.CI_CONTACTS, speed, tmp_path_factory.mktemp("sim"), free_run=free)
            for name, (speed, free) in RUNS.items()}


@pytest.mark.parametrize("name", RUNS)
def test_the_simulated_mix_is_what_the_mix_implies(runs, name):
    run, (speed, free) = runs[name], RUNS[name]
    assert run["violations"] == [], "\n".join(run["violations"])
    assert run["result"]["reason"] == "nothing_due" and run["result"]["next_due"] == kit.NEXT_MORNING
    assert run["abandoned"] == 0
    assert run["amd"]["machine"] >= 1
    simulation = run["simulation"]
    assert simulation["start"].startswith("2024-06-03T14:00:0")
    assert simulation["speed"] == ("free run" if free else speed)


@pytest.mark.parametrize("name", ["40x", "free run"])
def test_the_same_decisions_at_any_speed(runs, name):
    slow, fast = runs["10x"], runs[name]
    assert fast["per_contact"] == slow["per_contact"]  # every attempt of every number, in order
    assert fast["dnc"] == slow["dnc"]
    assert fast["originates"] == slow["originates"]
    assert fast["amd"] == slow["amd"]
    # the audio server's verdicts reach the calls at the next media tick, whatever the speed
    assert fast["amd_verdict_lag_s"]["max"] <= 0.1, fast["amd_verdict_lag_s"]


def test_simulate_refuses_a_bad_start(tmp_path, callbot_cli):
    import subprocess

    callees = tmp_path / "callees.csv"
    callees.write_text("number,callee\n")
    out = subprocess.run([*callbot_cli, "--db", f"sqlite:///{tmp_path / 'x.db'}", "campaign", "simulate", "none",
                          "--callees", str(callees), "--start", "yesterday"], capture_output=True, text=True)
    assert out.returncode == 2 and "--start" in out.stderr, out.stderr
