"""The robot, unchanged and driven only through `callbot call`, against a real FreeSWITCH 1.10.12
with mod_audio_stream. The callees are the dialplan extensions of freeswitch_conf/dialplan/
callbot_test.xml, reached as loopback/<extension>/callbot_test; each plays one of the project's
recorded fixtures as the callee's voice.

Times are taken from the switch's own events (Event-Date-Timestamp, microseconds), recorded on a
separate ESL connection: the callee leg's PLAYBACK_START dates the callee's voice, the robot leg's
PLAYBACK_STOP (`break`) dates the moment the caller stops hearing the prompt.
"""

from __future__ import annotations

import json
import os
import statistics

import pytest

from realswitch_kit import TEST_CONTEXT, Event, call_events, callbot_exe, robot_env, run_call

pytestmark = pytest.mark.realswitch

THRESHOLD_S = 1.5  # bargein.min_speech_ms
TICK_S = 0.020  # PLAYBACK_STOP (break) comes on the media tick after uuid_break
BARGE_IN_CALLS = int(os.environ.get("REALSWITCH_BARGE_IN_CALLS", "3"))
# The barge-in latency, from the switch's stamps (20 ms steps). The span from the callee leg's voice
# (PLAYBACK_START + onset + 1.5 s) to the A leg's PLAYBACK_STOP break, less one tick, holds the
# loopback hop (one or two frames plus the media bug: the audio server hears the onset 30-50 ms after
# the callee leg plays it) before the audio server can decide. The event socket's 20 ms poll held the
# barge-in event up to 20 ms more until the robot nudged it (esl.nudge_ms): over 10 calls, p50 50 ms and
# p95 70 ms without the nudge, p50 30 ms and p95 50 ms with it. So each call within the 60 ms,
# and the robot's own part (the audio server's barge_in event to the break) within two ticks, 40 ms.
SPAN_CALL_S = 0.060
ROBOT_PART_S = 0.040


def sidecar(switch, name: str) -> dict:
    return json.loads((switch.prefix / "sounds" / "callbot" / f"{name}.json").read_text())


def legs(events: list[Event], call_uuid: str) -> tuple[list[Event], list[Event]]:
    mine = call_events(events, call_uuid)
    return [e for e in mine if e.uuid == call_uuid], [e for e in mine if e.uuid and e.uuid != call_uuid]


def playback_start(events: list[Event], wav: str) -> Event:
    ev = next((e for e in events if e.name == "PLAYBACK_START" and e.get("Playback-File-Path").endswith(wav)), None)
    assert ev is not None, f"no PLAYBACK_START of {wav} on the callee leg"
    return ev


def api_events(events: list[Event], command: str) -> list[Event]:
    return [e for e in events if e.name == "API" and e.get("API-Command") == command]


def audio_events(events: list[Event], call_uuid: str, kind: str) -> list[Event]:
    """mod_audio_stream::json events (the audio server's text frames) of one type."""
    out = []
    for e in events:
        if e.name == "CUSTOM::mod_audio_stream::json" and e.uuid == call_uuid:
            try:
                body = json.loads(e.get("_body"))
            except ValueError:
                continue
            if body.get("type") == kind:
                out.append(e)
    return out


def park_before_broadcast(a_leg: list[Event], events: list[Event], call_uuid: str) -> str:
    """Report (and return) whether each uuid_broadcast reached the switch after the A leg's CHANNEL_PARK."""
    park = next((e for e in a_leg if e.name == "CHANNEL_PARK"), None)
    lines = []
    for api in api_events(call_events(events, call_uuid), "uuid_broadcast"):
        rel = "no CHANNEL_PARK" if park is None else f"{(api.t - park.t) * 1000:+.1f} ms after CHANNEL_PARK"
        lines.append(f"uuid_broadcast {api.get('API-Command-Argument')[-40:]}: {rel}")
    print("\n".join(lines))
    return "\n".join(lines)


LATENCIES: list[float] = []


