"""CallSession against a scripted in-process switch: the state machine's paths, barge-in, faults.

The fake answers API commands like FreeSWITCH (reply strings from the conformance captures) and
emits events to the routed callback from its own greenlets, as the ESL dispatcher would. It is a
test double for the switch only; the session, queue, scenario and timeline are the real code.
End-to-end runs over real sockets are in tests/test_replay_*.py.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import gevent
import pytest
import soundfile
from gevent.event import AsyncResult

from callbot.events import BargeIn, Final, SpeechShort, SpeechStarted, SpeechStopped, to_json
from callbot.config import Settings
from callbot.esl.protocol import EslEvent
from callbot.robot.call.record import prompt_text_command, stream_url
from callbot.robot.call.session import CallSession
from callbot.robot.esl.client import EslDisconnected
from callbot.robot.scenario.loader import bundled_scenario, load_scenario

SPEED = 50.0  # call seconds per wall second in these tests


class FakeSwitch:
    """Answers, plays prompts (events after a delay), breaks; ``script`` adds the callee's behaviour."""

    def __init__(self, answer: bool = True, originate_result: str | None = None, stream_ok: bool = True,
                 prompt_s: float | None = None) -> None:
        self.calls: list[tuple[float, str]] = []
        self.callback: Callable[[EslEvent], None] | None = None
        self.uuid = ""
        self.answer, self.originate_result, self.stream_ok = answer, originate_result, stream_ok
        self.prompt_s = prompt_s
        self.t0 = time.monotonic()
        self.playing: str | None = None
        self._play_timer: gevent.Greenlet | None = None
        self.hooks: dict[str, Callable[[], None]] = {}
        self.down = False

    # -- what the session calls --
    def route(self, call_uuid: str, callback: Callable[[EslEvent], None]) -> None:
        self.uuid, self.callback = call_uuid, callback

    def unroute(self, call_uuid: str) -> None:
        self.callback = None

    def bgapi_async(self, cmd: str, timeout: float | None = None) -> tuple[str, Any]:
        self.calls.append((self.now(), cmd))
        result = AsyncResult()
        if self.answer:
            gevent.spawn_later(0.01, self.emit, "CHANNEL_ANSWER")
            gevent.spawn_later(0.02, result.set, f"+OK {self.uuid}\n")
        else:
            gevent.spawn_later(0.02, result.set, self.originate_result or "-ERR NO_ANSWER\n")
        return "job", result

    def api(self, cmd: str, timeout: float | None = None) -> str:
        if self.down:
            raise EslDisconnected("link down")
        self.calls.append((self.now(), cmd))
        verb = cmd.split(" ")
        if verb[0] == "uuid_audio_stream" and verb[2] == "start":
            gevent.spawn_later(0.001, self.emit, "MEDIA_BUG_START")
            if self.stream_ok:
                gevent.spawn_later(0.002, self.emit_custom, "connect", '{"status":"connected"}')
            else:
                gevent.spawn_later(0.002, self.emit_custom, "error",
                                   '{"status":"error","message":{"code":6,"error":"Connection refused"}}')
            return "+OK Success\n"
        if verb[0] == "uuid_broadcast":
            self.playing = verb[2]
            gevent.spawn_later(0.002, self.emit, "PLAYBACK_START", **{"Playback-File-Path": verb[2]})
            seconds = self.prompt_s or soundfile.info(verb[2]).duration  # default: the file's real length
            self._play_timer = gevent.spawn_later(seconds / SPEED, self.stop_playback, "done", 1000 * seconds)
            hook = self.hooks.pop(verb[2].rsplit("/", 1)[-1], None)
            if hook:
                gevent.spawn(hook)
            return "+OK Message sent\n"
        if verb[0] == "uuid_break":
            if self._play_timer is not None:
                self._play_timer.kill()
            gevent.spawn_later(0.02 / SPEED, self.stop_playback, "break", 2048)
            return "+OK\n"
        if verb[0] == "uuid_kill":
            gevent.spawn_later(0.001, self.emit, "CHANNEL_HANGUP", **{"Hangup-Cause": "NORMAL_CLEARING"})
            return "+OK\n"
        return "+OK Success\n"

    # -- helpers for tests --
    def now(self) -> float:
        return (time.monotonic() - self.t0) * SPEED

    def stop_playback(self, status: str, played_ms: float) -> None:
        if self.playing is None:
            return
        path, self.playing = self.playing, None
        self.emit("PLAYBACK_STOP", **{"Playback-File-Path": path, "Playback-Status": status,
                                      "variable_playback_ms": str(int(played_ms))})

    def emit(self, name: str, **headers: str) -> None:
        stamp = str(int(1_700_000_000_000_000 + self.now() * 1e6))
        pairs = [("Event-Name", name), ("Event-Date-Timestamp", stamp), ("Unique-ID", self.uuid)]
        if self.callback is not None:
            self.callback(EslEvent(pairs + list(headers.items())))

    def emit_custom(self, sub: str, body: str) -> None:
        stamp = str(int(1_700_000_000_000_000 + self.now() * 1e6))
        if self.callback is not None:
            self.callback(EslEvent([("Event-Subclass", f"mod_audio_stream::{sub}"), ("Event-Name", "CUSTOM"),
                                    ("Event-Date-Timestamp", stamp), ("Unique-ID", self.uuid)], body))

    def say(self, *events: Any, gap: float = 0.0) -> None:
        for event in events:
            self.emit_custom("json", to_json(event, self.uuid))
            if gap:
                gevent.sleep(gap / SPEED)

    def commands(self, verb: str) -> list[str]:
        return [c for _, c in self.calls if c.startswith(verb)]


