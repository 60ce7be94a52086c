"""`campaign report --png DIR`: outcome, AMD, barge-in timing and answers-per-hour charts (matplotlib, no display)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from callbot.robot.campaign.rules import OUTCOMES
from callbot.robot.campaign.times import parse_iso

CHARTS = ("outcomes.png", "amd.png", "barge_in_timing.png", "answers_per_hour.png")


def draw(doc: dict[str, Any], folder: str | Path) -> list[Path]:
    """Write the four charts of a ``campaign report`` document into ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    attempts = doc["attempts"]
    name = doc["campaign"]
    paths = []

    def save(fig: Any, file: str) -> None:
        fig.tight_layout()
        fig.savefig(out / file, dpi=100)
        plt.close(fig)
        paths.append(out / file)

    outcomes = Counter(a["outcome"] or "in_flight" for a in attempts)
    labels = [o for o in (*OUTCOMES, "in_flight") if outcomes.get(o)] or ["none"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(labels, [outcomes.get(o, 0) for o in labels], color="#4477aa")
    ax.set_title(f"{name}: outcomes of {len(attempts)} attempts")
    ax.set_ylabel("attempts")
    ax.tick_params(axis="x", rotation=30)
    save(fig, "outcomes.png")

    amd = Counter(a["amd"] or "none" for a in attempts if a["answered_at"])
    keys = [k for k in ("human", "machine", "notsure", "none") if amd.get(k)] or ["none"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(keys, [amd.get(k, 0) for k in keys], color="#228833")
    ax.set_title(f"{name}: AMD verdicts of answered calls")
    ax.set_ylabel("calls")
    save(fig, "amd.png")

    detect = [b["detected_s"] - b["speech_onset_s"] for a in attempts for b in a["barge_ins"]
              if b.get("detected_s") is not None and b.get("speech_onset_s") is not None]
    react = [(b["break_at_switch_s"] - b["detected_s"]) * 1000 for a in attempts for b in a["barge_ins"]
             if b.get("break_at_switch_s") is not None and b.get("detected_s") is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(detect or [0], bins=20, color="#ccbb44")
    left.set_title(f"speech onset to barge-in (s), n={len(detect)}")
    right.hist(react or [0], bins=20, color="#ee6677")
    right.set_title(f"barge-in to uuid_break at switch (ms), n={len(react)}")
    save(fig, "barge_in_timing.png")

    hours = Counter(parse_iso(a["answered_at"]).strftime("%m-%d %H:00") for a in attempts if a["answered_at"])
    ticks = sorted(hours) or ["none"]
    fig, ax = plt.subplots(figsize=(max(6, len(ticks) * 0.5), 4))
    ax.bar(ticks, [hours.get(t, 0) for t in ticks], color="#66ccee")
    ax.set_title(f"{name}: answered calls per hour (UTC)")
    ax.set_ylabel("answered")
    ax.tick_params(axis="x", rotation=60)
    save(fig, "answers_per_hour.png")
    return paths