@pytest.mark.parametrize("run", range(BARGE_IN_CALLS))
def test_long_reply_barges_in(switch, recorder, audio_server, workdir, run):
    """Speech over the greeting for more than 1.5 s: the robot breaks its prompt 1.5 s after onset."""
    result = run_call(switch, audio_server, recorder, f"loopback/long_reply/{TEST_CONTEXT}", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.report
    a_leg, b_leg = legs(result.events, result.uuid)
    park_before_broadcast(a_leg, result.events, result.uuid)

    assert report["prompts"], f"no prompt played (robot events: {[e.get('type') for e in report.get('events', [])]})"
    first = report["prompts"][0]
    assert first["status"] == "break", report["prompts"]
    assert report["barge_ins"], "no barge-in reported"
    bi = report["barge_ins"][0]
    assert bi["break_at_switch_s"] is not None
    assert abs(bi["detected_s"] - bi["speech_onset_s"] - THRESHOLD_S) < 0.1, bi

    # the switch's own clock: the callee's voice (B leg) and the prompt's break (A leg)
    onset = sidecar(switch, "long_reply")["speech"][0][0]
    voice = playback_start(b_leg, "callbot/long_reply.wav")
    expected = voice.t + onset + THRESHOLD_S
    stop = next((e for e in a_leg if e.name == "PLAYBACK_STOP" and e.get("Playback-Status") == "break"), None)
    assert stop is not None, "no PLAYBACK_STOP break on the robot's leg"
    latency = stop.t - TICK_S - expected
    decided = audio_events(result.events, result.uuid, "barge_in")
    breaks = api_events(call_events(result.events, result.uuid), "uuid_break")
    print(f"barge-in: callee PLAYBACK_START + {onset} s + {THRESHOLD_S} s = expected; "
          f"audio server barge_in event {((decided[0].t - expected) * 1000) if decided else float('nan'):+.1f} ms, "
          f"uuid_break at the switch {((breaks[0].t - expected) * 1000) if breaks else float('nan'):+.1f} ms, "
          f"PLAYBACK_STOP break {(stop.t - expected) * 1000:+.1f} ms (less one tick: {latency * 1000:+.1f} ms); "
          f"robot: onset {bi['speech_onset_s']} detected {bi['detected_s']} break {bi['break_at_switch_s']}")
    recv_latency = stop.recv - TICK_S - (voice.recv + onset + THRESHOLD_S)
    print(f"same from this client's receive times: {recv_latency * 1000:+.1f} ms (event clock: 20 ms steps)")
    LATENCIES.append(latency)
    if len(LATENCIES) > 1:
        ordered = sorted(LATENCIES)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"barge-in latency over {len(LATENCIES)} calls: p50 {statistics.median(LATENCIES) * 1000:.1f} ms, "
              f"p95 {p95 * 1000:.1f} ms, max {max(LATENCIES) * 1000:.1f} ms")
    assert decided, "no barge_in event from the audio server"
    robot_part = stop.t - TICK_S - decided[0].t
    print(f"the robot's part (audio server barge_in event -> PLAYBACK_STOP break less one tick): "
          f"{robot_part * 1000:+.1f} ms")
    assert -TICK_S <= robot_part <= ROBOT_PART_S
    assert -SPAN_CALL_S <= latency <= SPAN_CALL_S, f"PLAYBACK_STOP break {latency * 1000:+.1f} ms from onset + 1.5 s"


