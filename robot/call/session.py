"""One call, start to end, in one greenlet: dial, stream, AMD (robot.call_amd), prompts, barge-in, replies, hang-up.

The ESL dispatcher only classifies each event and puts it on the call's :class:`CallQueue`
(barge-in and hang-up jump ahead). Everything else happens here, in the call's greenlet, driven by
:class:`CallStateMachine`. A ``barge_in`` is acted on the moment it is taken off the queue: the
``uuid_break`` goes out before the event is even written to the timeline. Database writes happen
after the call, elsewhere (robot.store), never on this path.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from typing import Any, Callable

import gevent

from callbot.events import AudioEvent
from callbot.config import Settings
from callbot.esl.protocol import EslEvent
from callbot.robot.call.queue import CallItem, CallQueue, classify
from callbot.robot.call.amd import LISTEN_TICK_S, PLAYBACK_MARGIN_S, AmdActions
from callbot.robot.call.record import (
    CallEnded, CallRecord, MachineAnswered, Playing, Switch, prompt_text_command, stream_url,
)
from callbot.robot.esl.client import EslDisconnected
from callbot.robot.esl.commands import (
    audio_stream_start_command, break_command, broadcast_command, check_uuid, kill_command, originate_command,
)
from callbot.robot.call.reply import ReplyCollector
from callbot.robot.scenario.loader import Scenario, Step
from callbot.robot.call.states import CallState, CallStateMachine
from callbot.robot.call.timeline import Timeline

log = logging.getLogger(__name__)

DRAIN_S = 1.0  # after the hang-up, how long (call time) to keep recording the channel's last events


class CallSession(AmdActions):
    """Runs one call against ``switch`` following ``scenario``; :meth:`run` returns its CallRecord."""

    def __init__(self, switch: Switch, scenario: Scenario, settings: Settings, destination: str, *,
                 audio_url: str | None, call_uuid: str | None = None,
                 on_entry: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.switch = switch
        self.scenario = scenario
        self.settings = settings
        self.cfg = settings.robot
        self.speed = self.cfg.speed
        self.uuid = check_uuid(call_uuid or str(uuidlib.uuid4()))
        self.audio_url = audio_url
        self.queue = CallQueue(self.cfg.queue_max)
        self.sm = CallStateMachine(self.uuid)
        self.timeline = Timeline(speed=self.speed, on_entry=on_entry)
        self.record = CallRecord(self.uuid, destination, scenario.name, self.timeline)
        self.playing: Playing | None = None
        self.answered = False
        self.dial_failure: str | None = None
        self.stream_up = False
        self.audio_seen = False
        self.reply = ReplyCollector(self.speed, max(self.cfg.final_wait_s / self.speed, self.cfg.final_wait_min_wall_s))
        self._esl_back = True
        self._hangup_complete = False
        self._timers: list[gevent.Greenlet] = []

    # ---- the call ----------------------------------------------------------------------------

    def run(self) -> CallRecord:
        """Place and run the call to the end. Never raises for call-level trouble: it is in the record."""
        try:
            self.switch.route(self.uuid, self._on_esl)
            try:
                self._dial()
                self._answered()
                try:
                    self._script()
                except MachineAnswered:
                    self._voicemail()
                self._hang_up("scenario finished")
            except CallEnded:
                pass
            except Exception as exc:  # ESL errors and bugs: record them, hang up, never leave a call open
                log.exception("call failed", extra={"call_uuid": self.uuid})
                self.flag("error", error=f"{type(exc).__name__}: {exc}")
                self.record.disposition = self.record.disposition or "error"
                self._try_hang_up()
        finally:
            self._finish()
        return self.record

    def _dial(self) -> None:
        dial_s = self.cfg.dial_timeout_s
        cmd = originate_command(self.uuid, self.record.destination,
                                {"ignore_early_media": True, "originate_timeout": int(dial_s)})
        self._robot("originate", destination=self.record.destination)
        _, waiter = self.switch.bgapi_async(cmd, timeout=dial_s / self.speed + self.settings.esl.command_timeout_s)
        waiter.rawlink(lambda result: self.queue.put(CallItem("job", result)))
        if not self._wait(lambda: self.answered or self.dial_failure is not None, dial_s + 5):
            self.dial_failure = self.dial_failure or "no_answer_timeout"
        if not self.answered:
            self.record.disposition = (self.dial_failure or "failed").lower()
            raise CallEnded()

    def _answered(self) -> None:
        self._go(CallState.ANSWERED, "CHANNEL_ANSWER")
        streaming = self._start_stream()
        self._go(CallState.AMD, "stream started")
        self._start_amd(streaming)

    def _script(self) -> None:
        name: str | None = self.scenario.start
        while name is not None:
            name = self._run_step(self.scenario.step(name))

    def _run_step(self, step: Step) -> str | None:
        self.reply.reset()  # a reply belongs to one step
        if step.disposition is not None:  # decided: a hang-up during the goodbye does not change it
            self.record.disposition = step.disposition
        barged = self._play(step, cause=f"step {step.name}") if step.prompt else False
        if step.branches or (barged and step.next):
            outcome, text = self._listen(step)
            self.record.replies.append({"step": step.name, "outcome": outcome, "text": text})
            self._robot("reply", step=step.name, outcome=outcome, text=text)
            return step.branch(outcome) if step.branches else step.next
        return None if step.disposition is not None else step.next

    # ---- prompts and barge-in ----------------------------------------------------------------

    def _play(self, step: Step, cause: str) -> bool:
        """Play the step's prompt to its end or to a barge-in; True when the caller barged in."""
        assert step.prompt is not None
        self._go(CallState.PLAYING, cause)
        if self.stream_up and step.text:
            self._api(prompt_text_command(self.uuid, step.text), what="prompt_text")
        self.playing = Playing(step, str(step.prompt))
        reply = self._api(broadcast_command(self.uuid, str(step.prompt)), what="broadcast")
        self._robot("broadcast", step=step.name, file=step.prompt.name, path=str(step.prompt),
                    barge_in=step.barge_in, reply=reply.strip())
        if not reply.startswith("+OK"):
            raise RuntimeError(f"uuid_broadcast of {step.prompt} refused: {reply.strip()}")
        if not self._wait(lambda: self.playing is not None and self.playing.stopped,
                          step.duration_s + PLAYBACK_MARGIN_S):
            self.flag("playback_timeout", step=step.name)
        barged = self.playing.break_sent
        self.playing = None
        return barged

    def _on_barge_in(self, event: AudioEvent, item: CallItem) -> None:
        playing = self.playing
        act = (playing is not None and not playing.stopped and not playing.break_sent and playing.step.barge_in
               and self.sm.state is CallState.PLAYING)
        if act:
            assert playing is not None
            playing.break_sent = True
            queued_ms = round((time.monotonic() - item.t_wall) * 1000, 3)  # dispatcher -> here, wall ms
            reply = self._api(break_command(self.uuid), what="break")
            self._audio(event)
            self._robot("uuid_break", reply=reply.strip(), step=playing.step.name, queued_ms=queued_ms)
        else:
            self._audio(event)
            reason = "not playing" if playing is None else "barge-in off for this prompt" \
                if not playing.step.barge_in else "already breaking"
            self._robot("barge_in_ignored", reason=reason)

    # ---- listening ---------------------------------------------------------------------------

    def _listen(self, step: Step) -> tuple[str, str]:
        """Wait for the reply and judge it: (outcome, text). Outcomes: an intent, unknown or silence."""
        self._go(CallState.LISTENING, f"prompt {step.name} ended")
        window = step.listen_s or self.cfg.listen_timeout_s
        started = time.monotonic()
        self._wait(lambda: self.reply.complete(time.monotonic(), started, window, self.cfg.max_reply_s),
                   self.cfg.max_reply_s + window, tick=LISTEN_TICK_S / self.speed)
        return self.reply.outcome(self.scenario.intents.match)

    # ---- hanging up --------------------------------------------------------------------------

    def _hang_up(self, cause: str) -> None:
        if not self.sm.live:
            return
        self._go(CallState.HANGING_UP, cause)
        self._api(kill_command(self.uuid), what="kill")
        if not self._wait(lambda: False, self.cfg.hangup_wait_s):
            self.flag("no_hangup_event", note=f"no CHANNEL_HANGUP {self.cfg.hangup_wait_s} s after uuid_kill")

    def _try_hang_up(self) -> None:
        if self.sm.live or self.sm.state is CallState.HANGING_UP:
            try:
                self.switch.api(kill_command(self.uuid), timeout=self.settings.esl.command_timeout_s)
            except Exception as exc:  # the switch may be gone too; the record says so
                self.flag("hangup_failed", error=str(exc))

    def _finish(self) -> None:
        for timer in self._timers:
            timer.kill(block=False)
        if not self.sm.ended:
            self._go(CallState.HANGUP, "call over")
        if self.answered:
            self._drain()
        self._go(CallState.DONE, "result recorded")
        if self.record.disposition is None:
            self.record.disposition = "hung_up" if self.record.hangup_by == "callee" else "incomplete"
        try:
            self.switch.unroute(self.uuid)
        except Exception as exc:  # e.g. the client was stopped first
            log.warning("unroute failed", extra={"call_uuid": self.uuid, "error": str(exc)})

    def _drain(self) -> None:
        """Record what the switch still says about the channel (PLAYBACK_STOP after a hang-up) until it is destroyed."""
        try:
            self._wait(lambda: self._hangup_complete, DRAIN_S)
        except (CallEnded, MachineAnswered):
            pass

    # ---- inbound events ----------------------------------------------------------------------

    def _on_esl(self, event: EslEvent) -> None:
        """Dispatcher callback: classify and queue; never blocks, never does the work itself."""
        self.queue.put(classify(event, self.uuid, time.monotonic()))

    def _handle(self, item: CallItem) -> None:
        if item.kind == "barge_in":
            self._on_barge_in(item.data, item)
        elif item.kind == "audio":
            self._on_audio(item.data)
        elif item.kind == "hangup":
            self._on_hangup(item.data)
        elif item.kind == "switch":
            self._on_switch(item.data)
        elif item.kind == "job":
            self._on_job(item.data)
        elif item.kind == "audio_text":
            event, problem = item.data
            self._switch_row(event, "audio_text_ignored", problem=problem, body=(event.body or "")[:200])
        elif item.kind == "amd_deadline":
            self._amd_deadline()
        elif item.kind == "no_audio_check" and not self.audio_seen and self.stream_up:
            note = ("connected, but no audio reached the audio server (with amd=on it reports within 2.5 s of "
                    "any audio, silence included)" if self.cfg.act_on_amd else
                    "connected, but no audio event yet: no audio reached the server, or the caller is silent")
            self.flag("stream_no_audio_events", seconds=self.cfg.no_audio_flag_s, note=note)

    def _on_audio(self, event: AudioEvent) -> None:
        self.audio_seen = True
        self._audio(event)
        self.reply.feed(event, time.monotonic())
        kind = event.type
        if kind == "amd":
            self._on_amd(event.result, event.cause)  # type: ignore[attr-defined]
        elif kind == "beep":
            self._beeped = True
        elif kind in ("speech_stopped", "speech_short"):
            self._speech_end_wall = time.monotonic()
        elif kind == "error":
            self.flag("audio_server_error", code=event.code)  # type: ignore[attr-defined]

    def _on_switch(self, event: EslEvent) -> None:
        key = event.key
        if key == "CHANNEL_ANSWER" and not self.answered:
            self.answered = True
            self.timeline.mark_answer(_stamp(event))
        elif key == "PLAYBACK_START":
            self._switch_row(event, key, file=_file_name(event))
            return
        elif key == "PLAYBACK_STOP":
            played = event.get("variable_playback_ms")
            status = event.get("Playback-Status")
            if self.playing is not None and event.get("Playback-File-Path") == self.playing.file:
                self.playing.stopped, self.playing.status = True, status
                self.playing.played_ms = int(played) if played and played.isdigit() else None
            self._switch_row(event, key, file=_file_name(event), status=status,
                             played_ms=int(played) if played and played.isdigit() else None)
            return
        elif key == "CHANNEL_HANGUP_COMPLETE":
            self._hangup_complete = True
        elif key == "MEDIA_BUG_START" and self.timeline.stream_offset_s is None:
            stamp, answer = _stamp(event), self.timeline.answer_us
            if stamp is not None and answer is not None:
                self.timeline.stream_offset_s = (stamp - answer) / 1e6
        elif key == "mod_audio_stream::connect":
            self.stream_up = True
            self._timers.append(gevent.spawn_later(self.cfg.no_audio_flag_s / self.speed, self.queue.put,
                                                   CallItem("no_audio_check")))
        elif key in ("mod_audio_stream::error", "mod_audio_stream::disconnect"):
            self.stream_up = False
            self._switch_row(event, key, body=event.body)
            self.flag("audio_stream_lost" if self.audio_seen else "audio_unreachable",
                       note="the call goes on without barge-in", body=event.body)
            return
        elif key in ("ESL_DISCONNECTED", "ESL_RECONNECTED"):
            self._esl_back = key == "ESL_RECONNECTED"
            self.flag(key.lower(), **{k: v for k, v in event.headers if k in ("Reason", "Outage-Seconds")})
            return
        self._switch_row(event, key)

    def _on_hangup(self, event: EslEvent) -> None:
        self.record.hangup_cause = event.get("Hangup-Cause") or event.get("Reason")
        if self.sm.state is CallState.HANGING_UP:
            self.record.hangup_by = "robot"
        elif event.name == "CHANNEL_GONE":
            self.record.hangup_by = "switch"
            self.flag("ended_during_esl_outage")
        else:
            self.record.hangup_by = "callee" if self.answered else "switch"
        if not self.answered and self.record.disposition is None:
            self.record.disposition = (self.record.hangup_cause or "failed").lower()
        self._switch_row(event, event.name, cause=self.record.hangup_cause)
        if self.playing is not None and not self.playing.stopped:
            self._robot("prompt_cut_by_hangup", step=self.playing.step.name)
        if not self.sm.ended:
            self._go(CallState.HANGUP, f"{event.name} ({self.record.hangup_cause})")
        raise CallEnded()

    def _on_job(self, result: Any) -> None:
        if not result.successful():
            self._robot("originate_job_lost", error=str(result.exception))
            return  # connection dropped: the reconnect markers tell us whether the call still exists
        body = (result.value or "").strip()
        self._robot("originate_result", body=body)
        if body.startswith("-ERR"):
            self.dial_failure = body[4:].strip() or "failed"

    # ---- helpers -----------------------------------------------------------------------------

    def _wait(self, done: Callable[[], bool], timeout_call_s: float, tick: float | None = None) -> bool:
        """Handle queued items until ``done()`` or ``timeout_call_s`` of call time; False on timeout."""
        deadline = time.monotonic() + timeout_call_s / self.speed
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            item = self.queue.get(min(remaining, tick) if tick else remaining)
            if item is not None:
                self._handle(item)
        return True

    def _api(self, cmd: str, what: str) -> str:
        """One API command; if the ESL link is down, wait for the reconnect (or the call's end) and retry once."""
        try:
            return self.switch.api(cmd, timeout=self.settings.esl.command_timeout_s)
        except EslDisconnected as exc:
            self._esl_back = False
            self._robot("api_deferred", command=what, error=str(exc))
            if not self._wait(lambda: self._esl_back, self.settings.esl.reconnect_max_s * 3 * self.speed):
                raise
            return self.switch.api(cmd, timeout=self.settings.esl.command_timeout_s)

    def _start_stream(self) -> bool:
        """Ask the switch to stream the callee to the audio server; True when it accepted."""
        if not self.audio_url:
            self.flag("audio_disabled", note="no audio server configured: no barge-in, no transcripts")
            return False
        url = stream_url(self.audio_url, self.uuid, self.settings, lang=self.scenario.language)
        cmd = audio_stream_start_command(self.uuid, url, "mono", "16k" if self.cfg.stream_rate == 16000 else "8k",
                                         {"call": self.uuid, "scenario": self.scenario.name})
        reply = self._api(cmd, what="stream_start")
        self._robot("stream_start", url=url.split("token=")[0], reply=reply.strip())
        if not reply.startswith("+OK"):
            self.flag("audio_unreachable", note="uuid_audio_stream start refused; the call goes on without barge-in")
        return reply.startswith("+OK")

    def _go(self, target: CallState, cause: str) -> None:
        move = self.sm.go(target, cause)
        self.record.states.append(target.value)
        self._robot("state", source_state=move.source.value, state=target.value, cause=cause)

    def _robot(self, type_: str, **fields: Any) -> None:
        self.timeline.add("robot", type_, **fields)

    def _audio(self, event: AudioEvent) -> None:
        fields = {k: v for k, v in vars(event).items() if k != "t"}
        self.timeline.add("audio", event.type, stream_t=event.t, **fields)

    def _switch_row(self, event: EslEvent, type_: str, **fields: Any) -> None:
        self.timeline.add("switch", type_, switch_us=_stamp(event), **fields)

    def flag(self, name: str, **fields: Any) -> None:
        """Mark the call (record.flags) and log it to the timeline: something about it needs a look."""
        if name not in self.record.flags:
            self.record.flags.append(name)
        self._robot("flag", flag=name, **fields)
        log.warning("call flag", extra={"call_uuid": self.uuid, "flag": name})


def _stamp(event: EslEvent) -> int | None:
    value = event.get("Event-Date-Timestamp")
    return int(value) if value and value.isdigit() else None


def _file_name(event: EslEvent) -> str:
    path = event.get("Playback-File-Path") or ""
    return path.rsplit("/", 1)[-1]
