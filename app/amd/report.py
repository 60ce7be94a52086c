"""Score AMD and beep detection on a directory of fixtures: confusion matrix, decision times, beep timing.

Each fixture is replayed by a pluggable :data:`~audio_server.amd_replay.ReplayFn` (the audio
pipeline alone by default, or ``callbot replay``) and scored against its sidecar's ``expect.amd``
and ``beep``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from callbot.audio_server.amd.detector import RESULTS
from callbot.app.amd.replay import FixtureError, FixtureOutcome, ReplayFn, replay_pipeline
from callbot.config import Settings
from callbot.robot.scenario.loader import acted_verdict

BEEP_TOLERANCE_S = 0.1  # a detected beep ending this close to the sidecar's beep end is that beep


def load_sidecar(wav: Path) -> dict[str, Any]:
    """NAME.json beside NAME.wav, checked for ``expect.amd``."""
    path = wav.with_suffix(".json")
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FixtureError(f"{path}: missing; every AMD fixture needs a sidecar with expect.amd") from None
    except ValueError as exc:
        raise FixtureError(f"{path}: not valid JSON ({exc})") from None
    expect = sidecar.get("expect") if isinstance(sidecar, dict) else None
    expected = expect.get("amd") if isinstance(expect, dict) else None
    if expected not in ("human", "machine"):
        raise FixtureError(f"{path}: expect.amd is {expected!r}; set it to \"human\" or \"machine\"")
    return sidecar


def fixture_wavs(directory: Path) -> list[Path]:
    """Every NAME.wav with a NAME.json sidecar in ``directory``, each sidecar checked; FixtureError if none."""
    wavs = sorted(p for p in directory.glob("*.wav") if p.with_suffix(".json").exists())
    if not wavs:
        raise FixtureError(f"{directory}: no NAME.wav with a NAME.json sidecar; "
                           "generate some with scripts/make_amd_fixtures.py")
    for wav in wavs:
        load_sidecar(wav)
    return wavs


def score_fixture(name: str, sidecar: dict[str, Any], outcome: FixtureOutcome, notsure_as: str) -> dict[str, Any]:
    """One fixture's row: the decision against expect.amd, and the beeps against the sidecar's beep."""
    result = outcome.amd.result if outcome.amd else None
    effective = acted_verdict(result, notsure_as)
    truth = sidecar.get("beep")
    matched = [b for b in outcome.beeps if truth and abs(b.t - truth[1]) <= BEEP_TOLERANCE_S]
    row: dict[str, Any] = {
        "fixture": name,
        "expected": sidecar["expect"]["amd"],
        "result": result,
        "cause": outcome.amd.cause if outcome.amd else None,
        "decided_at_s": outcome.amd.decided_at_s if outcome.amd else None,
        "acted_after_s": outcome.acted_after_s,
        "correct": effective == sidecar["expect"]["amd"],
        "barge_in_s": outcome.barge_in_s,
        "beep_expected": truth,
        "beeps": [{"t": b.t, "freq_hz": b.freq_hz, "duration_ms": b.duration_ms} for b in outcome.beeps],
        "beep_found": bool(matched) if truth else None,
        "beep_end_error_ms": round((matched[0].t - truth[1]) * 1000) if matched else None,
        "false_beeps": len(outcome.beeps) - len(matched),
        "prompt_started_s": outcome.prompt_started_s,
        "prompt_after_beep_ms": None,
        "transcripts": outcome.transcripts,
    }
    if truth and outcome.prompt_started_s is not None:
        row["prompt_after_beep_ms"] = round((outcome.prompt_started_s - truth[1]) * 1000)
    return row


def amd_report(directory: Path, settings: Settings, replay: ReplayFn = replay_pipeline,
               mode: str = "pipeline", notsure_as: str = "human") -> dict[str, Any]:
    """Replay every NAME.wav with a sidecar in ``directory`` and summarise; ``notsure`` counts as ``notsure_as``."""
    wavs = fixture_wavs(directory)
    outcomes = [(w.stem, load_sidecar(w), replay(w, settings)) for w in wavs]
    rows = [score_fixture(name, sidecar, outcome, notsure_as) for name, sidecar, outcome in outcomes]
    frames = sum(o.frames for _, _, o in outcomes)
    confusion = {e: {r: 0 for r in (*RESULTS, "none")} for e in ("human", "machine")}
    for row in rows:
        confusion[row["expected"]][row["result"] or "none"] += 1
    human_times = [r["decided_at_s"] for r in rows if r["expected"] == "human" and r["decided_at_s"] is not None]
    with_beep = [r for r in rows if r["beep_expected"]]
    prompt_offsets = [r["prompt_after_beep_ms"] for r in rows if r["prompt_after_beep_ms"] is not None]
    acted = [r["acted_after_s"] for r in rows if r["acted_after_s"] is not None]
    return {
        "mode": mode,
        "notsure_as": notsure_as,
        "fixtures": rows,
        "confusion": confusion,
        "accuracy": round(sum(r["correct"] for r in rows) / len(rows), 3),
        "human_decision_max_s": max(human_times) if human_times else None,
        "decision_s": {"max": max((r["decided_at_s"] or 0.0) for r in rows),
                       "mean": round(float(np.mean([r["decided_at_s"] or 0.0 for r in rows])), 3)},
        "beep": {"expected": len(with_beep), "found": sum(bool(r["beep_found"]) for r in with_beep),
                 "false": sum(r["false_beeps"] for r in rows),
                 "max_end_error_ms": max((abs(r["beep_end_error_ms"]) for r in with_beep
                                          if r["beep_end_error_ms"] is not None), default=None)},
        "cpu_us_per_frame": ({stage: round(1e6 * sum(o.cpu_s[stage] for _, _, o in outcomes) / frames, 1)
                              for stage in ("amd", "beep")} if frames else None),
        "prompt_after_beep_ms": ({"min": min(prompt_offsets), "max": max(prompt_offsets)} if prompt_offsets
                                 else "not measured: needs the robot (--via replay)"),
        # with STT on, a verdict waits (amd.hint_wait_ms at most) for the transcripts of the speech before it
        "acted_after_s": ({"max": max(acted), "mean": round(float(np.mean(acted)), 3)} if acted
                          else "not measured: needs the robot (--via replay)"),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as a table for people."""
    lines = [f"mode: {report['mode']} (notsure counted as {report['notsure_as']})", "",
             f"{'fixture':28} {'expect':8} {'result':8} {'cause':15} {'at_s':>6} {'acts':>5} {'barge':>6}  "
             f"{'beep':>13} {'found_t':>8} {'err_ms':>6} {'vm_prompt':>9}"]
    for r in report["fixtures"]:
        truth = "-" if not r["beep_expected"] else f"{r['beep_expected'][0]:.2f}-{r['beep_expected'][1]:.2f}"
        found = ",".join(f"{b['t']:.2f}" for b in r["beeps"]) or "-"
        at = "-" if r["decided_at_s"] is None else f"{r['decided_at_s']:.2f}"
        acts = "-" if r["acted_after_s"] is None else f"+{r['acted_after_s']:.2f}"
        barge = "-" if r["barge_in_s"] is None else f"{r['barge_in_s']:.2f}"
        err = "-" if r["beep_end_error_ms"] is None else str(r["beep_end_error_ms"])
        prompt = "-" if r["prompt_started_s"] is None else f"@{r['prompt_started_s']:.2f}"
        prompt = prompt if r["prompt_after_beep_ms"] is None else f"{r['prompt_after_beep_ms']:+d}ms"
        mark = "" if r["correct"] else "  WRONG"
        finals = [t["text"] for t in r["transcripts"] if t["final"]]
        mark += f"  heard: {' | '.join(finals)[:40]!r}" if finals else ""
        lines.append(f"{r['fixture']:28} {r['expected']:8} {r['result'] or 'none':8} {r['cause'] or '-':15} "
                     f"{at:>6} {acts:>5} {barge:>6}  {truth:>13} {found:>8} {err:>6} {prompt:>9}{mark}")
    lines += ["", "confusion (rows: expected, columns: decided)",
              f"{'':10}" + "".join(f"{c:>9}" for c in (*RESULTS, "none"))]
    for expected, cols in report["confusion"].items():
        lines.append(f"{expected:10}" + "".join(f"{n:>9}" for n in cols.values()))
    beep = report["beep"]
    lines += ["", f"accuracy: {report['accuracy']:.3f}   human decided by: {report['human_decision_max_s']} s",
              f"beeps: {beep['found']}/{beep['expected']} found, {beep['false']} false, "
              f"max end error {beep['max_end_error_ms']} ms",
              f"voicemail prompt after beep end (ms; vm_prompt: +ms after the beep, or @call time): "
              f"{report['prompt_after_beep_ms']}",
              f"robot acted after the verdict (s; acts: per fixture): {report['acted_after_s']}",
              f"cpu per 20 ms frame (µs): {report['cpu_us_per_frame']}"]
    return "\n".join(lines)
