"""Measure the robot's ESL client against simswitch: `api uuid_break` round trips on a live call; prints JSON.

    /work/venv/bin/python scripts/esl_client_latency.py [--n 500]

The DESIGN budget allows about 1 ms for ESL to the robot and back; this is the robot-side part
plus simswitch's command handling, over loopback TCP, on whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from callbot.config import EslSettings
from callbot.robot.esl.client import EslClient
from callbot.robot.esl.commands import break_command, kill_command, originate_command
from callbot.simswitch.thread import SimSwitchThread
from callbot.resources import demo_calls_dir

VOICE = demo_calls_dir() / "long_reply.wav"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(p * (len(ordered) - 1))], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="round trips to time")
    args = parser.parse_args()
    with SimSwitchThread(speed=1) as sim:
        client = EslClient(EslSettings(port=sim.esl_port, password="ClueCon"))
        client.connect()
        call = str(uuid.uuid4())
        client.route(call, lambda event: None)
        _, job = client.bgapi_async(originate_command(call, f"fixture/{VOICE}", {"ignore_early_media": True}))
        assert job.get(timeout=10).startswith("+OK"), "the call did not connect"
        rtt = []
        for _ in range(args.n):
            start = time.perf_counter()
            client.api(break_command(call))
            rtt.append((time.perf_counter() - start) * 1000)
        client.api(kill_command(call))
        client.stop()
    print(json.dumps({"command": "api uuid_break <uuid> all", "n": args.n,
                      "rtt_ms": {"p50": percentile(rtt, 0.5), "p95": percentile(rtt, 0.95),
                                 "p99": percentile(rtt, 0.99), "max": round(max(rtt), 3)}}))


if __name__ == "__main__":
    main()
