"""A call's report (DESIGN section 5 `callbot replay --json` keys) and its readable timeline.

All times are call seconds from the answer. ``break_at_switch_s`` is when the switch received the
``uuid_break``: simswitch's ground truth in a replay, else the robot's own send time.
"""

from __future__ import annotations

from typing import Any, Sequence

from callbot.robot.call.record import CallRecord


def _prompts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["source"] != "switch":
            continue
        if r["type"] == "PLAYBACK_START":
            out.append({"file": r["file"], "started_s": r["t"], "stopped_s": None, "status": None, "played_ms": None})
        elif r["type"] == "PLAYBACK_STOP":
            row = next((p for p in reversed(out) if p["file"] == r["file"] and p["status"] is None), None)
            if row is not None:
                row.update(stopped_s=r["t"], status=r["status"], played_ms=r["played_ms"])
    return out


def _offset(row: dict[str, Any]) -> float | None:
    """Call time of an audio row's stream sample 0 (each restarted stream has its own)."""
    return None if row["t"] is None or row.get("stream_t") is None else row["t"] - row["stream_t"]


def _call_time(row: dict[str, Any], stream_s: float) -> float | None:
    offset = _offset(row)
    return None if offset is None else round(stream_s + offset, 3)


def _barge_ins(rows: list[dict[str, Any]], truth_breaks: Sequence[float | None] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    acted = 0  # breaks the robot sent so far (barge-ins and AMD's), in the order the switch got them
    for i, r in enumerate(rows):
        if r["source"] == "robot" and r["type"] == "amd_break":
            acted += 1
        if r["source"] != "audio" or r["type"] != "barge_in":
            continue
        nxt = rows[i + 1] if i + 1 < len(rows) else {}
        brk = None
        if nxt.get("type") == "uuid_break":
            brk = nxt["t"]
            if truth_breaks is not None:
                brk = truth_breaks[acted] if acted < len(truth_breaks) else None
            acted += 1
        out.append({"speech_onset_s": _call_time(r, r["onset_s"]), "detected_s": r["t"], "break_at_switch_s": brk})
    return out


def _transcripts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"start_s": _call_time(r, r["start_s"]), "end_s": _call_time(r, r["end_s"]), "text": r["text"]}
            for r in rows if r["source"] == "audio" and r["type"] == "final"]


def _amd(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The detector's verdict (cause, decision in call time) and what the robot did with it."""
    verdict = next((r for r in rows if r["source"] == "audio" and r["type"] == "amd"), None)
    acted = next((r for r in rows if r["source"] == "robot" and r["type"] in ("amd_result", "amd_hook")), None)
    decided = None if verdict is None else _call_time(verdict, verdict["decided_at_s"])
    return {"amd_cause": verdict and verdict["cause"], "amd_decided_at_s": decided,
            "amd_action": acted and acted.get("action", "human")}


def build_report(record: CallRecord, fixture: str | None = None, stream_start_s: float | None = None,
                 truth_breaks: Sequence[float | None] | None = None) -> dict[str, Any]:
    """The DESIGN section 5 document, plus ``amd_cause``, ``amd_decided_at_s`` (call time), ``amd_action``
    (human | hangup | leave_message | none), ``flags``, ``intents`` and ``hangup`` (what the robot concluded)."""
    timeline = record.timeline
    if stream_start_s is not None:
        timeline.stream_offset_s = stream_start_s
    rows = timeline.rows()
    return {
        "fixture": fixture,
        "call_uuid": record.call_uuid,
        "disposition": record.disposition,
        "amd": record.amd,
        "prompts": _prompts(rows),
        "barge_ins": _barge_ins(rows, truth_breaks),
        "transcripts": _transcripts(rows),
        "events": rows,
        **_amd(rows),
        "flags": list(record.flags),
        "intents": list(record.replies),
        "hangup": {"by": record.hangup_by, "cause": record.hangup_cause},
    }


def _fmt_t(t: float | None) -> str:
    return "    ?   " if t is None else f"{t:8.3f}"


# Row type -> how a reader should see it (str.format over the row's fields).
_LINES: dict[str, str] = {
    "PLAYBACK_START": "robot plays   {file}",
    "speech_started": "caller starts speaking",
    "speech_short": "caller stops ({duration_ms} ms: too short to barge in)",
    "speech_stopped": "caller stops ({duration_ms} ms)",
    "barge_in": "BARGE-IN detected (speech since {onset_s:.3f} s of stream, {duration_ms} ms)",
    "uuid_break": "robot sends uuid_break",
    "break_reply": "switch answers uuid_break: {reply}",
    "final": 'caller said: "{text}"',
    "reply": "reply to {step}: {outcome}",
    "state": "state {source_state} -> {state} ({cause})",
    "flag": "FLAG {flag}",
    "CHANNEL_ANSWER": "answered",
    "CHANNEL_HANGUP": "hangup {cause}",
    "CHANNEL_GONE": "channel gone during an ESL outage",
    "amd": "amd {result} ({cause}, decided at {decided_at_s} s of stream)",
    "amd_result": "robot acts on amd {result} ({cause}): {action}",
    "amd_break": "robot stops {step} for the voicemail",
    "prompt_paused": "robot pauses {step} (uuid_fileman pause)",
    "prompt_resumed": "robot resumes {step} ({why})",
    "no_beep": "no beep after the greeting: {action}",
    "beep": "beep {freq_hz} Hz",
}


def describe(row: dict[str, Any]) -> str | None:
    """One readable line for a timeline row, or None for rows a reader does not need."""
    kind = row["type"]
    if kind == "PLAYBACK_STOP":
        how = "broke off" if row.get("status") == "break" else "finished"
        text = f"robot {how} {row['file']} after {row.get('played_ms')} ms"
    elif kind in _LINES:
        text = _LINES[kind].format_map({k: v for k, v in row.items() if k != "type"})
        if kind == "flag" and row.get("note"):
            text += f": {row['note']}"
    else:
        return None
    return f"{_fmt_t(row['t'])}  {text}"


def in_call_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Timeline rows by call time, for a reader. They are kept in arrival order, but an audio row is dated by its
    audio: a final by the end of the speech it transcribes, which it reaches after its decode, so it arrives
    after robot rows dated later. Equal times keep their arrival order; a row with no time stays after the row
    before it."""
    keyed: list[tuple[float, int]] = []
    last = float("-inf")
    for i, row in enumerate(rows):
        last = last if row["t"] is None else row["t"]
        keyed.append((last, i))
    return [rows[i] for _, i in sorted(keyed)]


def render_text(report: dict[str, Any]) -> str:
    """The readable timeline in call order (what the caller said when, what the robot played, where it broke off)
    and the result."""
    lines = [f"call {report['call_uuid']}" + (f"  fixture {report['fixture']}" if report.get("fixture") else "")]
    lines += [line for row in in_call_order(report["events"]) if (line := describe(row)) is not None]
    lines.append("")
    lines.append(f"disposition: {report['disposition']}   amd: {report['amd']} ({report.get('amd_cause')}, "
                 f"{report.get('amd_decided_at_s')} s, {report.get('amd_action')})   "
                 f"hangup: {report['hangup']['by']} ({report['hangup']['cause']})")
    for b in report["barge_ins"]:
        lines.append(f"barge-in: onset {b['speech_onset_s']} s, detected {b['detected_s']} s, "
                     f"break at switch {b['break_at_switch_s']} s")
    for i in report["intents"]:
        lines.append(f"reply to {i['step']}: {i['outcome']} \"{i['text']}\"")
    if report["flags"]:
        lines.append("flags: " + ", ".join(report["flags"]))
    return "\n".join(lines)
