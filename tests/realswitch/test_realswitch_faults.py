"""Faults in the middle of a real call, the robot driven only through `callbot call`:

- the audio server is killed (SIGKILL) while the caller speaks, then started again on the same
  port: mod_audio_stream reports the lost stream, the robot flags it and restarts the stream;
- the switch's Event Socket is restarted (`fs_cli -x 'reload mod_event_socket'`), which drops the
  robot's ESL connection: the robot reconnects and the call ends with its record.

Times come from the switch's own events (Event-Date-Timestamp), recorded on a separate ESL
connection that reconnects after the reload (realswitch_kit.EventRecorder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from realswitch_kit import (
    TEST_CONTEXT, CallResult, Event, call_events, start_audio_server, start_call, stop_process,
)

pytestmark = pytest.mark.realswitch

LISTEN_S = 6.0  # the bundled scenario's greeting listens 6 s (steps.greeting.listen_s) ...
FINAL_WAIT_S = 2.0  # ... and robot.final_wait_s after the caller stops
# The bound on silence: between the answer and the hang-up, the caller never goes longer than
# this without a prompt playing on the robot's leg (a robot stuck listening to a dead stream would).
SILENCE_BOUND_S = LISTEN_S + FINAL_WAIT_S + 1.0
KILL_AFTER_ONSET_S = 0.8  # the kill lands 0.8 s into the caller's speech, before the 1.5 s barge-in
RESTART_BACKOFF_S = 0.5  # robot.stream_restart_backoff_s (doubling: 0.5, 1, 2, 4, 8 s)


def sidecar_onset(switch, name: str) -> float:
    return json.loads((switch.prefix / "sounds" / "callbot" / f"{name}.json").read_text())["speech"][0][0]


def wait_until(epoch_s: float) -> None:
    while time.time() < epoch_s:
        time.sleep(0.005)


def a_leg(result: CallResult) -> list[Event]:
    return [e for e in call_events(result.events, result.uuid) if e.uuid == result.uuid]


def silences(leg: list[Event]) -> list[tuple[float, float, str]]:
    """(start, end, what) of every span between the answer and the hang-up with no prompt playing on the robot's leg."""
    answer = next(e for e in leg if e.name == "CHANNEL_ANSWER")
    hangup = next((e for e in leg if e.name == "CHANNEL_HANGUP"), None)
    spans, quiet_from, what = [], answer.t, "answer"
    for e in leg:
        if e.name == "PLAYBACK_START" and quiet_from is not None:
            spans.append((quiet_from - answer.t, e.t - answer.t, f"{what} -> PLAYBACK_START"))
            quiet_from = None
        elif e.name == "PLAYBACK_STOP":
            quiet_from, what = e.t, f"PLAYBACK_STOP {e.get('Playback-Status')}"
    if hangup is not None and quiet_from is not None:
        spans.append((quiet_from - answer.t, hangup.t - answer.t, f"{what} -> CHANNEL_HANGUP"))
    return spans


def rows(report: dict, source: str, type_: str) -> list[dict]:
    return [e for e in report.get("events", []) if e.get("source") == source and e.get("type") == type_]


# ---- the audio server killed mid-call -----------------------------------------------------------

class KilledServerCall:
    """One long_reply call whose audio server is SIGKILLed mid-speech and restarted on its port."""

    def __init__(self, result: CallResult, answer: Event, killed: float, ready: float) -> None:
        self.result, self.answer, self.killed, self.ready = result, answer, killed, ready


