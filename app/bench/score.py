"""Score replayed calls against their sidecars' ground truth (sans-I/O: reports and truths in, numbers out)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence, TypeVar

from callbot.events import AudioEvent, BargeIn, EventParseError, Final, parse_event
from callbot.robot.scenario.loader import acted_verdict

E = TypeVar("E", bound=AudioEvent)


def barge_in_onset(speech: Sequence[Sequence[float]], threshold_s: float, bridge_s: float) -> float | None:
    """Call time at which the caller's speech that should trigger a barge-in began, or None if none should.

    The rule, the detector's own (DESIGN section 2, BargeInDetector): sidecar speech spans whose gap
    is at most ``bridge_s`` are one utterance (the detector bridges short pauses); the onset is the
    start of the first utterance that lasts at least ``threshold_s``. So ``pauses_2500ms`` (four
    0.47 s words, 0.2 s apart) has its onset at its first word, and ``two_short`` (two 1 s phrases
    0.6 s apart) has none.
    """
    start = end = None
    for s, e in speech:
        if start is not None and end is not None and s - end <= bridge_s + 1e-9:
            end = max(end, e)
        else:
            start, end = s, e
        if end - start + 1e-9 >= threshold_s:
            return float(start)
    return None


def barge_in_latency_ms(report: dict[str, Any], sidecar: dict[str, Any], threshold_s: float,
                        bridge_s: float) -> float | None:
    """``break_at_switch_s − (true onset + threshold)`` in ms for the call's first break that reached
    the switch; None when no break reached it or the sidecar has no speech that should barge in."""
    onset = barge_in_onset(sidecar.get("speech", []), threshold_s, bridge_s)
    breaks = [b["break_at_switch_s"] for b in report["barge_ins"] if b["break_at_switch_s"] is not None]
    if onset is None or not breaks:
        return None
    return round((breaks[0] - (onset + threshold_s)) * 1000, 1)


def relayed(truth: dict[str, Any], kind: type[E]) -> list[tuple[E, dict[str, Any]]]:
    """Each audio event of ``kind`` the switch relayed as ``mod_audio_stream::json``, with its truth entry
    (``t``: relayed as an ESL event; ``arrived_t``: its text frame reached the switch's WebSocket)."""
    out: list[tuple[E, dict[str, Any]]] = []
    for e in truth.get("entries", []):
        if e["kind"] == "stream_text" and e["subclass"] == "mod_audio_stream::json" and e["t"] is not None:
            try:
                _call, event = parse_event(e["text"])
            except EventParseError:
                continue  # not an audio event: counted by the robot as audio_text_ignored, not a final
            if isinstance(event, kind):
                out.append((event, e))
    return out


def barge_in_path_ms(truth: dict[str, Any], sidecar: dict[str, Any], threshold_s: float,
                     bridge_s: float) -> dict[str, float | None] | None:
    """Where the latency goes, each in ms after true onset + threshold, for the call's first ``barge_in``:
    ``decided`` (the detector's stream-time decision: load-free), ``arrived`` (its text frame reached
    the switch: the audio server's wall lag), ``relayed`` (the switch's ``::json``, on a media tick).
    The rest, up to ``break_at_switch_s``, is the robot's."""
    onset = barge_in_onset(sidecar.get("speech", []), threshold_s, bridge_s)
    events = relayed(truth, BargeIn)
    offset = truth.get("stream_start_s")
    if onset is None or not events or offset is None:
        return None
    event, entry = events[0]
    due = onset + threshold_s

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - due) * 1000, 1)

    return {"decided": ms(event.t + offset), "arrived": ms(entry.get("arrived_t")), "relayed": ms(entry["t"])}


