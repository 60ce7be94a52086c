"""`callbot bench --ramp-to N --png FILE`: barge-in latency, misses and CPU against the number of calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw_ramp(ramp: dict[str, Any], path: Path) -> None:
    """Three panels over one calls axis, the knee marked; needs matplotlib (a callbot dependency), no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = ramp["steps"]
    calls = [s["calls"] for s in steps]
    latency = [s["barge_in"]["latency_ms"] for s in steps]
    fig, (lat, miss, cpu) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("max", "x:")):
        lat.plot(calls, [row[key] if row[key] is not None else float("nan") for row in latency], style, label=key)
    lat.axhline(ramp["latency_budget_ms"], color="red", lw=1, ls="--", label=f'budget {ramp["latency_budget_ms"]:g} ms')
    lat.set_yscale("symlog", linthresh=100)  # the budget and the seconds of an overload on one axis
    lat.set_ylim(bottom=-50)  # a detector onset a frame early reads a few ms negative
    lat.set_ylabel("barge-in latency (ms)\nbreak at switch - (onset + 1.5 s)")
    lat.legend(loc="best", fontsize=8)
    width = max(1.0, (calls[1] - calls[0]) * 0.35) if len(calls) > 1 else 1.0
    miss.bar([c - width / 2 for c in calls], [s["barge_in"]["missed"] + s.get("failed", 0) for s in steps], width,
             label="missed or failed")
    miss.bar([c + width / 2 for c in calls], [s["barge_in"]["false"] for s in steps], width, label="false")
    miss.set_ylim(bottom=0)
    miss.yaxis.get_major_locator().set_params(integer=True)
    miss.set_ylabel("barge-ins")
    miss.legend(loc="upper left")
    for part in ("audio_server", "robot", "switch"):
        cpu.plot(calls, [s["cores_busy"][part] for s in steps], "o-", label=part.replace("_", " "))
    cpu.axhline(ramp["cpu_count"] or 0, color="grey", lw=1, ls="--", label="cores on this machine")
    cpu.set_ylabel("cores busy (CPU s / wall s)")
    cpu.set_xlabel("concurrent calls (all started together)" if not steps[0].get("ramp_s") else "calls")
    cpu.legend(loc="upper left")
    knee = ramp["knee"]
    for axis in (lat, miss, cpu):
        if knee:
            axis.axvline(knee["calls"], color="red", lw=1, alpha=0.5)
        axis.grid(alpha=0.3)
    title = f'knee at {knee["calls"]} calls: {"; ".join(knee["reasons"])}' if knee else \
        f'no knee up to {calls[-1]} calls'
    fig.suptitle(f'callbot bench ramp ({ramp["cpu_count"]} cores)\n{title}', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