def settings() -> Settings:
    return Settings().replace(**{"robot.speed": SPEED, "robot.final_wait_min_wall_s": 0.05,
                                 "robot.no_audio_flag_s": 5.0})


def run(switch: FakeSwitch, scenario: str = "survey_en", audio_url: str | None = "ws://127.0.0.1:9/x"):
    sc = load_scenario(bundled_scenario(scenario))
    session = CallSession(switch, sc, settings(), "fixture/x.wav", audio_url=audio_url)
    return gevent.spawn(session.run).get(timeout=30), session


def barge_in_caller(sw: FakeSwitch, onset: float, text: str) -> Callable[[], None]:
    """A callee who talks over the greeting from ``onset`` for 2.5 s, saying ``text``."""

    def caller() -> None:
        gevent.sleep(onset / SPEED)
        sw.say(SpeechStarted(t=onset))
        gevent.sleep(1.5 / SPEED)
        sw.say(BargeIn(t=onset + 1.5, onset_s=onset, duration_ms=1500))
        gevent.sleep(1.0 / SPEED)
        sw.say(SpeechStopped(t=onset + 2.5, duration_ms=2500),
               Final(t=onset + 2.6, text=text, start_s=onset, end_s=onset + 2.5, avg_logprob=-0.2,
                     no_speech_prob=0.01))

    return caller


def test_barge_in_breaks_the_prompt_at_once_then_the_reply_branches():
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = barge_in_caller(sw, 1.0, "Not now, call me back next week.")
    record, session = run(sw)
    assert record.disposition == "callback" and record.hangup_by == "robot"
    assert record.replies == [{"step": "greeting", "outcome": "later", "text": "Not now, call me back next week."}]
    assert record.states == ["answered", "amd", "playing", "listening", "playing", "hanging_up", "hangup", "done"]
    assert len(sw.commands("uuid_break")) == 1
    # The break is the first thing done with the barge-in: nothing is handled between the two.
    rows = session.timeline.rows()
    i = next(i for i, r in enumerate(rows) if r["type"] == "barge_in")
    assert rows[i + 1]["type"] == "uuid_break" and rows[i + 1]["queued_ms"] >= 0
    stop = next(r for r in rows if r["type"] == "PLAYBACK_STOP")
    assert stop["status"] == "break" and stop["played_ms"] == 2048
    # robot.act_on_amd (default): AMD runs beside the prompt; this fake switch never sends an amd event
    assert record.amd is None and "amd_pending" in [r["type"] for r in rows]
    # the stream was started with its configuration in the URL, and the prompt text was sent quoted
    start = sw.commands("uuid_audio_stream")[0]
    assert "/stream/" + record.call_uuid + "?rate=16000&min_speech_ms=1500&bridge_ms=300&amd=on&lang=en mono 16k {" in start
    assert any(c.startswith(f"uuid_audio_stream {record.call_uuid} send_text '{{\"type\":\"prompt\"")
               for c in sw.commands("uuid_audio_stream"))


def test_a_short_yes_during_the_greeting_is_not_a_barge_in_but_is_the_reply():
    sw = FakeSwitch()

    def caller() -> None:
        gevent.sleep(1.2 / SPEED)
        sw.say(SpeechStarted(t=1.2), SpeechShort(t=1.6, duration_ms=400),
               Final(t=1.7, text="Yes.", start_s=1.2, end_s=1.6, avg_logprob=-0.1, no_speech_prob=0.0))

    sw.hooks["greeting.wav"] = caller
    record, _ = run(sw)
    assert sw.commands("uuid_break") == []
    assert record.replies[0]["outcome"] == "yes" and record.disposition == "confirmed"


