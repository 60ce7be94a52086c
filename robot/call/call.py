"""One call as a sans-I/O object: events with their call time in, ESL commands and the next deadline out.

Like h11's ``Connection``: :meth:`Call.handle` takes one event (a switch event, an audio event,
the reply to a command it asked for, or :class:`Deadline`) and the call-clock time it happened at;
:meth:`Call.commands` drains what to send; :meth:`Call.next_deadline` says when to wake it if
nothing happens first. It never reads a clock, sleeps, spawns or touches a socket: the shell
(:mod:`callbot.robot.shell.session`) does, so a call runs the same live, at N× against simswitch,
or in a test with a fake clock.
"""

from __future__ import annotations

import logging
from typing import Any

from callbot.config import Settings
from callbot.events import (
    Amd, AudioEvent, BargeIn, Beep, Error, Final, Partial, SpeechShort, SpeechStarted, SpeechStopped,
)
from callbot.robot.call.backchannel import BackchannelFilter
from callbot.robot.call.commands import Api, Bgapi, Command
from callbot.robot.call.events import (
    Answered, ApiFailed, ApiReply, AudioTextIgnored, Deadline, Dtmf, EslDown, EslUp, HangupComplete, HungUp,
    MediaBugStarted, OriginateResult, OtherSwitchEvent, Parked, PlaybackStarted, PlaybackStopped, ShellError,
    StreamConnected, StreamLost,
)
from callbot.robot.call.record import CallRecord, Playing
from callbot.robot.call.reply import ReplyCollector
from callbot.robot.call.states import CallState, CallStateMachine
from callbot.robot.call.timeline import Timeline
from callbot.robot.esl.commands import (
    audio_stream_start_command, audio_stream_stop_command, break_command, broadcast_command, check_uuid,
    kill_command, originate_command, pause_toggle_command,
)
from callbot.robot.scenario.intents import OPT_OUT_INTENT, OPTIONAL_INTENTS
from callbot.robot.scenario.loader import Scenario, Step, acted_verdict
from callbot.audio_format import FRAME_MS
from callbot.stream import ANSWERED_AGO_LIMIT, AnsweredMarker, PlaybackMarker, marker_command, robot_stream_url

log = logging.getLogger(__name__)

S = CallState
# Hang-up causes that the switch (or its operator) chose, not the callee.
SWITCH_CAUSES = frozenset({"SYSTEM_SHUTDOWN", "ALLOTTED_TIMEOUT", "MEDIA_TIMEOUT", "CRASH", "MANAGER_REQUEST",
                           "LOSE_RACE", "NORMAL_TEMPORARY_FAILURE"})