def test_short_reply_does_not_barge_in(switch, recorder, audio_server, workdir):
    """"Yes" (0.42 s) over the greeting: no barge-in; the greeting plays to its end."""
    result = run_call(switch, audio_server, recorder, f"loopback/short_reply/{TEST_CONTEXT}", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.report
    a_leg, b_leg = legs(result.events, result.uuid)
    park_before_broadcast(a_leg, result.events, result.uuid)
    playback_start(b_leg, "callbot/short_yes.wav")
    assert report["prompts"], "no prompt played"
    assert report["prompts"][0]["status"] == "done", report["prompts"]
    assert report["barge_ins"] == []
    assert not [e for e in a_leg if e.name == "PLAYBACK_STOP" and e.get("Playback-Status") == "break"]


def test_voicemail_message_after_the_beep(switch, recorder, audio_server, workdir):
    """A voicemail greeting then a beep: AMD says machine and the robot's message starts after the beep."""
    result = run_call(switch, audio_server, recorder, f"loopback/voicemail/{TEST_CONTEXT}", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.report
    a_leg, b_leg = legs(result.events, result.uuid)
    park_before_broadcast(a_leg, result.events, result.uuid)
    assert report["amd"] == "machine", report.get("amd")
    beep_end = sidecar(switch, "vm_en_us_beep1000")["beep"][1]
    voice = playback_start(b_leg, "callbot/vm_en_us_beep1000.wav")
    message = next((e for e in a_leg if e.name == "PLAYBACK_START"
                    and e.get("Playback-File-Path").endswith("voicemail.wav")), None)
    assert message is not None, f"the voicemail message never played: {report['prompts']}"
    after = message.t - (voice.t + beep_end)
    print(f"voicemail: the message started {after * 1000:.0f} ms after the end of the beep")
    assert after > 0
    assert report["disposition"] == "voicemail_left", report["disposition"]


@pytest.mark.parametrize("extension, cause, disposition", [
    ("busy", "USER_BUSY", "busy"),
    ("rejected", "CALL_REJECTED", "rejected"),
])
def test_call_fails_with_cause(switch, recorder, audio_server, workdir, extension, cause, disposition):
    """A callee that hangs up before answering: the originate fails with the cause; nothing plays."""
    result = run_call(switch, audio_server, recorder, f"loopback/{extension}/{TEST_CONTEXT}", workdir)
    report = result.report
    mine = call_events(result.events, result.uuid) if result.uuid else []
    job = next((e for e in mine if e.name == "BACKGROUND_JOB"), None)
    assert job is not None, "no BACKGROUND_JOB for the originate"
    print(f"BACKGROUND_JOB body: {job.get('_body')!r}")
    assert job.get("_body").strip() == f"-ERR {cause}"
    assert disposition in (report.get("disposition") or "").lower(), report.get("disposition")
    assert not report.get("prompts")


def test_no_answer_ends_at_the_originate_timeout(switch, recorder, audio_server, workdir):
    """A callee that rings and never answers: with robot.dial_timeout_s = 5 the originate gives up
    (originate_timeout=5) with NO_ANSWER."""
    result = run_call(switch, audio_server, recorder, f"loopback/no_answer/{TEST_CONTEXT}", workdir,
                      CALLBOT_ROBOT_DIAL_TIMEOUT_S="5")
    report = result.report
    mine = call_events(result.events, result.uuid) if result.uuid else []
    originate = next((e for e in mine if e.name == "API" and e.get("API-Command") == "originate"), None)
    job = next((e for e in mine if e.name == "BACKGROUND_JOB"), None)
    assert job is not None, "no BACKGROUND_JOB for the originate"
    print(f"BACKGROUND_JOB body: {job.get('_body')!r}"
          + (f", {job.t - originate.t:.2f} s after the originate" if originate else ""))
    assert "originate_timeout=5" in (originate.get("API-Command-Argument") if originate else "originate_timeout=5")
    assert job.get("_body").strip() == "-ERR NO_ANSWER"
    assert "no_answer" in (report.get("disposition") or "").lower(), report.get("disposition")
    if originate is not None:
        assert 3.5 <= job.t - originate.t <= 7.0  # whole seconds: 4-5 s was seen for 5
    assert result.wall_s < 30


def test_callbot_check_passes(switch, audio_server):
    """`callbot check` against the real switch: ESL, password, mod_audio_stream, /healthz."""
    import subprocess

    proc = subprocess.run([*callbot_exe(), "check", "--audio-url", audio_server.url, "--json"],
                          capture_output=True, text=True, timeout=60, env=robot_env(switch, audio_server))
    print(proc.stdout, proc.stderr[-2000:])
    assert proc.returncode == 0


def test_fs_cli_needs_the_password(switch):
    """The docs' fs_cli commands: with -p they answer; without it (the vanilla ClueCon) they cannot."""
    assert switch.fs_cli("module_exists mod_audio_stream").strip() == "true"
    import subprocess

    proc = subprocess.run([str(switch.prefix / "bin" / "fs_cli"), "-x", "status"], capture_output=True, text=True,
                          timeout=30)
    assert "UP" not in proc.stdout
