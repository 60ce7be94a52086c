"""`callbot bench`: N concurrent replayed calls through one switch, one audio server and one robot, scored.

As a deployment would run them: ONE simswitch (a thread here), ONE audio server with one Whisper
model (a child process, see robot.bench_proc), ONE robot (a gevent thread with one ESL connection
and a call-session greenlet per call). Each call's callee voice is a fixture WAV, cycled from the
fixtures directory; each is scored against its sidecar (robot.bench_score). The document follows
DESIGN section 5 (``calls``, ``wall_s``, ``barge_in``, ``stt``, ``cpu_s``, ``peak_rss_mb``) plus
extra keys (per-call rows, failures, load average).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gevent

from callbot.config import Settings
from callbot.app.bench.proc import AudioServerProcess, BenchError, peak_rss_mb, process_cpu_s, thread_cpu_s
from callbot.app.bench.score import percentiles, score_call, summarize
from callbot.robot.call.record import CallRecord
from callbot.robot.shell.session import CallSession
from callbot.robot.checks import require_ok, run_checks
from callbot.robot.esl.client import EslClient
from callbot.robot.shell.gevent_thread import GeventThread
from callbot.robot.shell.one_call import audio_base_url
from callbot.app.replay import (FIXTURES_DIR, _latency_mode, load_sidecar, replay_settings,
                          report_with_truth, wired_settings)
from callbot.robot.scenario.loader import Scenario, bundled_scenario, load_scenario
from callbot.simswitch import SimSwitchThread

Progress = Callable[[int, int, str], None]


def bench_fixtures(directory: Path) -> list[Path]:
    """The WAVs of ``directory`` that have a sidecar (only those can be scored), sorted by name."""
    if not directory.is_dir():
        raise BenchError(f"--fixtures {directory}: not a directory; pass a directory of WAVs with NAME.json sidecars")
    wavs = sorted(p.resolve() for p in directory.glob("*.wav") if p.with_suffix(".json").is_file())
    if not wavs:
        raise BenchError(f"--fixtures {directory}: no WAV there has a NAME.json sidecar to score it against")
    return wavs


def _run_calls(settings: Settings, scenario: Scenario, destinations: list[str], starts_s: list[float],
               progress: Progress) -> list[CallRecord | str]:
    """In the robot's gevent thread: one ESL connection, start-up checks, one greenlet per call.

    ``starts_s`` are call seconds after which each call is dialled. A call that raises is returned
    as its error text, so it is counted, never dropped.
    """
    client = EslClient(settings.esl)
    client.connect()
    try:
        require_ok(run_checks(settings, client))
        done = itertools.count(1)

        def one(i: int) -> CallRecord | str:
            gevent.sleep(starts_s[i] / settings.robot.speed)
            try:
                out: CallRecord | str = CallSession(client, scenario, settings, destinations[i],
                                                    audio_url=audio_base_url(settings)).run()
            except Exception as exc:  # any failure of one call is its result, reported with the others
                out = f"{type(exc).__name__}: {exc}"
            progress(next(done), len(destinations), "failed" if isinstance(out, str) else "ok")
            return out

        greenlets = [gevent.spawn(one, i) for i in range(len(destinations))]
        gevent.joinall(greenlets)
        return [g.value if g.successful() else f"greenlet died: {g.exception!r}" for g in greenlets]
    finally:
        client.stop()


def _cpu_snapshot(audio: AudioServerProcess, robot_tid: int, switch_tid: int) -> dict[str, float]:
    return {"audio_server": audio.cpu_s(), "robot": thread_cpu_s(robot_tid), "switch": thread_cpu_s(switch_tid),
            "bench_process": process_cpu_s()}


def run_bench(settings: Settings, *, calls: int, fixtures_dir: Path | None = None, speed: float,
              ramp: bool = False, config_path: str | None = None,
              progress: Progress = lambda done, total, status: None) -> dict[str, Any]:
    """Run ``calls`` concurrent calls and return the bench document (DESIGN section 5 keys first).

    ``cpu_s`` counts from the moment everything is up (the model loaded) to the last call's end:
    ``audio_server`` is the whole child process (all its threads), ``robot`` and ``switch`` their
    threads here; ``cpu_s_bench_other`` is the rest of this process (main thread, logging).
    ``peak_rss_mb`` is the sum of both processes' VmHWM (each in ``peak_rss_mb_by_process``).
    """
    cfg = settings.bench
    if not 1 <= calls <= cfg.max_calls:
        raise BenchError(f"--calls {calls} is outside 1..{cfg.max_calls} (bench.max_calls)")
    if not 0.1 <= speed <= 100:
        raise BenchError(f"--speed {speed} is outside 0.1..100")
    wavs = bench_fixtures(fixtures_dir or FIXTURES_DIR)
    chosen = [wavs[i % len(wavs)] for i in range(calls)]
    sidecars = {w: load_sidecar(w) or {} for w in wavs}
    starts_s = [cfg.ramp_s * i / calls if ramp else 0.0 for i in range(calls)]
    settings = replay_settings(settings)
    scenario = load_scenario(settings.robot.scenario or bundled_scenario(), rate=settings.robot.prompt_rate,
                             prompts_dir=settings.prompts.path())
    load_start = os.getloadavg()
    with AudioServerProcess(settings, config_path, calls, cfg.server_start_timeout_s) as audio, \
            SimSwitchThread(speed=speed, esl_port=0, password=settings.simswitch.password,
                            fixtures_dir=chosen[0].parent) as switch, _latency_mode():
        run_settings = wired_settings(settings, switch.esl_port, audio.port, speed)
        robot = GeventThread("robot")
        robot.start()
        try:
            tids = robot.call(threading.get_native_id), switch.call(threading.get_native_id)
            stt_before, cpu_before = audio.stt_totals(), _cpu_snapshot(audio, *tids)
            sim = switch.switch
            assert sim is not None
            switch.call(sim.tick_lags.clear)
            started = time.monotonic()
            future = robot.submit(_run_calls, run_settings, scenario, [f"fixture/{w}" for w in chosen], starts_s,
                                  progress)
            try:
                results = future.result(cfg.call_timeout_s)
            except concurrent.futures.TimeoutError:
                raise BenchError(f"the calls were not over after {cfg.call_timeout_s:g} s (bench.call_timeout_s): "
                                 f"raise it, or run fewer --calls or a higher --speed") from None
            wall_s = time.monotonic() - started
            cpu_after, stt_after = _cpu_snapshot(audio, *tids), audio.stt_totals()
            tick_lags_ms = switch.call(lambda: [1000 * lag for lag in sim.tick_lags])
        finally:
            robot.stop()
        threshold_s, bridge_s = settings.bargein.min_speech_ms / 1000, settings.bargein.bridge_ms / 1000
        rows = []
        for wav, result in zip(chosen, results):
            if isinstance(result, str):
                rows.append(score_call(wav.name, None, None, sidecars[wav], threshold_s, bridge_s, error=result))
            else:
                report, truth = report_with_truth(switch, result, wav.name)
                rows.append(score_call(wav.name, report, truth, sidecars[wav], threshold_s, bridge_s,
                                       notsure_as=scenario.voicemail.on_notsure))
        rss = {"audio_server": audio.peak_rss_mb(), "bench": peak_rss_mb()}
    cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after}
    audio_s = stt_after["audio_s"] - stt_before["audio_s"]
    scored = summarize(rows)
    return {
        "calls": calls,
        "wall_s": round(wall_s, 2),
        "barge_in": scored["barge_in"],
        "stt": {**scored["stt"], "rtf": round((stt_after["decode_s"] - stt_before["decode_s"]) / audio_s, 3)
                if audio_s > 0 else None},
        "cpu_s": {"audio_server": cpu["audio_server"], "robot": cpu["robot"], "switch": cpu["switch"]},
        "peak_rss_mb": round(sum(rss.values()), 1),
        "speed": speed,
        # STT runs in wall time while the switch runs ``speed`` x faster: a final's call-time latency is
        # mostly decode wall time x speed. This is that latency back in wall ms (call ms / speed).
        "stt_final_latency_wall_ms": {k: None if v is None else round(v / speed, 1)
                                      for k, v in scored["stt"]["final_latency_ms"].items()},
        # the audio server's share of the barge-in latency: its barge_in event's ::json at the switch
        "barge_in_relayed_ms": percentiles([r["barge_in_path_ms"]["relayed"] for r in rows
                                            if r["barge_in_path_ms"] is not None], (50, 95, 100)),
        # how late simswitch ran its 20 ms media ticks (the load generator, not the audio server, falling behind)
        "switch_tick_lag_ms": {k: None if v is None else round(v, 1)
                               for k, v in percentiles(tick_lags_ms, (50, 95, 100)).items()},
        "ramp_s": cfg.ramp_s if ramp else 0.0,
        "failed": sum(r["error"] is not None for r in rows),
        # calls where the verdict the robot acted on (notsure as the scenario's voicemail.on_notsure) is not the
        # sidecar's expect.amd; amd_notsure: calls whose verdict was notsure
        "amd_mismatches": scored["amd_mismatches"],
        "amd_notsure": scored["amd_notsure"],
        "cpu_s_bench_other": round(cpu["bench_process"] - cpu["robot"] - cpu["switch"], 2),
        "peak_rss_mb_by_process": rss,
        "load_avg": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "cpu_count": os.cpu_count(),
        "audio_server_workers": audio.workers,
        "per_call": rows,
    }