@pytest.fixture(scope="module")
def killed_server_call(switch, recorder, workdir) -> KilledServerCall:
    # its own server (the session's one stays up), in a process group of its own: `callbot
    # audio-server` is a supervisor and its workers, and the whole server dies at once. One worker:
    # each loads Whisper, and on two busy cores two took 7-8 s to come back, which the robot's
    # restarts (0.5, 1, 2, 4, 8 s apart, 5 at most: the last 15.5 s after the loss) barely cover
    server = start_audio_server(workdir, stt=True, own_group=True, workers=1)
    restarted = None
    try:
        call = start_call(switch, server, recorder, f"loopback/long_reply/{TEST_CONTEXT}", workdir)
        answer = call.answer()
        assert answer is not None, "the call was not answered"
        wait_until(answer.t + sidecar_onset(switch, "long_reply") + KILL_AFTER_ONSET_S)
        group = subprocess.run(["pgrep", "-g", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        os.killpg(server.proc.pid, signal.SIGKILL)
        killed = time.time()
        server.proc.wait(10)
        print(f"SIGKILL to the audio server's process group: {len(group)} processes ({', '.join(group)})")
        restarted = start_audio_server(workdir, stt=True, port=server.port, workers=1)  # the same command and port
        ready = time.time()
        print(f"audio server killed {killed - answer.t:.3f} s after the answer, answering /healthz again "
              f"{ready - answer.t:.3f} s after it (restart took {ready - killed:.2f} s)")
        result = call.finish()
    finally:
        stop_process(server.proc)
        if restarted is not None:
            stop_process(restarted.proc)
    return KilledServerCall(result, answer, killed, ready)


def test_audio_server_killed_mid_speech_is_restarted(killed_server_call):
    """The robot flags audio_stream_lost, restarts the stream until the server is back, finishes
    its scenario, and never leaves the caller in silence for more than SILENCE_BOUND_S."""
    k = killed_server_call
    result, report, t0 = k.result, k.result.report, k.answer.t
    assert result.returncode == 0, result.stderr[-3000:]
    assert "audio_stream_lost" in report["flags"], report["flags"]
    leg = a_leg(result)

    # the switch saw the stream die when the server did, and come back after the restart
    lost = [e for e in leg if e.name in ("CUSTOM::mod_audio_stream::error", "CUSTOM::mod_audio_stream::disconnect")]
    connects = [e for e in leg if e.name == "CUSTOM::mod_audio_stream::connect"]
    for e in lost:
        print(f"{e.t - t0:7.3f}  {e.name}  {e.get('_body')}")
    assert lost, "mod_audio_stream reported no lost stream"
    assert abs(lost[0].t - k.killed) < 0.5, f"stream lost {lost[0].t - k.killed:+.3f} s from the kill"
    back = [e for e in connects if e.t > lost[0].t]
    assert back, f"the stream never came back: {[e.name for e in leg]}"

    restarts = rows(report, "robot", "stream_restart")
    replies = rows(report, "robot", "stream_restart_reply")
    attempts = [(r["t"], rep.get("reply"), rep.get("attempt")) for r, rep in zip(restarts, replies)]
    print(f"stream_restart rows (t, reply, attempt): {attempts}")
    assert restarts, "no stream_restart row in the robot's events"
    assert rows(report, "robot", "audio_gap_end"), "the robot did not see the stream come back"

    # bound on the audio gap: the restarts back off 0.5, 1, 2, 4 s, so once the server answers, the
    # next attempt comes at most (time already lost + 0.5 s) later; one more second for the handshake
    gap = back[0].t - lost[0].t
    bound = 2 * (k.ready - lost[0].t) + RESTART_BACKOFF_S + 1.0
    print(f"audio gap {gap:.3f} s (lost {lost[0].t - t0:.3f} s, server ready {k.ready - t0:.3f} s, stream back "
          f"{back[0].t - t0:.3f} s after the answer; bound {bound:.2f} s); {len(restarts)} restart(s)")
    assert gap <= bound

    quiet = silences(leg)
    for start, end, what in quiet:
        print(f"no prompt playing {start:7.3f} .. {end:7.3f} s ({end - start:.3f} s): {what}")
    longest = max(end - start for start, end, _ in quiet)
    path = "barge-in on the restarted stream" if report["barge_ins"] else "greeting played to its end"
    print(f"longest silence {longest:.3f} s (bound {SILENCE_BOUND_S} s); {path}; disposition {report['disposition']}")
    assert longest <= SILENCE_BOUND_S
    assert report["hangup"] == {"by": "robot", "cause": "NORMAL_CLEARING"}, report["hangup"]


def test_audio_rows_after_a_stream_restart_are_dated_from_the_new_stream(killed_server_call):
    """Each audio row is stream time + the start of the stream it came from (its MEDIA_BUG_START).
    Found here (the restarted stream's rows were dated from the first stream: a barge-in reported at
    1.6 s whose event came 5.40 s after the answer), fixed in 8b3534c."""
    report = killed_server_call.result.report
    events = report["events"]
    starts = [i for i, e in enumerate(events) if e["source"] == "switch" and e["type"] == "MEDIA_BUG_START"]
    assert len(starts) >= 2, "no second MEDIA_BUG_START: the stream was not restarted"
    last_bug = events[starts[-1]]
    after = [e for e in events[starts[-1]:] if e["source"] == "audio" and e.get("stream_t") is not None]
    assert after, "no audio event from the restarted stream"
    for e in after:
        print(f"{e['type']}: t {e['t']} stream_t {e['stream_t']} (+ MEDIA_BUG_START {last_bug['t']})")
    for e in after:
        assert abs(e["t"] - (e["stream_t"] + last_bug["t"])) < 0.1, e


# ---- the Event Socket restarted mid-call --------------------------------------------------------

def test_esl_restarted_mid_call(switch, recorder, audio_server, workdir):
    """`reload mod_event_socket` 2 s after the answer (the caller speaking over the greeting) drops
    every ESL connection; the robot reconnects, finds its call in `show channels`, barges in and
    ends the call with its record."""
    call = start_call(switch, audio_server, recorder, f"loopback/long_reply/{TEST_CONTEXT}", workdir)
    answer = call.answer()
    assert answer is not None, "the call was not answered"
    outages_before = len(recorder.outages)
    wait_until(answer.t + 2.0)
    reloaded = switch.fs_cli("reload mod_event_socket")
    reload_at = time.time() - answer.t
    result = call.finish()
    report = result.report
    print(f"reload mod_event_socket {reload_at:.3f} s after the answer: {reloaded.strip()!r}; "
          f"recorder outages {[(round(a - answer.t, 3), round(b - answer.t, 3)) for a, b in recorder.outages]}")
    assert reloaded.startswith("+OK"), reloaded
    assert len(recorder.outages) > outages_before, "the reload did not drop this test's own ESL connection"

    assert result.returncode == 0, result.stderr[-3000:]
    flags = report["flags"]
    assert "esl_disconnected" in flags and "esl_reconnected" in flags, flags
    assert flags.index("esl_disconnected") < flags.index("esl_reconnected")
    down = rows(report, "robot", "flag")
    outage = next(r for r in down if r.get("flag") == "esl_reconnected").get("outage_s")
    print(f"robot: {[(r['t'], r['flag']) for r in down]}; outage {outage} s")
    assert outage is not None and outage < 5.0

    # after the reconnect the call went on: the barge-in (due 3.0 s after the answer) and the end
    assert report["barge_ins"] and report["prompts"][0]["status"] == "break", report["prompts"]
    assert report["disposition"] and report["hangup"]["by"] == "robot", (report["disposition"], report["hangup"])
    assert report["hangup"]["cause"] == "NORMAL_CLEARING"
    assert switch.api(f"uuid_exists {result.uuid}").strip() == "false", "the call is still up on the switch"