def final_latencies_ms(truth: dict[str, Any], speech: Sequence[Sequence[float]]) -> list[float]:
    """Per final: call time it reached the switch − the end of the speech it transcribes.

    That end is the end of the last sidecar speech span overlapping the final's segment (stream
    times shifted by the stream's start), or, when the sidecar has no such span (noise heard as
    speech), the segment's own end.
    """
    offset = truth.get("stream_start_s")
    if offset is None:
        return []
    out = []
    for final, entry in relayed(truth, Final):
        seg_start, seg_end = final.start_s + offset, final.end_s + offset
        ends = [e for s, e in speech if s < seg_end and e > seg_start]
        out.append(round((entry["t"] - (max(ends) if ends else seg_end)) * 1000, 1))
    return out


def score_call(fixture: str, report: dict[str, Any] | None, truth: dict[str, Any] | None,
               sidecar: dict[str, Any], threshold_s: float, bridge_s: float,
               error: str | None = None, notsure_as: str = "human") -> dict[str, Any]:
    """One row per call: what was expected, what happened at the switch, and its latencies.

    ``amd_acted`` is the verdict the robot acted on: ``notsure`` counts as ``notsure_as`` (the scenario's
    ``voicemail.on_notsure``), as ``callbot amd-report`` counts it; the sidecar's ``expect.amd`` is human
    or machine, and nobody speaking (``silence``) is rightly ``notsure``."""
    expect = sidecar.get("expect", {})
    expected = bool(expect.get("barge_in"))
    row: dict[str, Any] = {"fixture": fixture, "call_uuid": None, "expected_barge_in": expected, "barge_in": None,
                           "latency_ms": None, "barge_in_path_ms": None, "final_latency_ms": [], "finals": 0,
                           "transcript": "", "disposition": None, "expected_amd": expect.get("amd"), "amd": None,
                           "amd_acted": None, "error": error}
    if report is None:
        return row
    speech = sidecar.get("speech", [])
    acted = [b for b in report["barge_ins"] if b["break_at_switch_s"] is not None]
    row.update(call_uuid=report["call_uuid"], barge_in=bool(acted), disposition=report["disposition"],
               amd=report["amd"], amd_acted=acted_verdict(report["amd"], notsure_as),
               latency_ms=barge_in_latency_ms(report, sidecar, threshold_s, bridge_s) if expected else None,
               finals=len(report["transcripts"]),
               transcript=" ".join(t["text"] for t in report["transcripts"]))
    if truth is not None:
        row["final_latency_ms"] = final_latencies_ms(truth, speech)
        if expected:
            row["barge_in_path_ms"] = barge_in_path_ms(truth, sidecar, threshold_s, bridge_s)
    return row


def percentiles(values: Iterable[float], qs: Sequence[int]) -> dict[str, float | None]:
    """Nearest-rank percentiles (``p50``, ``p95`` ...) of ``values``; None for each when there are none."""
    data = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q}"] = data[max(0, math.ceil(q / 100 * len(data)) - 1)] if data else None
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``barge_in`` block of the bench document and the per-call STT latencies, from the rows."""
    ok = [r for r in rows if r["error"] is None]
    latencies = [r["latency_ms"] for r in ok if r["latency_ms"] is not None]
    barge = {
        "expected": sum(r["expected_barge_in"] for r in ok),
        "detected": sum(r["expected_barge_in"] and r["barge_in"] for r in ok),
        "missed": sum(r["expected_barge_in"] and not r["barge_in"] for r in ok),
        "false": sum(not r["expected_barge_in"] and r["barge_in"] for r in ok),
        "latency_ms": {**percentiles(latencies, (50, 95, 99)), "max": max(latencies) if latencies else None},
    }
    finals = [x for r in ok for x in r["final_latency_ms"]]
    stt = {"finals": sum(r["finals"] for r in ok),
           "final_latency_ms": percentiles(finals, (50, 95))}
    amd_wrong = sum(r["expected_amd"] is not None and r["amd_acted"] != r["expected_amd"] for r in ok)
    return {"barge_in": barge, "stt": stt, "amd_mismatches": amd_wrong,
            "amd_notsure": sum(r["amd"] == "notsure" for r in ok)}
