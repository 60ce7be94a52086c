"""Barge-in latency at the switch over repeated replays; prints one JSON document.

Usage: python scripts/replay_latency.py [--runs N] [--speed S] [FIXTURE ...]
Latency = break_at_switch_s - (true onset + threshold), in ms of call time (robot.bench_score's rule).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from callbot.config import Settings
from callbot.app.bench.score import barge_in_latency_ms
from callbot.app.replay import FIXTURES_DIR, load_sidecar, replay


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("fixtures", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    names = args.fixtures or sorted(p.stem for p in FIXTURES_DIR.glob("*.wav")
                                    if (load_sidecar(p) or {}).get("expect", {}).get("barge_in"))
    samples: dict[str, list[float]] = {n: [] for n in names}
    settings = Settings()
    threshold_s, bridge_s = settings.bargein.min_speech_ms / 1000, settings.bargein.bridge_ms / 1000
    started = time.monotonic()
    for _ in range(args.runs):
        for name in names:
            report = replay(name, settings, speed=args.speed)
            latency = barge_in_latency_ms(report, load_sidecar(FIXTURES_DIR / f"{name}.wav"), threshold_s, bridge_s)
            if latency is not None:
                samples[name].append(latency)
    flat = sorted(x for v in samples.values() for x in v)
    q = statistics.quantiles(flat, n=20, method="inclusive") if len(flat) > 1 else flat * 19
    wall_s = round(time.monotonic() - started, 1)
    print(json.dumps({"speed": args.speed, "runs": args.runs, "n": len(flat), "wall_s": wall_s,
                      "latency_ms": {"min": flat[0], "p50": round(statistics.median(flat), 1), "p95": round(q[18], 1),
                                     "max": flat[-1]},
                      "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