class Call:
    """One outbound call following ``scenario``: dial, stream, AMD, prompts, barge-in, replies, hang-up."""

    def __init__(self, call_uuid: str, destination: str, scenario: Scenario, settings: Settings, *,
                 audio_url: str | None, timeline: Timeline | None = None) -> None:
        self.uuid = check_uuid(call_uuid)
        self.scenario = scenario
        self.settings = settings
        self.cfg = settings.robot
        self.audio_url = audio_url
        self.record = CallRecord(self.uuid, destination, scenario.name, timeline or Timeline())
        self.sm = CallStateMachine(self.uuid)
        self.reply = ReplyCollector(self.cfg.final_wait_s)
        self.now = 0.0
        self._out: list[Command] = []
        self._deadlines: dict[str, float] = {}
        self._sent: dict[str, Command] = {}  # last command per tag, to resend after an ESL outage
        self._deferred: list[Command] = []
        self.playing: Playing | None = None
        self.step: Step | None = None
        self.answered = False
        self.parked = False
        self.script_started = False
        self.stream_up = False
        self.stream_ever_up = False
        self.stream_restarts = 0
        self.audio_seen = False
        self.amd_settled = False
        self.machine_pending = False  # AMD said machine while a prompt played: act once it has stopped
        self.opting_out = False  # the callee opted out (a key or the stop intent): the opt-out step ends the call
        self.opt_out_pending = False  # ... and a prompt was playing: the step follows once it has stopped
        self.message_playing = False  # the voicemail message is on the channel
        self.beeped = False
        self.beep_wait_from: float | None = None
        self.listen_started: float | None = None
        self.listen_window_s = 0.0
        self.backchannel = BackchannelFilter(scenario.language, self.cfg.backchannel_words)
        self.partial_text = ""  # the caller's words so far in this utterance (pause mode's backchannel test)
        self.max_call_s = scenario.max_call_s or self.cfg.max_call_s
        self.audio_gone = False  # lost again after robot.stream_restarts restarts: on_audio_lost applies
        self.stream_index = 0  # which stream the audio events come from (0, then one more per restart)
        self.said_answered_ago_ms: int | None = None  # what the first stream's URL told the audio server

    # ---- the sans-I/O surface ----------------------------------------------------------------

    def start(self, now: float) -> None:
        """Dial: the originate goes out with ``bgapi`` (the uuid is ours, so events can be routed first)."""
        self.now = now
        self._event = type(None)
        dial_s = self.cfg.dial_timeout_s
        cmd = originate_command(self.uuid, self.record.destination,
                                {"ignore_early_media": True, "originate_timeout": int(dial_s)},
                                max_call_s=self.max_call_s)  # the switch ends the call even if we die
        self._robot("originate", destination=self.record.destination)
        self._send(Bgapi("originate", cmd, dial_s + self.settings.esl.command_timeout_s))
        self._deadlines["dial"] = now + dial_s + self.cfg.dial_grace_s
        self._deadlines["max_call"] = now + dial_s + self.max_call_s

    def handle(self, event: object, now: float) -> None:
        """Take one event that happened at call-clock ``now``; may queue commands and move deadlines."""
        self.now = max(self.now, now)
        if self.sm.state is S.DONE:
            return
        self._event = type(event)
        match event:
            case BargeIn():
                self._on_barge_in(event)
            case AudioEvent():
                self._on_audio(event)
            case Answered():
                self._on_answer(event)
            case Parked():
                self._switch_row(event, "CHANNEL_PARK")
                self.parked = True
                self._maybe_start_script()
            case PlaybackStarted():
                self._on_playback_start(event)
            case PlaybackStopped():
                self._on_playback_stop(event)
            case HungUp():
                self._on_hangup(event)
            case HangupComplete():
                self._switch_row(event, "CHANNEL_HANGUP_COMPLETE")
                if self.sm.state is S.HANGUP:
                    self._done()
            case MediaBugStarted():
                self._switch_row(event, "MEDIA_BUG_START")
                tl = self.record.timeline
                if event.switch_us is not None and tl.answer_us is not None:
                    offset = (event.switch_us - tl.answer_us) / 1e6
                    if self.stream_index == 0 and tl.stream_offset_s is None:
                        tl.stream_offset_s = offset
                        self._correct_answered_ago(round(offset * 1000))
                    elif self.stream_index > 0:
                        tl.later_offsets.setdefault(self.stream_index, offset)
            case StreamConnected():
                self._on_stream_connected(event)
            case StreamLost():
                self._on_stream_lost(event)
            case Dtmf():
                self._switch_row(event, "DTMF", digit=event.digit)
                self._on_dtmf(event.digit)
            case AudioTextIgnored():
                self._switch_row(event, "audio_text_ignored", problem=event.problem, body=event.body[:200])
            case OtherSwitchEvent():
                self._switch_row(event, event.name)
            case OriginateResult():
                self._on_originate_result(event)
            case ApiReply():
                self._on_api_reply(event)
            case ApiFailed():
                self._on_api_failed(event)
            case EslDown():
                self._flag("esl_disconnected", reason=event.reason)
            case EslUp():
                self._on_esl_up(event)
            case Deadline():
                self._on_deadlines()
            case ShellError(error=error):
                self._fail(error)
            case _:
                raise TypeError(f"call {self.uuid}: no handler for {type(event).__name__}")
        if isinstance(event, (AudioEvent, Deadline, StreamLost)):
            self._check_listening()

    def commands(self) -> list[Command]:
        """The commands to send now, in order; the shell answers each with ApiReply/ApiFailed/OriginateResult."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """The call time at which :class:`Deadline` must be handled if nothing else happens first."""
        return min(self._deadlines.values()) if self._deadlines and not self.done else None

    @property
    def done(self) -> bool:
        return self.sm.state is S.DONE

    def _fail(self, error: str) -> None:
        self._flag("error", error=error)
        self.record.disposition = self.record.disposition or "error"
        if self.sm.live:
            self._hang_up("error")
        elif not self.sm.ended:
            self._end("error")

    # ---- dialing and answer --------------------------------------------------------------------

    def _on_originate_result(self, event: OriginateResult) -> None:
        if event.error is not None:
            self._robot("originate_job_lost", error=event.error)
            return  # connection dropped: the reconnect markers tell whether the call still exists
        body = (event.body or "").strip()
        self._robot("originate_result", body=body)
        if body.startswith("-ERR") and not self.answered:
            self.record.disposition = self.record.disposition or (body[4:].strip() or "failed").lower()
            self._end(f"originate failed ({body})")

    def _on_answer(self, event: Answered) -> None:
        if self.answered:
            return
        self.answered = True
        self.record.timeline.mark_answer(self.now, event.switch_us)
        self._switch_row(event, "CHANNEL_ANSWER")
        self._go(S.ANSWERED, "CHANNEL_ANSWER")
        self._deadlines.pop("dial", None)
        self._deadlines["max_call"] = self.now + self.max_call_s
        self._deadlines["park"] = self.now + self.cfg.park_wait_s
        if self.audio_url:
            self._start_stream("stream_start")
        else:
            self._flag("audio_disabled", note="no audio server configured: no barge-in, no transcripts")
            self._stream_decided(False)

    def _stream_decided(self, streaming: bool) -> None:
        """The stream was started (or not): the AMD step begins, alongside the first prompt."""
        self._go(S.AMD, "stream started" if streaming else "no audio stream")
        if self.cfg.act_on_amd and streaming:
            self._robot("amd_pending", note="AMD runs alongside the first prompt", deadline_s=self.cfg.amd_wait_s)
            self._deadlines["amd"] = self.now + self.cfg.amd_wait_s
        else:
            self.amd_settled = True
            why = "no audio stream" if self.cfg.act_on_amd else "robot.act_on_amd=false"
            self._robot("amd_hook", result="human", note=f"{why}: every answered call is treated as human; "
                        "amd is null unless the audio server sends an amd event")
        self._maybe_start_script()

    def _maybe_start_script(self) -> None:
        """The first prompt waits for CHANNEL_PARK: on the real switch a broadcast sent before it is lost."""
        if self.sm.state is S.AMD and self.parked and not self.script_started:
            self.script_started = True
            self._deadlines.pop("park", None)
            if self.opting_out:  # a key pressed before the first prompt
                self._opt_out_ending()
            else:
                self._enter_step(self.scenario.start)

    # ---- the script ----------------------------------------------------------------------------

    def _enter_step(self, name: str | None) -> None:
        if name is None:
            self.record.scenario_completed = True
            self._hang_up("scenario finished")
            return
        step = self.scenario.step(name)
        self.step = step
        self.reply.reset()  # a reply belongs to one step
        if step.disposition is not None:  # decided: a hang-up during the goodbye does not change it
            self.record.disposition = step.disposition
        if step.prompt is not None:
            self._play(step, cause=f"step {step.name}")
        else:
            self._after_prompt(barged=False)

    def _play(self, step: Step, cause: str) -> None:
        assert step.prompt is not None
        self._go(S.PLAYING, cause)
        self.playing = Playing(step, str(step.prompt))
        self._robot("broadcast", step=step.name, file=step.prompt.name, path=str(step.prompt), barge_in=step.barge_in)
        self._send(Api("broadcast", broadcast_command(self.uuid, str(step.prompt))))
        self._deadlines["playback"] = self.now + step.duration_s + self.cfg.playback_margin_s

    def _on_playback_start(self, event: PlaybackStarted) -> None:
        self._switch_row(event, "PLAYBACK_START", file=_name(event.path))
        playing = self.playing
        if playing is None or event.path != playing.path or playing.started_at is not None:
            return
        playing.started_at, playing.started_us = self.now, event.switch_us
        if playing.break_sent:  # broken before it started, but it had started: its STOP follows
            self._deadlines["playback"] = self.now + self.cfg.playback_margin_s
        if self.stream_up:
            marker = PlaybackMarker.start(self._prompt_file(playing), playing.step.text)
            self._send(Api("marker", marker_command(self.uuid, marker)))

    def _on_playback_stop(self, event: PlaybackStopped) -> None:
        playing = self.playing
        heard_ms = None
        if playing is not None and event.path == playing.path:
            heard_ms = _heard_ms(playing.started_us, event.switch_us, event.reported_ms)
        self._switch_row(event, "PLAYBACK_STOP", file=_name(event.path), status=event.status,
                         played_ms=heard_ms if heard_ms is not None else event.reported_ms,
                         reported_ms=event.reported_ms)
        if playing is None or event.path != playing.path or playing.stopped:
            return
        playing.stopped = True
        if self.stream_up:
            self._send(Api("marker", marker_command(self.uuid, PlaybackMarker("stop"))))
        self._prompt_ended()

    def _prompt_ended(self) -> None:
        playing, self.playing = self.playing, None
        self._deadlines.pop("playback", None)
        if not self.sm.live:
            return
        if self.opt_out_pending:
            self.opt_out_pending = self.message_playing = False
            self._opt_out_ending()
        elif self.machine_pending:
            self.machine_pending = False
            self._voicemail()
        elif self.message_playing:
            self.message_playing = False
            self.record.disposition = self.scenario.voicemail.disposition
            self.record.scenario_completed = True
            self._hang_up("scenario finished")
        else:
            self._after_prompt(barged=playing is not None and playing.break_sent)

    def _after_prompt(self, barged: bool) -> None:
        step = self.step
        assert step is not None
        if self.audio_gone and self.scenario.on_audio_lost == "hangup":
            self._hang_up("audio lost")  # the prompt was let finish: the caller is not cut off mid-sentence
            return
        if not barged:
            self.reply.prompt_finished()  # words said over it do not end the listening window at once
        if step.branches or (barged and step.next):
            self._go(S.LISTENING, f"prompt {step.name} ended")
            self.listen_started = self.now
            self.listen_window_s = step.listen_s or self.cfg.listen_timeout_s
            self._check_listening()
            return
        self._enter_step(None if step.disposition is not None else step.next)

    def _check_listening(self) -> None:
        """In LISTENING: once the reply is complete, judge it and branch; else wake up when it may be."""
        if self.sm.state is not S.LISTENING or self.listen_started is None or self.step is None:
            self._deadlines.pop("listen", None)
            return
        started, window, cap = self.listen_started, self.listen_window_s, self.cfg.max_reply_s
        if not self.reply.complete(self.now, started, window, cap):
            self._deadlines["listen"] = self.reply.next_check(started, window, cap)
            return
        self._deadlines.pop("listen", None)
        step = self.step
        optional = [name for name in OPTIONAL_INTENTS if name in step.branches]  # heard where the step waits on it
        outcome, text = self.reply.outcome(lambda said: self.scenario.intents.match(said, optional))
        self.record.replies.append({"step": step.name, "outcome": outcome, "text": text})
        self._robot("reply", step=step.name, outcome=outcome, text=text)
        self.listen_started = None
        if outcome == OPT_OUT_INTENT:
            self._robot("opt_out", via="intent", step=step.name, text=text)
            self.opting_out = True
            if OPT_OUT_INTENT not in step.branches:  # the scenario says nothing here: its opt-out step
                self._opt_out_ending()
                return
        self._enter_step(step.branch(outcome) if step.branches else step.next)

    # ---- opt-out -------------------------------------------------------------------------------

    def _on_dtmf(self, digit: str) -> None:
        """An opt-out key (``campaign.opt_out_dtmf``) at any moment of the answered call: see :meth:`_opt_out`."""
        keys = self.settings.campaign.opt_out_dtmf
        if keys and digit and digit in keys and self.sm.live and not self.opting_out:
            self._robot("opt_out", via="dtmf", digit=digit)  # the campaign writes DNC on this row, during the call
            self._opt_out()

    def _opt_out(self) -> None:
        """A person opted out: AMD is settled (a key is a person), nothing more is asked, the prompt playing is
        stopped, then the scenario's opt-out step ends the call (a hang-up when it has none)."""
        self.opting_out = True
        if not self.amd_settled:
            self.amd_settled = True
            self._deadlines.pop("amd", None)
            self._robot("amd_hook", result="human", note="opt-out key: a person; AMD is not acted on")
        self.machine_pending = False
        self.listen_started = None
        for name in ("listen", "beep", "beep_quiet"):
            self._deadlines.pop(name, None)
        if not self.script_started:
            return  # the opt-out step comes instead of the first one (_maybe_start_script)
        if self._stop_prompt("opt_out_break"):
            self.opt_out_pending = True
            return
        self._opt_out_ending()

    def _opt_out_ending(self) -> None:
        if self.scenario.opt_out is not None:
            self._enter_step(self.scenario.opt_out)
        else:
            self.record.disposition = "opted_out"
            self._hang_up("opted out")

    # ---- barge-in ------------------------------------------------------------------------------

    def _interruptible(self) -> Playing | None:
        """The prompt a caller may interrupt right now, if any."""
        playing = self.playing
        if (playing is not None and not playing.stopped and not playing.break_sent and playing.step.barge_in
                and self.sm.state is S.PLAYING and not self.message_playing):
            return playing
        return None

    def _on_barge_in(self, event: BargeIn) -> None:
        self.audio_seen = True
        self.reply.feed(event, self.now)
        playing = self._interruptible()
        if playing is not None and playing.paused and playing.step.backchannel \
                and self.backchannel.only_backchannel(self.partial_text):
            self._audio_row(event)
            self._resume(playing, "backchannel", text=self.partial_text)
            return
        if playing is not None:
            playing.break_sent = True
            self._send(Api("break", break_command(self.uuid)))  # first: nothing is written before it goes out
            self._audio_row(event)
            self._robot("uuid_break", step=playing.step.name)
            if playing.started_at is None:
                self._await_stop(playing)
            return
        self._audio_row(event)
        playing = self.playing
        reason = ("not playing" if playing is None or playing.stopped else "barge-in off for this prompt"
                  if not playing.step.barge_in or self.message_playing else "already breaking")
        self._robot("barge_in_ignored", reason=reason)

    def _pause(self, playing: Playing) -> None:
        """Pause mode: the caller's onset silences the prompt at once; the 1.5 s mark decides break or resume."""
        playing.paused = True
        self._send(Api("pause", pause_toggle_command(self.uuid)))
        if self.stream_up:
            self._send(Api("marker", marker_command(self.uuid, PlaybackMarker("pause"))))
        self._robot("prompt_paused", step=playing.step.name)

    def _resume(self, playing: Playing, why: str, **fields: Any) -> None:
        """A second ``uuid_fileman pause`` resumes the prompt at the sample where it stopped."""
        playing.paused = False
        self._send(Api("pause", pause_toggle_command(self.uuid)))
        if self.stream_up:
            self._send(Api("marker", marker_command(self.uuid, PlaybackMarker("resume"))))
        self._robot("prompt_resumed", step=playing.step.name, why=why, **fields)

    # ---- audio events, AMD and the voicemail ----------------------------------------------------

    def _on_audio(self, event: AudioEvent) -> None:
        self.audio_seen = True
        self._audio_row(event)
        self.reply.feed(event, self.now)
        self._pause_mode(event)
        match event:
            case Amd(result=result, cause=cause) if self.stream_index > 0:
                # a restarted stream's AMD judges the middle of the call as if it were its start
                self._robot("amd_ignored", result=result, cause=cause, note="from a restarted stream")
                if not self.amd_settled and self.cfg.act_on_amd:
                    self._settle_amd("notsure", "STREAM_RESTARTED")
            case Amd(result=result, cause=cause):
                if self.record.amd is None:
                    self.record.amd = result
                    if self.cfg.act_on_amd:
                        self._settle_amd(result, cause)
            case Beep():
                self.beeped = True
                if self.sm.state is S.WAIT_BEEP:
                    self._leave_message("beep")
            case SpeechStarted() | SpeechStopped() | SpeechShort() if self.sm.state is S.WAIT_BEEP:
                self._arm_quiet_check()
            case Error(code=code):
                self._flag("audio_server_error", code=code)
            case Final():
                pass

    def _pause_mode(self, event: AudioEvent) -> None:
        """Steps with ``barge_in_mode = "pause"``: pause at the onset, resume when the speech ends short."""
        match event:
            case SpeechStarted():
                self.partial_text = ""
                playing = self._interruptible()
                if playing is not None and playing.step.barge_in_mode == "pause" and not playing.paused:
                    self._pause(playing)
            case Partial(text=text):
                self.partial_text = text
            case SpeechShort() | SpeechStopped():
                playing = self._interruptible()
                if playing is not None and playing.paused:
                    self._resume(playing, "speech ended before the barge-in mark")

    def _settle_amd(self, result: str, cause: str) -> None:
        """Decide human or machine once (verdict or deadline); a machine ends the script."""
        if self.amd_settled:
            self._robot("amd_result", result=result, cause=cause, action="none", note="AMD already settled")
            return
        self.amd_settled = True
        self._deadlines.pop("amd", None)
        vm = self.scenario.voicemail
        machine = acted_verdict(result, vm.on_notsure) == "machine"
        live = self.sm.state in (S.AMD, S.PLAYING, S.LISTENING)
        action = (vm.on_machine if live else "none") if machine else "human"
        self._robot("amd_result", result=result, cause=cause, action=action)
        if machine and live:
            self._machine()

    def _machine(self) -> None:
        """A machine answered: stop the prompt (once: a barge-in may have stopped it already), then act."""
        self.script_started = True
        self.listen_started = None
        if self._stop_prompt("amd_break"):
            self.machine_pending = True
            return
        self._voicemail()

    def _stop_prompt(self, row: str) -> bool:
        """Break the prompt playing, once (a barge-in may have broken it already), and give its PLAYBACK_STOP
        until the playback deadline; True if one was playing (what comes next waits for its stop)."""
        playing = self.playing
        if playing is None or playing.stopped:
            return False
        if not playing.break_sent:
            playing.break_sent = True
            self._send(Api("break", break_command(self.uuid)))
            self._robot(row, step=playing.step.name)
        self._await_stop(playing)
        return True

    def _await_stop(self, playing: Playing) -> None:
        """After its break: wait for the prompt's STOP, or, not started yet, only ``flushed_prompt_wait_s``
        (``uuid_break all`` flushed its queued broadcast: no START or STOP will come)."""
        wait = self.cfg.playback_margin_s if playing.started_at is not None else self.cfg.flushed_prompt_wait_s
        self._deadlines["playback"] = self.now + wait

    def _voicemail(self) -> None:
        """Hang up, or wait for the beep and leave the message (``voicemail.on_no_beep`` when none comes)."""
        vm = self.scenario.voicemail
        self.record.disposition = vm.disposition
        if vm.on_machine == "leave_message" and vm.message:
            self._go(S.WAIT_BEEP, "amd machine")
            if self.beeped:
                self._leave_message("beep already heard")
                return
            self.beep_wait_from = self.now
            self._deadlines["beep"] = self.now + self.cfg.beep_wait_s
            self._arm_quiet_check()
        else:
            self._hang_up("amd machine")

    def _arm_quiet_check(self) -> None:
        """No beep after ``no_beep_silence_s`` of quiet following the greeting means there is none."""
        if self.reply.speaking or self.beep_wait_from is None:
            self._deadlines.pop("beep_quiet", None)
            return
        quiet_from = max(self.beep_wait_from, self.reply.stopped_at or self.beep_wait_from)
        self._deadlines["beep_quiet"] = quiet_from + self.cfg.no_beep_silence_s

    def _no_beep(self) -> None:
        vm = self.scenario.voicemail
        self._robot("no_beep", action=vm.on_no_beep, quiet_s=self.cfg.no_beep_silence_s)
        if vm.on_no_beep == "hangup":
            self.record.disposition = "machine_no_beep"
            self._hang_up("no beep")
        else:
            self._leave_message("no beep")

    def _leave_message(self, cause: str) -> None:
        for name in ("beep", "beep_quiet"):
            self._deadlines.pop(name, None)
        message = self.scenario.voicemail.message
        assert message is not None
        self.step = self.scenario.step(message)
        self.message_playing = True
        self._play(self.step, cause=f"voicemail message ({cause})")

    # ---- the audio stream ------------------------------------------------------------------------

    def _start_stream(self, what: str) -> None:
        assert self.audio_url is not None
        self.said_answered_ago_ms = self._answered_ago_ms()
        url = robot_stream_url(self.audio_url, self.uuid, self.settings, lang=self.scenario.language,
                               answered_ago_ms=self.said_answered_ago_ms)
        cmd = audio_stream_start_command(self.uuid, url, "mono", f"{self.cfg.stream_rate // 1000}k",
                                         {"call": self.uuid, "scenario": self.scenario.name})
        self._robot(what, url=url.split("token=")[0])
        self._send(Api(what, cmd))

    def _correct_answered_ago(self, ago_ms: int) -> None:
        """The switch's stamps put sample 0 ``ago_ms`` after the answer: when the URL said otherwise by a frame
        or more (a busy switch ran the start command late), tell the audio server, so its AMD is timed right."""
        said = self.said_answered_ago_ms
        if said is None or abs(ago_ms - said) < FRAME_MS or not 0 <= ago_ms <= int(ANSWERED_AGO_LIMIT.hi or 0):
            return
        self._robot("answer_offset", said_ms=said, switch_ms=ago_ms)
        self._send(Api("marker", marker_command(self.uuid, AnsweredMarker(ago_ms))))

    def _answered_ago_ms(self) -> int | None:
        """The first stream's ``answered_ago_ms``: how long before this start command the call was answered, in
        call time (mod_audio_stream takes the stream's sample 0 when the command runs); None for a restarted
        stream, whose AMD judges from its own start (the audio before it was heard, not silence).

        The call may hear of the answer late (a busy event socket or robot): the switch's stamps say how late.
        Each switch row keeps its stamp and the call-clock time it was handled; the smallest difference seen
        (the ringing events, as a rule) is the two clocks' offset, and the answer's excess over it is its lag.
        Not counted: the time from here until the switch runs the command (docs/amd.md, "Late streams")."""
        tl = self.record.timeline
        if self.stream_index or tl.answer_at is None:
            return None
        lag = 0.0
        if tl.answer_us is not None:
            offsets = [e.at - e.switch_us / 1e6 for e in tl.entries if e.source == "switch" and e.switch_us]
            if offsets:
                lag = max(0.0, tl.answer_at - tl.answer_us / 1e6 - min(offsets))
        return round((self.now - tl.answer_at + lag) * 1000)

    def _on_stream_connected(self, event: StreamConnected) -> None:
        self._switch_row(event, "mod_audio_stream::connect")
        if self.stream_ever_up and not self.stream_up:
            self._robot("audio_gap_end")
        if self.stream_index and self.record.timeline.answer_at is not None:  # no MEDIA_BUG_START: about now
            self.record.timeline.later_offsets.setdefault(self.stream_index, self.now - self.record.timeline.answer_at)
        self.stream_up = self.stream_ever_up = True
        if not self.audio_seen:
            self._deadlines["no_audio"] = self.now + self.cfg.no_audio_flag_s

    def _on_stream_lost(self, event: StreamLost) -> None:
        self._switch_row(event, event.name, body=event.body)
        was_up, self.stream_up = self.stream_up, False
        self.reply.audio_lost(self.now)  # a caller cut off mid-word must not hold every window open
        if was_up or self.stream_ever_up:
            self._flag("audio_stream_lost", note="barge-in is off until the stream is back", body=event.body)
            self._robot("audio_gap_start")
        else:
            self._flag("audio_unreachable", note="the call goes on without barge-in", body=event.body)
        self._schedule_stream_restart()

    def _schedule_stream_restart(self) -> None:
        """The next restart while the call lasts: after ``stream_restart_backoff_s``, doubling up to ``..._max_s``.

        After ``robot.stream_restarts`` restarts the audio is gone and ``on_audio_lost`` applies: ``hangup``
        tries no more (the call ends after its prompt); ``continue`` keeps restarting at the longest back-off.
        """
        if not self.sm.live or self.audio_url is None:
            return
        if self.stream_restarts >= self.cfg.stream_restarts:
            self._audio_gone()
            if self.scenario.on_audio_lost == "hangup":
                return
        doublings = min(self.stream_restarts, 1000)  # the cap holds long before; 2 ** n stays a finite float
        delay = min(self.cfg.stream_restart_backoff_s * 2 ** doublings, self.cfg.stream_restart_backoff_max_s)
        self._deadlines["stream_restart"] = self.now + delay

    def _audio_gone(self) -> None:
        """Restarts ran out: the scenario's ``on_audio_lost`` says go on without barge-in, or end after the prompt."""
        if self.audio_gone:
            return
        self.audio_gone = True
        self._flag("audio_gone", restarts=self.stream_restarts, action=self.scenario.on_audio_lost)
        if self.scenario.on_audio_lost == "hangup" and self.sm.state is not S.PLAYING:
            self._hang_up("audio lost")

    def _restart_stream(self) -> None:
        """mod_audio_stream keeps its media bug after the server closed: stop (its -ERR ignored), then start."""
        self.stream_restarts += 1
        self.stream_index += 1  # its samples count from 0 again
        self._send(Api("stream_stop", audio_stream_stop_command(self.uuid)))
        self._start_stream("stream_restart")

    # ---- replies to commands -----------------------------------------------------------------------

    def _on_api_reply(self, event: ApiReply) -> None:
        reply = event.reply.strip()
        ok = reply.startswith("+OK")
        match event.what:
            case "stream_start":
                self._robot("stream_start_reply", reply=reply)
                if not ok:
                    self._flag("audio_unreachable", note="uuid_audio_stream start refused; no barge-in", reply=reply)
                self._stream_decided(ok)
            case "stream_restart":
                self._robot("stream_restart_reply", reply=reply, attempt=self.stream_restarts)
                if not ok:
                    self._schedule_stream_restart()
            case "broadcast":
                self._robot("broadcast_reply", reply=reply)
                if not ok and self.sm.live:
                    self._fail(f"uuid_broadcast refused: {reply}")
            case "break":
                self._robot("break_reply", reply=reply)
            case "kill" if not ok:
                self._robot("kill_reply", reply=reply)
            case _:
                pass

    def _on_api_failed(self, event: ApiFailed) -> None:
        self._robot("api_failed", command=event.what, error=event.error, link_down=event.link_down)
        if event.link_down and event.what in ("broadcast", "break", "kill", "stream_start"):
            self._deferred.append(self._sent[event.what])
            self._deadlines["esl_back"] = self.now + self.settings.esl.reconnect_max_s * 3
        elif event.what == "kill":
            self._flag("hangup_failed", error=event.error)
        elif event.what == "stream_start":
            self._stream_decided(False)

    def _on_esl_up(self, event: EslUp) -> None:
        self._flag("esl_reconnected", outage_s=event.outage_s)
        self._deadlines.pop("esl_back", None)
        deferred, self._deferred = self._deferred, []
        for command in deferred:
            self._send(command)

    # ---- hanging up and the end ---------------------------------------------------------------------

    def _hang_up(self, cause: str) -> None:
        if not self.sm.live:
            return
        self._go(S.HANGING_UP, cause)
        self._send(Api("kill", kill_command(self.uuid)))
        self._deadlines["hangup"] = self.now + self.cfg.hangup_wait_s

    def _on_hangup(self, event: HungUp) -> None:
        cause = event.cause
        self.record.hangup_cause = cause
        if self.sm.state is S.HANGING_UP:
            self.record.hangup_by = "robot"
        elif event.gone:
            self.record.hangup_by = "switch"
            self._flag("ended_during_esl_outage")
        elif cause in SWITCH_CAUSES or not self.answered:
            self.record.hangup_by = "switch"
        else:
            self.record.hangup_by = "callee"
        if not self.answered and self.record.disposition is None:
            self.record.disposition = (cause or "failed").lower()
        self._switch_row(event, "CHANNEL_GONE" if event.gone else "CHANNEL_HANGUP", cause=cause)
        if self.playing is not None and not self.playing.stopped:
            self._robot("prompt_cut_by_hangup", step=self.playing.step.name)
        if self.sm.ended:
            return
        self._go(S.HANGUP, f"{'CHANNEL_GONE' if event.gone else 'CHANNEL_HANGUP'} ({cause})")
        self._deadlines.clear()
        if self.answered and not event.gone:
            self._deadlines["drain"] = self.now + self.cfg.drain_s  # PLAYBACK_STOP etc. still come
        else:
            self._done()

    def _end(self, cause: str) -> None:
        """The channel is gone or never came: HANGUP, then DONE."""
        if not self.sm.ended:
            self._go(S.HANGUP, cause)
        self._done()

    def _done(self) -> None:
        self._deadlines.clear()
        if self.record.disposition is None:
            self.record.disposition = "hung_up" if self.record.hangup_by == "callee" else "incomplete"
        self._go(S.DONE, "result recorded")

    # ---- deadlines -----------------------------------------------------------------------------------

    def _on_deadlines(self) -> None:
        due = sorted((t, name) for name, t in self._deadlines.items() if t <= self.now)
        for _, name in due:
            if self._deadlines.pop(name, None) is None or self.done:
                continue  # an earlier one of this batch settled it
            self._deadline(name)

    def _deadline(self, name: str) -> None:
        match name:
            case "dial":
                self.record.disposition = self.record.disposition or "no_answer_timeout"
                self._send(Api("kill", kill_command(self.uuid)))
                self._end("no answer in time")
            case "park":
                self._flag("no_park_event", seconds=self.cfg.park_wait_s, note="no CHANNEL_PARK: prompts may be lost")
                self.parked = True
                self._maybe_start_script()
            case "amd":
                if not self.amd_settled:
                    self._flag("amd_timeout", seconds=self.cfg.amd_wait_s, note="no amd event; treated as notsure")
                    self._settle_amd("notsure", "ROBOT_DEADLINE")
            case "playback":
                playing = self.playing
                if playing is not None and playing.break_sent and playing.started_at is None:
                    self._robot("prompt_flushed", step=playing.step.name)  # broken before it started
                else:
                    self._flag("playback_timeout", step=playing.step.name if playing is not None else None)
                self._prompt_ended()
            case "listen":
                pass  # _check_listening runs after every event
            case "beep" | "beep_quiet":
                if self.sm.state is S.WAIT_BEEP:
                    self._no_beep()
            case "no_audio":
                if not self.audio_seen and self.stream_up:
                    note = ("connected, but no audio reached the audio server (with amd=on it reports within "
                            "2.5 s of any audio, silence included)" if self.cfg.act_on_amd else
                            "connected, but no audio event yet: no audio reached the server, or the caller is silent")
                    self._flag("stream_no_audio_events", seconds=self.cfg.no_audio_flag_s, note=note)
            case "stream_restart":
                if self.sm.live and not self.stream_up:
                    self._restart_stream()
            case "esl_back":
                self._flag("error", error="the ESL link did not come back in time")
                self.record.disposition = self.record.disposition or "error"
                self._end("ESL link lost")
            case "max_call":
                self._flag("max_call_length", seconds=self.max_call_s)
                if self.sm.live:
                    self._hang_up("max_call_s reached")
                else:
                    self._end("max_call_s reached")
            case "hangup":
                self._flag("no_hangup_event", note=f"no CHANNEL_HANGUP {self.cfg.hangup_wait_s} s after uuid_kill")
                self._end("call over")
            case "drain":
                self._done()

    # ---- records --------------------------------------------------------------------------------------

    def _send(self, command: Command) -> None:
        self._sent[command.what] = command
        self._out.append(command)

    def _go(self, target: CallState, cause: str) -> None:
        move = self.sm.go(target, self._event, cause)
        self.record.states.append(target.value)
        self._robot("state", source_state=move.source.value, state=target.value, cause=cause)
        log.debug("call state", extra={"call_uuid": self.uuid, "state": target.value, "cause": cause})

    def _robot(self, type_: str, **fields: Any) -> None:
        self.record.timeline.add("robot", type_, self.now, **fields)

    def _audio_row(self, event: AudioEvent) -> None:
        fields = {k: v for k, v in vars(event).items() if k != "t"}
        self.record.timeline.add("audio", event.type, self.now, stream_t=event.t, stream=self.stream_index, **fields)

    def _switch_row(self, event: Any, type_: str, **fields: Any) -> None:
        self.record.timeline.add("switch", type_, self.now, switch_us=event.switch_us, **fields)

    def _flag(self, name: str, **fields: Any) -> None:
        """Mark the call (record.flags) and log it to the timeline: something about it needs a look."""
        if name not in self.record.flags:
            self.record.flags.append(name)
        self._robot("flag", flag=name, **fields)
        log.warning("call flag", extra={"call_uuid": self.uuid, "flag": name})

    def _prompt_file(self, playing: Playing) -> str:
        """The prompt as the audio server finds it: relative to the shared prompts directory when inside it."""
        prompts = self.settings.prompts.path()
        path = playing.step.prompt
        assert path is not None
        try:
            return path.resolve().relative_to(prompts.resolve()).as_posix()
        except ValueError:
            return path.name


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _heard_ms(start_us: int | None, stop_us: int | None, reported_ms: int | None) -> int | None:
    """How much of the prompt the callee heard: the switch's own PLAYBACK_START→STOP span.

    ``variable_playback_ms`` is the file read-ahead on a real switch (4096 ms where 3.1 s played),
    so it only caps the span."""
    if start_us is None or stop_us is None:
        return reported_ms
    span = max(0, round((stop_us - start_us) / 1000))
    return span if reported_ms is None else min(span, reported_ms)
