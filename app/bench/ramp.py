"""`callbot bench --ramp-to N --step K`: the bench at K, 2K, ... N calls, and the knee where it stops keeping up.

Each step is a whole ``callbot bench`` run (a fresh switch, audio server and robot; all its calls
start together unless ``--ramp``), so a step never inherits the backlog of the one before. The
knee is the first call count at which a barge-in is missed or fails, or the barge-in latency's
p95 passes the 40 ms budget (DESIGN section 1: uuid_break at the switch within 40 ms of the
1.5 s mark).
"""

from __future__ import annotations

import os
from typing import Any, Callable

LATENCY_BUDGET_MS = 40.0


def ramp_counts(ramp_to: int, step: int) -> list[int]:
    """``step``, ``2 * step``, ... up to ``ramp_to``, which is always the last count."""
    if step < 1 or ramp_to < 1:
        raise ValueError(f"--ramp-to {ramp_to} --step {step}: both must be at least 1")
    counts = list(range(step, ramp_to + 1, step))
    if not counts or counts[-1] != ramp_to:
        counts.append(ramp_to)
    return counts


def knee_reasons(doc: dict[str, Any]) -> list[str]:
    """Why one bench document is past the knee (empty when it keeps up)."""
    barge = doc["barge_in"]
    reasons = []
    if barge["missed"]:
        reasons.append(f"{barge['missed']} of {barge['expected']} barge-ins missed")
    failed = doc.get("failed", 0)
    if failed:
        reasons.append(f"{failed} calls failed")
    p95 = barge["latency_ms"]["p95"]
    if p95 is not None and p95 > LATENCY_BUDGET_MS:
        reasons.append(f"barge-in latency p95 {p95:g} ms > {LATENCY_BUDGET_MS:g} ms")
    return reasons


def find_knee(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first step past the knee, ``{calls, reasons}``, with the last count that kept up; None if all did."""
    kept_up = None
    for doc in steps:
        reasons = knee_reasons(doc)
        if reasons:
            return {"calls": doc["calls"], "last_good_calls": kept_up, "reasons": reasons}
        kept_up = doc["calls"]
    return None


def step_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """A bench document without its per-call rows, plus the cores each part kept busy (CPU s / wall s)."""
    out = {k: v for k, v in doc.items() if k != "per_call"}
    wall = doc["wall_s"] or 1e-9
    out["cores_busy"] = {part: round(cpu / wall, 2) for part, cpu in doc["cpu_s"].items()}
    return out


def run_ramp(run_one: Callable[[int], dict[str, Any]], ramp_to: int, step: int,
             progress: Callable[[int, int, int], None] = lambda i, n, calls: None) -> dict[str, Any]:
    """Run ``run_one(calls)`` at each count of the ramp; the document: the steps, the knee, the load."""
    counts = ramp_counts(ramp_to, step)
    load_start = os.getloadavg()
    steps = []
    for i, calls in enumerate(counts, 1):
        progress(i, len(counts), calls)
        steps.append(step_summary(run_one(calls)))
    return {
        "ramp_to": ramp_to,
        "step": step,
        "latency_budget_ms": LATENCY_BUDGET_MS,
        "knee": find_knee(steps),
        "steps": steps,
        "load_avg": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "cpu_count": os.cpu_count(),
    }