def test_barge_in_on_a_prompt_without_barge_in_is_ignored_and_logged():
    sw = FakeSwitch()

    def greeting() -> None:
        gevent.sleep(1 / SPEED)
        sw.say(Final(t=1.5, text="yes", start_s=1, end_s=1.4, avg_logprob=0, no_speech_prob=0))

    def confirmed() -> None:
        gevent.sleep(2 / SPEED)
        sw.say(BargeIn(t=3.0, onset_s=1.5, duration_ms=1500))

    sw.hooks.update({"greeting.wav": greeting, "confirmed.wav": confirmed})
    record, session = run(sw)
    assert sw.commands("uuid_break") == [] and record.disposition == "confirmed"
    ignored = [r for r in session.timeline.rows() if r["type"] == "barge_in_ignored"]
    assert ignored and ignored[0]["reason"] == "barge-in off for this prompt"


def test_callee_hangs_up_in_the_middle_of_a_prompt():
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = lambda: (gevent.sleep(3 / SPEED),
                                        sw.emit("CHANNEL_HANGUP", **{"Hangup-Cause": "NORMAL_CLEARING"}))
    record, session = run(sw)
    assert record.disposition == "hung_up" and record.hangup_by == "callee"
    assert record.states[-2:] == ["hangup", "done"] and "hanging_up" not in record.states
    assert sw.commands("uuid_kill") == []
    assert "prompt_cut_by_hangup" in [r["type"] for r in session.timeline.rows()]


@pytest.mark.parametrize("result,disposition", [("-ERR USER_BUSY\n", "user_busy"), ("-ERR NO_ANSWER\n", "no_answer")])
def test_originate_failure_ends_in_dialing_with_the_cause(result, disposition):
    record, _ = run(FakeSwitch(answer=False, originate_result=result))
    assert record.disposition == disposition and record.states == ["hangup", "done"]


def test_audio_server_unreachable_call_goes_on_without_barge_in_and_is_flagged():
    record, _ = run(FakeSwitch(stream_ok=False, prompt_s=2.0))
    assert "audio_unreachable" in record.flags
    # nothing heard: silence, then the repeat prompt, silence again, then the no-reply ending
    assert [r["outcome"] for r in record.replies] == ["silence", "silence"]
    assert record.disposition == "no_reply"


def test_a_connected_stream_that_reports_nothing_is_flagged_after_5_s():
    record, session = run(FakeSwitch(prompt_s=2.0))
    flag = [r for r in session.timeline.rows() if r.get("flag") == "stream_no_audio_events"]
    assert flag and flag[0]["t"] >= 4.9  # never early; how late depends on the shared CPU


def test_api_during_an_esl_outage_waits_for_the_reconnect_and_goes_on():
    sw = FakeSwitch(prompt_s=2.0)

    def outage() -> None:
        sw.down = True
        sw.emit("ESL_DISCONNECTED", **{"Callbot-Synthetic": "true", "Reason": "test"})
        gevent.sleep(3 / SPEED)
        sw.down = False
        sw.emit("ESL_RECONNECTED", **{"Callbot-Synthetic": "true", "Outage-Seconds": "0.06"})

    sw.hooks["greeting.wav"] = outage
    record, session = run(sw)
    assert {"esl_disconnected", "esl_reconnected"} <= set(record.flags)
    assert record.disposition == "no_reply" and record.hangup_by == "robot"


def test_channel_gone_after_reconnect_records_the_call_cleanly():
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = lambda: (gevent.sleep(1 / SPEED), sw.emit("CHANNEL_GONE", Reason="gone"))
    record, _ = run(sw)
    assert record.hangup_by == "switch" and "ended_during_esl_outage" in record.flags
    assert record.disposition == "incomplete"


def test_stream_url_and_prompt_text_are_safe_for_freeswitch_argument_parsing():
    u = "0f8fad5b-d9cb-469f-a165-70867728950e"
    s = Settings().replace(**{"audio_server.token": "s3cret"})
    expected = f"ws://h:1/stream/{u}?rate=16000&min_speech_ms=1500&bridge_ms=300&amd=on&token=s3cret"
    assert stream_url("ws://h:1/", u, s) == expected
    off = s.replace(**{"robot.act_on_amd": False})
    assert stream_url("ws://h:1/", u, off) == expected.replace("&amd=on", "")
    cmd = prompt_text_command(u, 'Say "yes", s\'il vous plaît \\ now')
    body = cmd.split(" ", 3)[3]
    assert body.startswith("'{") and body.endswith("}'") and body.count("'") == 2 and "\\" not in body


def _barge_call():
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = barge_in_caller(sw, 0.9, "no thanks")
    return run(sw)[0]


