"""The CDR variables FreeSWITCH sets at hangup (``switch_channel_set_timestamps``), in its order."""

from __future__ import annotations

import time


def _stamp(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us // 1_000_000))


def cdr_variables(created_us: int, progress_us: int, answered_us: int, end_us: int,
                  last_app: str, last_arg: str) -> dict[str, str]:
    """Stamps, epochs and durations of a call; 0 for what never happened."""
    out: dict[str, str] = {"digits_dialed": "none", "start_stamp": _stamp(created_us),
                           "profile_start_stamp": _stamp(created_us)}
    if answered_us:
        out["answer_stamp"] = _stamp(answered_us)
    if progress_us:
        out["progress_stamp"] = _stamp(progress_us)
    out["end_stamp"] = _stamp(end_us)
    for name, us in (("start", created_us), ("profile_start", created_us), ("answer", answered_us),
                     ("bridge", 0), ("last_hold", 0)):
        out[f"{name}_epoch"], out[f"{name}_uepoch"] = str(us // 1_000_000), str(us)
    out.update(hold_accum_seconds="0", hold_accum_usec="0", hold_accum_ms="0")
    for name, us in (("resurrect", 0), ("progress", progress_us), ("progress_media", 0), ("end", end_us)):
        out[f"{name}_epoch"], out[f"{name}_uepoch"] = str(us // 1_000_000), str(us)
    if last_app:
        out.update(last_app=last_app, last_arg=last_arg)
    out["caller_id"] = '"Outbound Call" <0000000000>'
    total = end_us - created_us
    bill = end_us - answered_us if answered_us else 0
    progress = progress_us - created_us if progress_us else 0
    answer = answered_us - created_us if answered_us else 0
    durations = {"duration": total, "billsec": bill, "progresssec": progress, "answersec": answer,
                 "waitsec": answer, "progress_mediasec": 0, "flow_billsec": total}
    for unit, div in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
        for name, us in durations.items():
            key = name if unit == "sec" else name.removesuffix("sec") + unit
            if name == "duration":
                key = {"sec": "duration", "msec": "mduration", "usec": "uduration"}[unit]
            out[key] = str(us // div)
    return out
