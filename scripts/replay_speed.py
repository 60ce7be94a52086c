"""Does speed change what happens? One fixture replayed at 1x and at N x; prints one JSON document.

Usage: python scripts/replay_speed.py [--speed 20] [--runs 3] [FIXTURE]
For each speed: the decisions (disposition, replies, barge-ins, prompts' statuses, flags), the call's
length in call time (CHANNEL_ANSWER to CHANNEL_HANGUP at the switch), and the wall time between them.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any

from callbot.app.replay import replay
from callbot.config import Settings


def one(fixture: str, speed: float) -> dict[str, Any]:
    walls: dict[str, float] = {}

    def on_entry(row: dict[str, Any]) -> None:
        if row["source"] == "switch" and row["type"] in ("CHANNEL_ANSWER", "CHANNEL_HANGUP"):
            walls.setdefault(row["type"], time.monotonic())

    report = replay(fixture, Settings(), speed=speed, on_entry=on_entry)
    times = {e["type"]: e["t"] for e in report["events"] if e["source"] == "switch"
             and e["type"] in ("CHANNEL_ANSWER", "CHANNEL_HANGUP")}
    return {
        "decisions": {"disposition": report["disposition"], "amd": report["amd"],
                      "replies": [(i["step"], i["outcome"]) for i in report["intents"]],
                      "prompts": [(p["file"], p["status"]) for p in report["prompts"]],
                      "barge_ins": len(report["barge_ins"]), "flags": report["flags"]},
        "length_s": round(times["CHANNEL_HANGUP"] - times["CHANNEL_ANSWER"], 3),
        "break_at_switch_s": [b["break_at_switch_s"] for b in report["barge_ins"]],
        "wall_answer_to_hangup_s": round(walls["CHANNEL_HANGUP"] - walls["CHANNEL_ANSWER"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("fixture", nargs="?", default="long_reply")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = one(args.fixture, 1.0)
    fast = [one(args.fixture, args.speed) for _ in range(args.runs)]
    print(json.dumps({
        "fixture": args.fixture, "speed": args.speed, "real_time": base, "fast": fast,
        "same_decisions": all(f["decisions"] == base["decisions"] for f in fast),
        "max_length_diff_s": round(max(abs(f["length_s"] - base["length_s"]) for f in fast), 3),
        "effective_speed_p50": round(statistics.median(f["length_s"] / f["wall_answer_to_hangup_s"] for f in fast), 1),
        "effective_speed_min": round(min(f["length_s"] / f["wall_answer_to_hangup_s"] for f in fast), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