def test_report_has_the_design_keys_and_maps_stream_time_to_call_time():
    from callbot.robot.report import build_report, render_text

    record = _barge_call()
    report = build_report(record, fixture="x.wav", stream_start_s=0.1)
    assert list(report)[:8] == ["fixture", "call_uuid", "disposition", "amd", "prompts", "barge_ins",
                                "transcripts", "events"]
    assert report["disposition"] == "declined" and report["amd"] is None
    assert [p["file"] for p in report["prompts"]] == ["greeting.wav", "cancelled.wav"]
    assert report["prompts"][0]["status"] == "break" and report["prompts"][1]["status"] == "done"
    (b,) = report["barge_ins"]
    assert b["speech_onset_s"] == 1.0 and b["detected_s"] == 2.5 and b["break_at_switch_s"] is not None
    assert report["transcripts"] == [{"start_s": 1.0, "end_s": 3.5, "text": "no thanks"}]
    assert all(set(e) >= {"t", "source", "type"} for e in report["events"])
    text = render_text(report)
    assert "BARGE-IN detected" in text and 'caller said: "no thanks"' in text and "broke off greeting.wav" in text


def test_store_records_the_call_off_the_call_path_in_sqlite_wal(tmp_path):
    from callbot.robot.report import build_report
    from callbot.robot.store import Store, StoreWriter

    record = _barge_call()
    report = build_report(record, stream_start_s=0.0)
    store = Store(f"sqlite:///{tmp_path / 'calls.db'}")
    writer = StoreWriter(store)
    assert writer.submit(report, "fixture/x.wav", "survey_en")
    writer.close()
    assert writer.written == 1
    row = store.attempt(record.call_uuid)
    assert row is not None and row["disposition"] == "declined" and row["intents"][0]["outcome"] == "no"
    assert len(row["events"]) == len(report["events"]) and row["transcripts"][0]["text"] == "no thanks"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    # the same call twice is refused by the unique call_uuid (one result per call)
    writer2 = StoreWriter(store)
    writer2.submit(report, "fixture/x.wav", "survey_en")
    writer2.close()
    assert writer2.failed == 1 and writer2.written == 0


def test_amd_hook_acting_on_machine_waits_for_the_beep_and_leaves_the_voicemail():
    from callbot.events import Amd, Beep

    sw = FakeSwitch()

    def machine() -> None:
        gevent.sleep(2.0 / SPEED)
        sw.say(Amd(t=2.0, result="machine", cause="LONGGREETING", decided_at_s=2.0))
        gevent.sleep(1.0 / SPEED)
        sw.say(Beep(t=3.0, freq_hz=1000.0, duration_ms=400))

    sw.hooks["greeting.wav"] = machine
    sc = load_scenario(bundled_scenario())
    s = settings().replace(**{"robot.act_on_amd": True})
    record = gevent.spawn(CallSession(sw, sc, s, "fixture/x.wav", audio_url="ws://127.0.0.1:9").run).get(timeout=30)
    assert record.amd == "machine" and record.disposition == "voicemail_left"
    assert record.states[:6] == ["answered", "amd", "playing", "wait_beep", "playing", "hanging_up"]
    played = [c.split(" ")[2].rsplit("/", 1)[-1] for c in sw.commands("uuid_broadcast")]
    assert played == ["greeting.wav", "voicemail.wav"] and len(sw.commands("uuid_break")) == 1


def test_without_acting_on_amd_a_machine_verdict_is_only_logged():
    from callbot.events import Amd

    sw = FakeSwitch(prompt_s=2.0)
    sw.hooks["greeting.wav"] = lambda: sw.say(Amd(t=0.5, result="machine", cause="x", decided_at_s=0.5))
    session = CallSession(sw, load_scenario(bundled_scenario()), settings().replace(**{"robot.act_on_amd": False}),
                          "fixture/x.wav", audio_url="ws://127.0.0.1:9/x")
    record = gevent.spawn(session.run).get(timeout=30)
    assert record.amd == "machine" and record.disposition == "no_reply"  # recorded, not acted on
    assert [r for r in session.timeline.rows() if r["type"] == "amd"][0]["result"] == "machine"


def test_a_hang_up_during_the_goodbye_keeps_the_decided_disposition():
    sw = FakeSwitch()
    sw.hooks["greeting.wav"] = lambda: sw.say(Final(t=1, text="yes", start_s=0.5, end_s=0.9, avg_logprob=0,
                                                    no_speech_prob=0))
    sw.hooks["confirmed.wav"] = lambda: (gevent.sleep(1 / SPEED),
                                         sw.emit("CHANNEL_HANGUP", **{"Hangup-Cause": "NORMAL_CLEARING"}))
    record, _ = run(sw)
    assert record.disposition == "confirmed" and record.hangup_by == "callee"
