#!/usr/bin/env python3
"""Run the same calls through the robot's CLI against simswitch and a real FreeSWITCH; print the comparison as JSON.

    scripts/compare_switches.py [--real-password PW] [--real-esl-port 8021] [--prefix P]
                                [--audio-url ws://127.0.0.1:8080] [--scenario long_reply ...] [--table]

The real switch must be running with the project's configuration (scripts/install_freeswitch.sh, then
scripts/freeswitch_ctl.sh start): its callees are the extensions of freeswitch_conf/dialplan/
callbot_test.xml, reached as loopback/<extension>/callbot_test. simswitch is started here
(`callbot simswitch --esl-port P --password X --fixtures DIR`) with fixture/<wav> callees playing the
same WAVs (copied from the repository as the install script copies them into <prefix>/sounds/callbot/).
An audio server is started too unless --audio-url names one. Every call is
`callbot call DEST --json --no-db`, one at a time (two cores).

For each scenario the report has, on both switches: the robot's decisions (exit status, disposition,
AMD, barge-in yes/no, prompts and how they ended, replies/intents, who hung up and why); the ordered
sequence of event types per source of the report's `events` (switch, audio, robot), normalised as
NORMALISATION says; the differences between the two sequences, each with the id of the entry of
simswitch/CONFORMANCE.md that explains it (`unlisted` when none does); and the largest timing
difference between matching events (call seconds from the answer on each switch).
Password: --real-password, else $CALLBOT_ESL_PASSWORD, else <prefix>/conf/callbot_vars.xml.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_CONTEXT = "callbot_test"
# where the install script finds the callees' WAVs (scripts/install_freeswitch.sh find_fixture)
FIXTURE_DIRS = ("tests/fixtures/calls", "tests/fixtures/amd", "callbot/demo_calls")
# variables of the switch tooling that `callbot` would refuse (they name no settings section)
TOOLING_VARS = ("CALLBOT_FREESWITCH_PREFIX", "CALLBOT_FS_CACHE", "CALLBOT_FS_SOURCES", "CALLBOT_SOFTPHONE_PASSWORD",
                "CALLBOT_FS_START_TIMEOUT")


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    real: str  # dial string on the real switch
    sim: str  # dial string on simswitch
    wav: str | None = None  # the callee's voice on both
    settings: dict[str, str] = field(default_factory=dict)


SCENARIOS = (
    Scenario("long_reply", "4.2 s of speech over the greeting: barge-in, then 'call me back' -> callback",
             f"loopback/long_reply/{TEST_CONTEXT}", "fixture/long_reply?answer_delay_ms=0", "long_reply"),
    Scenario("short_reply", "'yes' (0.42 s) over the greeting: no barge-in, the greeting plays to its end",
             f"loopback/short_reply/{TEST_CONTEXT}", "fixture/short_yes?answer_delay_ms=0", "short_yes"),
    Scenario("voicemail", "a voicemail greeting, then a 1000 Hz beep: AMD machine, the message after the beep",
             f"loopback/voicemail/{TEST_CONTEXT}", "fixture/vm_en_us_beep1000?answer_delay_ms=0", "vm_en_us_beep1000"),
    Scenario("busy", "the callee is busy: the originate fails with USER_BUSY",
             f"loopback/busy/{TEST_CONTEXT}", "fixture/long_reply?reject=USER_BUSY&answer_delay_ms=0"),
    Scenario("no_answer", "rings and never answers: NO_ANSWER at originate_timeout=5 (robot.dial_timeout_s)",
             f"loopback/no_answer/{TEST_CONTEXT}", "fixture/long_reply?answer=false",
             settings={"CALLBOT_ROBOT_DIAL_TIMEOUT_S": "5"}),
    Scenario("rejected", "the callee rejects the call: the originate fails with CALL_REJECTED",
             f"loopback/rejected/{TEST_CONTEXT}", "fixture/long_reply?reject=CALL_REJECTED&answer_delay_ms=0"),
)

# Rows left out of the sequences before they are compared, and why. (The robot's record holds only
# the events it subscribes to, robot/esl/commands.py CALL_EVENTS, so the real switch's CHANNEL_STATE,
# CHANNEL_CALLSTATE, CODEC, CALL_UPDATE, HEARTBEAT ... never reach it.)
DROP_BOTH = {
    ("audio", "partial"): "interim transcripts: how many come depends on when each Whisper decode finishes on a "
                          "busy CPU, not on the switch (the final transcript and the reply are kept)",
    ("robot", "answer_offset"): "the robot's note that MEDIA_BUG_START came a frame or more later than its "
                                "stream URL said (it then sends the audio server an answered marker): how "
                                "late the switch ran the start command, not what it did",
}
DROP_SIM: dict[tuple[str, str], str] = {}
DROP_REAL: dict[tuple[str, str], str] = {}
# Rows compared by count, not position: the originate's BACKGROUND_JOB comes from another switch
# thread than the events and api replies around it, so where it lands among them is a race; and
# CHANNEL_CREATE and CHANNEL_ANSWER of an at-once answer come in one burst, in which the robot's
# urgent-first queue may take them in either order (see cmp-failed-originate-create).
UNORDERED = {("robot", "originate_result"), ("switch", "CHANNEL_CREATE"), ("audio", "amd")}
# ("audio", "amd"): with STT on, a verdict waits up to amd.hint_wait_ms for the transcripts of the
# speech before it, so its place among the other audio rows follows decode timing, not the switch.
# How the sources are ordered: audio rows by their own (stream) time, since the audio server sends a
# final transcript when its decode ends, after rows of later stream time; the others as recorded.
ORDER_BY_TIME = {"audio"}

# Differences that remain, by the id of their entry in simswitch/CONFORMANCE.md ("simswitch vs the
# real switch, same robot"): (source, kind, event) where kind is sim_only, real_only or moved.
KNOWN: dict[tuple[str, str, str], str] = {
    ("switch", "real_only", "CHANNEL_EXECUTE_COMPLETE"): "cmp-execute-on-answer",
    ("switch", "sim_only", "CHANNEL_PROGRESS"): "cmp-progress",
    ("switch", "sim_only", "CHANNEL_CREATE"): "cmp-failed-originate-create",
    **{("switch", "moved", event): "cmp-bug-before-park"
       for event in ("CHANNEL_PARK", "MEDIA_BUG_START", "mod_audio_stream::connect")},
}
# The audio server's segmentation of the callee's voice (and the robot's answer to a barge-in that
# comes while it cannot act on one): the real switch's loopback callee reaches the stream through an
# L16/8000 channel, simswitch's at the stream's rate (cmp-callee-audio-band).
SEGMENT_ROWS = {("audio", "speech_started"), ("audio", "speech_stopped"), ("audio", "speech_short"),
                ("audio", "barge_in"), ("audio", "final"), ("robot", "barge_in_ignored")}
KNOWN.update({(source, kind, event): "cmp-callee-audio-band" for source, event in SEGMENT_ROWS
              for kind in ("sim_only", "real_only", "moved")})
# ... and whether the AMD verdict, held for a transcript of the greeting, reaches the robot before its broken
# prompt's PLAYBACK_STOP (straight to wait_beep) or after it (listening first): a segment's final releases it.
KNOWN.update({("robot", kind, "state(listening)"): "cmp-callee-audio-band" for kind in ("sim_only", "real_only")})



# ---- running the robot ----------------------------------------------------------------------------

def callbot_exe() -> list[str]:
    beside = Path(sys.executable).parent / "callbot"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("callbot")
    return [found] if found else [sys.executable, "-m", "callbot"]


def environ(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TOOLING_VARS}
    env.update(settings)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def esl_answers(port: int, password: str) -> str | None:
    """None when an ESL server on ``port`` takes ``password``, else what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            greeting = s.recv(200)
            if b"auth/request" not in greeting:
                return f"no auth/request greeting on 127.0.0.1:{port}"
            s.sendall(f"auth {password}\n\n".encode())
            reply = b""
            while b"\n\n" not in reply:
                chunk = s.recv(200)
                if not chunk:
                    break
                reply += chunk
            return None if b"+OK" in reply else f"ESL 127.0.0.1:{port} refused the password: {reply!r}"
    except OSError as exc:
        return f"no ESL on 127.0.0.1:{port}: {exc}"


def healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_up(proc: subprocess.Popen, check, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if check():
            return
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not come up in {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def find_fixture(name: str) -> Path:
    for d in FIXTURE_DIRS:
        if (REPO / d / name).exists():
            return REPO / d / name
    raise FileNotFoundError(f"fixture {name} is in none of {FIXTURE_DIRS}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def call(destination: str, esl_port: int, password: str, audio_url: str, workdir: Path, timeout: float,
         **settings: str) -> tuple[int, dict, str]:
    env = environ(CALLBOT_ESL_HOST="127.0.0.1", CALLBOT_ESL_PORT=str(esl_port), CALLBOT_ESL_PASSWORD=password,
                  CALLBOT_AUDIO_SERVER_PUBLIC_URL=audio_url, **settings)
    proc = subprocess.run([*callbot_exe(), "call", destination, "--json", "--no-db"], capture_output=True, text=True,
                          env=env, cwd=workdir, timeout=timeout)
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr


# ---- what is compared ------------------------------------------------------------------------------

def decisions(returncode: int, report: dict) -> dict:
    """What the robot decided: the same on both switches, or the emulator misleads it."""
    hangup = report.get("hangup") or {}
    return {
        "exit": returncode,
        "disposition": report.get("disposition"),
        "amd": report.get("amd"),
        "amd_action": report.get("amd_action"),
        "barge_in": bool(report.get("barge_ins")),
        "prompts": [f"{p.get('file')}:{p.get('status')}" for p in report.get("prompts") or []],
        "intents": [f"{i.get('step')}:{i.get('outcome')}" for i in report.get("intents") or []],
        "hangup_by": hangup.get("by"),
        "hangup_cause": hangup.get("cause"),
    }


def token(row: dict) -> str:
    """A row as compared: its type, plus what tells two rows of that type apart."""
    kind = row.get("type", "")
    if kind in ("PLAYBACK_START", "PLAYBACK_STOP"):
        return f"{kind}({row.get('file')}{',' + row['status'] if row.get('status') else ''})"
    if kind in ("CHANNEL_HANGUP", "CHANNEL_GONE"):
        return f"{kind}({row.get('cause')})"
    if kind == "state":
        return f"state({row.get('state')})"
    if kind == "flag":
        return f"flag({row.get('flag')})"
    if kind == "amd":
        return f"amd({row.get('result')})"
    if kind == "amd_result":
        return f"amd_result({row.get('result')}->{row.get('action')})"
    if kind == "reply":
        return f"reply({row.get('outcome')})"
    if kind == "broadcast":
        return f"broadcast({row.get('file')})"
    return kind


def sequences(report: dict, side: str) -> tuple[dict[str, list[tuple[str, float | None]]], dict[str, int]]:
    """Per source, the ordered (token, t) of the report's events after normalisation; and what was dropped."""
    drop = {**DROP_BOTH, **(DROP_SIM if side == "sim" else DROP_REAL)}
    out: dict[str, list[tuple[str, float | None]]] = {"switch": [], "audio": [], "robot": []}
    dropped: dict[str, int] = {}
    for row in report.get("events") or []:
        source = row.get("source", "")
        if (source, row.get("type")) in drop:
            key = f"{source}:{row.get('type')}"
            dropped[key] = dropped.get(key, 0) + 1
            continue
        if (source, row.get("type")) in UNORDERED:
            source = f"{source}:unordered"
        out.setdefault(source, []).append((token(row), row.get("t")))
    for source in ORDER_BY_TIME:
        rows = out.get(source, [])
        order = sorted(range(len(rows)), key=lambda i: (rows[i][1] if rows[i][1] is not None else float("inf"), i))
        out[source] = [rows[i] for i in order]
    return out, dropped


def compare_sequences(sim: dict, real: dict) -> tuple[list[dict], dict | None, dict[str, dict]]:
    """The differences, one per event (with the id of its CONFORMANCE.md entry, or ``unlisted``), and the
    largest |real t - sim t| over the rows that match."""
    differences, largest, per_source = [], None, {}
    for source in sorted(set(sim) | set(real)):
        a, b = sim.get(source, []), real.get(source, [])
        unordered = source.endswith(":unordered")
        if unordered:
            a, b = sorted(a, key=lambda x: x[0]), sorted(b, key=lambda x: x[0])
        ta, tb = [x[0] for x in a], [x[0] for x in b]
        matcher = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
        only: dict[str, list[tuple[str, str | None]]] = {"sim_only": [], "real_only": []}
        source_largest = None
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for (tok, t_sim), (_, t_real) in zip(a[i1:i2], b[j1:j2]):
                    if t_sim is None or t_real is None or unordered:
                        continue
                    entry = {"source": source, "event": tok, "sim_t": t_sim, "real_t": t_real,
                             "diff_s": round(t_real - t_sim, 3)}
                    if source_largest is None or abs(entry["diff_s"]) > abs(source_largest["diff_s"]):
                        source_largest = entry
                continue
            only["sim_only"] += [(tok, ta[i1 - 1] if i1 else None) for tok in ta[i1:i2]]
            only["real_only"] += [(tok, tb[j1 - 1] if j1 else None) for tok in tb[j1:j2]]
        moved = {tok for tok, _ in only["sim_only"]} & {tok for tok, _ in only["real_only"]}
        for kind in ("sim_only", "real_only"):
            for tok, after in only[kind]:
                if tok in moved and kind == "real_only":
                    continue  # reported once, as moved
                k = "moved" if tok in moved else kind
                differences.append({"id": KNOWN.get((source.split(":")[0], k, tok), "unlisted"), "source": source,
                                    "kind": k, "event": tok, "after": after,
                                    "after_is": "sim" if kind == "sim_only" else "real"})
        if source_largest is not None:
            per_source[source] = source_largest
            if largest is None or abs(source_largest["diff_s"]) > abs(largest["diff_s"]):
                largest = source_largest
    return differences, largest, per_source


def run_scenario(sc: Scenario, sim_port: int, sim_password: str, real_port: int, real_password: str,
                 audio_url: str, workdir: Path, timeout: float) -> dict:
    sides, timed = {}, {}
    for side, dest, port, password in (("sim", sc.sim, sim_port, sim_password),
                                       ("real", sc.real, real_port, real_password)):
        started = time.monotonic()
        rc, report, stderr = call(dest, port, password, audio_url, workdir, timeout, **sc.settings)
        timed[side], dropped = sequences(report, side)
        sides[side] = {
            "destination": dest, "wall_s": round(time.monotonic() - started, 1), "decisions": decisions(rc, report),
            "transcripts": [t.get("text") for t in report.get("transcripts") or []],
            "flags": report.get("flags"), "dropped": dropped,
            "sequence": {src: [tok for tok, _ in rows] for src, rows in timed[side].items()},
        }
        if not report:
            sides[side]["stderr"] = stderr[-2000:]
    differences, largest, per_source = compare_sequences(timed["sim"], timed["real"])
    d_sim, d_real = sides["sim"]["decisions"], sides["real"]["decisions"]
    return {
        "scenario": sc.name, "what": sc.what, "sim": sides["sim"], "real": sides["real"],
        "decisions_equal": d_sim == d_real,
        "decision_differences": {k: {"sim": d_sim[k], "real": d_real[k]} for k in d_sim if d_sim[k] != d_real.get(k)},
        "sequence_differences": differences,
        "largest_timing_difference": largest,
        "largest_timing_difference_by_source": per_source,
    }


# ---- the run ---------------------------------------------------------------------------------------

def prefix_password(prefix: Path | None) -> str | None:
    vars_xml = prefix / "conf" / "callbot_vars.xml" if prefix else None
    if vars_xml is None or not vars_xml.exists():
        return None
    for line in vars_xml.read_text().splitlines():
        if 'data="callbot_esl_password=' in line:
            return line.split('data="callbot_esl_password=', 1)[1].split('"', 1)[0]
    return None


def find_prefix(given: str | None) -> Path | None:
    if given:
        return Path(given)
    if os.environ.get("CALLBOT_FREESWITCH_PREFIX"):
        return Path(os.environ["CALLBOT_FREESWITCH_PREFIX"])
    proc = subprocess.run([str(REPO / "scripts" / "install_freeswitch.sh"), "--print-prefix"], capture_output=True,
                          text=True)
    return Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None


def table(report: dict) -> str:
    """The report as a Markdown table (one row per scenario)."""
    lines = ["| scenario | decisions (simswitch) | decisions (real) | equal | largest timing difference | "
             "sequence differences |", "|---|---|---|---|---|---|"]

    def brief(d: dict) -> str:
        parts = [f"exit {d['exit']}", str(d["disposition"]),
                 f"amd {d['amd']}" + (f"->{d['amd_action']}" if d["amd"] else ""),
                 "barge-in" if d["barge_in"] else "no barge-in"]
        if d["prompts"]:
            parts.append(" ".join(d["prompts"]))
        if d["intents"]:
            parts.append(" ".join(d["intents"]))
        parts.append(f"hangup {d['hangup_by']}/{d['hangup_cause']}")
        return ", ".join(parts)

    for s in report["scenarios"]:
        lt, by = s["largest_timing_difference"], s["largest_timing_difference_by_source"]
        timing = (f"{lt['diff_s']:+.3f} s ({lt['source']} {lt['event']}); "
                  + ", ".join(f"{src} {by[src]['diff_s']:+.3f}" for src in ("switch", "audio", "robot") if src in by)
                  if lt else "n/a (no call time: never answered)")
        diffs = ", ".join(sorted({d["id"] for d in s["sequence_differences"]})) or "none"
        lines.append(f"| {s['scenario']} | {brief(s['sim']['decisions'])} | {brief(s['real']['decisions'])} | "
                     f"{'yes' if s['decisions_equal'] else 'NO'} | {timing} | {diffs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--real-esl-port", type=int, default=int(os.environ.get("CALLBOT_ESL_PORT", "8021")))
    parser.add_argument("--real-password", default=None)
    parser.add_argument("--prefix", default=None, help="the real switch's prefix (for its password and WAVs)")
    parser.add_argument("--audio-url", default=None, help="a running audio server (default: start one)")
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS],
                        help="run only this scenario (repeatable)")
    parser.add_argument("--call-timeout", type=float, default=180.0)
    parser.add_argument("--table", action="store_true", help="print the Markdown table on stderr too")
    args = parser.parse_args(argv)

    prefix = find_prefix(args.prefix)
    password = args.real_password or os.environ.get("CALLBOT_ESL_PASSWORD") or prefix_password(prefix)
    if not password:
        parser.error("no ESL password for the real switch: --real-password, $CALLBOT_ESL_PASSWORD or --prefix")
    problem = esl_answers(args.real_esl_port, password)
    if problem:
        print(f"compare_switches: the real switch: {problem} (start it: scripts/freeswitch_ctl.sh start)",
              file=sys.stderr)
        return 2

    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="compare-switches-") as tmp:
        work = Path(tmp)
        fixtures = work / "fixtures"
        fixtures.mkdir()
        wavs = {}
        for name in sorted({s.wav for s in SCENARIOS if s.wav}):
            src = find_fixture(f"{name}.wav")
            shutil.copy(src, fixtures / src.name)
            if src.with_suffix(".json").exists():
                shutil.copy(src.with_suffix(".json"), fixtures / f"{name}.json")
            installed = prefix / "sounds" / "callbot" / src.name if prefix else None
            wavs[name] = {"repository": str(src.relative_to(REPO)),
                          "same_as_real_switch": (sha(installed) == sha(src)) if installed and installed.exists()
                          else None}
        try:
            audio_url = args.audio_url
            if audio_url is None:
                port = free_port()
                log = work / "audio-server.log"
                procs.append(subprocess.Popen([*callbot_exe(), "audio-server", "--host", "127.0.0.1", "--port",
                                               str(port)], stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=work,
                                              env=environ()))
                wait_up(procs[-1], lambda: healthy(port), "callbot audio-server", log)
                audio_url = f"ws://127.0.0.1:{port}"
            sim_port, sim_password = free_port(), "sim-" + secrets.token_hex(8)
            log = work / "simswitch.log"
            procs.append(subprocess.Popen([*callbot_exe(), "simswitch", "--esl-port", str(sim_port), "--password",
                                           sim_password, "--fixtures", str(fixtures)], stdout=log.open("wb"),
                                          stderr=subprocess.STDOUT, cwd=work, env=environ()))
            wait_up(procs[-1], lambda: esl_answers(sim_port, sim_password) is None, "callbot simswitch", log)
            results = [run_scenario(sc, sim_port, sim_password, args.real_esl_port, password, audio_url, work,
                                    args.call_timeout) for sc in chosen]
        finally:
            for proc in reversed(procs):
                stop(proc)

    report = {
        "switches": {"sim": "callbot simswitch --speed 1, fixture/<wav> callees",
                     "real": f"FreeSWITCH on 127.0.0.1:{args.real_esl_port}" + (f" ({prefix})" if prefix else "")
                             + f", loopback/<extension>/{TEST_CONTEXT} callees"},
        "callee_wavs": wavs,
        "normalisation": {
            "sequences": "per source (switch, audio, robot) of the report's events; a row is its type, plus the file "
                         "and status of PLAYBACK_*, the cause of CHANNEL_HANGUP, the state, flag, AMD result and reply "
                         "outcome; times are call seconds from the answer on each switch",
            "order": {"audio": "by the row's time (stream time + stream start), as the audio server sends a final "
                               "transcript when its decode ends", "switch": "as recorded", "robot": "as recorded"},
            "compared_by_count": sorted(f"{s}:{t}" for s, t in UNORDERED),
            "dropped_from_both": {f"{s}:{t}": why for (s, t), why in DROP_BOTH.items()},
            "dropped_from_simswitch": {f"{s}:{t}": why for (s, t), why in DROP_SIM.items()},
            "dropped_from_real": {f"{s}:{t}": why for (s, t), why in DROP_REAL.items()},
            "never_recorded": "CHANNEL_STATE, CHANNEL_CALLSTATE, CODEC, CALL_UPDATE, HEARTBEAT and the other events "
                              "the robot does not subscribe to (robot/esl/commands.py CALL_EVENTS)",
        },
        "scenarios": results,
        "all_decisions_equal": all(r["decisions_equal"] for r in results),
        "difference_ids": sorted({d["id"] for r in results for d in r["sequence_differences"]}),
    }
    report["table"] = table(report)
    print(json.dumps(report, indent=1))
    if args.table:
        print(report["table"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
