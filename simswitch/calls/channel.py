"""One emulated call leg: ringing, answer, park, prompts, the audio stream, hangup, on 20 ms ticks.

All timing is on the switch's global media tick grid (virtual time ``n x 20 ms``): the answer
happens on a tick, so call time 0 is a tick and the callee's sample ``k x 20 ms x rate`` goes out
on call tick ``k``. Every tick does, in order: deliver server text frames that arrived since the
previous tick (``::json``/``::play``), the callee's DTMF digits that are due (a playback
terminator, ``*`` by default, breaks the prompt), advance the prompt queue (a ``uuid_break`` ends
the file here, on the next frame after it arrived), then capture and send this tick's audio.

The A leg parks ``PARK_DELAY_S`` after the answer (after the originate's BACKGROUND_JOB, as
captured); a ``uuid_broadcast`` that arrives before CHANNEL_PARK is lost, as on the real switch
(``+OK Message sent``, and nothing ever plays).
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from typing import Any

from callbot.simswitch.calls.callees import CalleeSpec
from callbot.simswitch.calls.cdr import cdr_variables
from callbot.simswitch.calls.truth import CallTruth
from callbot.simswitch.calls.voice import CalleeVoice
from callbot.simswitch.clock import MEDIA_TICK_S
from callbot.simswitch.host import SwitchHost
from callbot.simswitch.media.audio_stream import AudioStream
from callbot.simswitch.media.playback import PLAY_RATE, Prompt, PromptQueue
from callbot.simswitch.media.ws_frames import WsUrl

DTMF_DURATION = 2000  # samples at 8 kHz reported in DTMF-Duration (SWITCH_DEFAULT_DTMF_DURATION)
PARK_DELAY_S = 0.003  # CHANNEL_ANSWER to CHANNEL_PARK (captured: 0-3 ms, a client's reply to a command sent on ANSWER in between)

Q850 = {"NORMAL_CLEARING": "16", "USER_BUSY": "17", "NO_USER_RESPONSE": "18", "NO_ANSWER": "19",
        "CALL_REJECTED": "21", "UNALLOCATED_NUMBER": "1", "NO_ROUTE_DESTINATION": "3",
        "NORMAL_TEMPORARY_FAILURE": "41", "ORIGINATOR_CANCEL": "487", "MANAGER_REQUEST": "0"}
_STATES = {"CS_INIT": "2", "CS_ROUTING": "3", "CS_EXECUTE": "4", "CS_HANGUP": "10", "CS_REPORTING": "11",
           "CS_DESTROY": "12"}


class Channel:
    """An outbound leg to a simulated callee."""

    def __init__(self, switch: SwitchHost, uuid: str, spec: CalleeSpec, variables: dict[str, str],
                 dial: str, timeout_s: float, session_id: int) -> None:
        self.switch = switch
        self.uuid = uuid
        self.spec = spec
        self.name = dial.split("?", 1)[0]
        now = switch.clock.now()
        self.created_vt = now
        self.created_us = switch.clock.epoch_us(now)
        self.answered_us = 0
        self.hangup_us = 0
        self.answer_vt = now + spec.answer_delay_s
        self.timeout_vt = now + timeout_s
        self.answered_tick: int | None = None
        self.state, self.call_state, self.answer_state = "CS_INIT", "DOWN", "ringing"
        self.hangup_cause: str | None = None
        self.hungup = False
        self.teardown_pending = False
        self.parked = False
        self._dtmf_sent = 0  # how many of spec.dtmf went out
        self._stream_at_park: tuple[WsUrl, str, int, str | None] | None = None  # started between answer and park
        self.application = ""
        self.application_data = ""
        self.truth = CallTruth(uuid, now)
        s = switch.settings
        self.prompts = PromptQueue(max_queue=s.max_queued_prompts, max_wav_s=s.max_wav_s,
                                   start_s=s.broadcast_start_ms / 1000)
        self.stream: AudioStream | None = None
        self._held: list[Any] | None = None  # events made, not yet published (spec.event_delay_s after the answer)
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.voice = CalleeVoice(spec.wav, s.max_wav_s, uuid)
        self.variables: dict[str, str] = {
            "direction": "outbound", "is_outbound": "true", "session_id": str(session_id),
            "read_codec": "L16", "read_rate": str(PLAY_RATE), "write_codec": "L16", "write_rate": str(PLAY_RATE),
            "channel_name": self.name, "uuid": uuid, "call_uuid": uuid, **variables,
            "originate_early_media": "false", "originate_endpoint": "fixture",
        }

    # ---- events and truth -------------------------------------------------------------------

    def data_headers(self) -> list[tuple[str, str]]:
        """switch_channel_event_set_basic_data + the caller profile, in FreeSWITCH's order."""
        h = [("Channel-State", self.state), ("Channel-Call-State", self.call_state),
             ("Channel-State-Number", _STATES.get(self.state, "4")), ("Channel-Name", self.name),
             ("Unique-ID", self.uuid), ("Call-Direction", "outbound"), ("Presence-Call-Direction", "outbound"),
             ("Channel-HIT-Dialplan", "true" if self.parked else "false"), ("Channel-Call-UUID", self.uuid),
             ("Answer-State", self.answer_state)]
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        h += [("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", str(PLAY_RATE)),
              ("Channel-Read-Codec-Bit-Rate", "128000"), ("Channel-Write-Codec-Name", "L16"),
              ("Channel-Write-Codec-Rate", str(PLAY_RATE)), ("Channel-Write-Codec-Bit-Rate", "128000"),
              ("Caller-Direction", "outbound"), ("Caller-Logical-Direction", "outbound"),
              ("Caller-Dialplan", "xml"), ("Caller-Caller-ID-Name", self.variables.get("origination_caller_id_name", "Outbound Call")),
              ("Caller-Caller-ID-Number", self.variables.get("origination_caller_id_number", "0000000000")),
              ("Caller-Orig-Caller-ID-Number", "0000000000"), ("Caller-Callee-ID-Name", "Outbound Call"),
              ("Caller-Callee-ID-Number", self.spec.destination),
              ("Caller-ANI", "0000000000"), ("Caller-Destination-Number", self.spec.destination),
              ("Caller-Unique-ID", self.uuid), ("Caller-Source", "mod_simswitch"), ("Caller-Context", "default"),
              ("Caller-Channel-Name", self.name), ("Caller-Profile-Index", "1"),
              ("Caller-Profile-Created-Time", str(self.created_us)),
              ("Caller-Channel-Created-Time", str(self.created_us)),
              ("Caller-Channel-Answered-Time", str(self.answered_us)),
              ("Caller-Channel-Progress-Time", str(self.created_us)), ("Caller-Channel-Progress-Media-Time", "0"),
              ("Caller-Channel-Hangup-Time", str(self.hangup_us)), ("Caller-Channel-Transfer-Time", "0"),
              ("Caller-Channel-Resurrect-Time", "0"), ("Caller-Channel-Bridged-Time", "0"),
              ("Caller-Channel-Last-Hold", "0"), ("Caller-Channel-Hold-Accum", "0"),
              ("Caller-Screen-Bit", "true"), ("Caller-Privacy-Hide-Name", "false"),
              ("Caller-Privacy-Hide-Number", "false")]
        return h

    def fire(self, name: str, *, pre: Any = (), post: Any = (), body: str | None = None,
             subclass: str | None = None, vt: float | None = None) -> None:
        """Create, publish and record one event about this channel."""
        event = self.switch.events.make(name, self, subclass=subclass, pre=pre, post=post, body=body, at=vt)
        if self._held is not None:
            self._held.append(event)
        else:
            self.switch.publish(event)
        self.record("event", vt, name=name, subclass=subclass)

    def fire_custom(self, subclass: str, body: str, vt: float | None = None) -> None:
        self.fire("CUSTOM", subclass=subclass, body=body, vt=vt)

    def record(self, kind: str, vt: float | None = None, **fields: Any) -> None:
        self.truth.record(kind, self.switch.clock.now() if vt is None else vt, **fields)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """CHANNEL_CREATE, then ringing (CHANNEL_PROGRESS)."""
        self.fire("CHANNEL_CREATE")
        self.state, self.call_state = "CS_ROUTING", "RINGING"
        self.fire("CHANNEL_PROGRESS")

    def _answer(self, tick: int) -> None:
        vt = tick * MEDIA_TICK_S
        self.answered_tick = tick
        self.truth.answered_at_virtual = vt
        self.answered_us = self.switch.clock.epoch_us(vt)
        self.state, self.call_state, self.answer_state = "CS_EXECUTE", "ACTIVE", "answered"
        if self.spec.event_delay_s > 0:  # a lagging switch: the answer and what follows are told late
            self._held = []
            self.switch.keep(asyncio.create_task(self._release_at(vt + self.spec.event_delay_s)))
        self.variables.update(endpoint_disposition="ANSWER", answer_epoch=str(self.answered_us // 1_000_000),
                              answer_uepoch=str(self.answered_us))
        self.fire("CHANNEL_ANSWER", vt=vt)
        self.sched_hangup_s = sched_hangup_after(self.variables)
        if self.sched_hangup_s is not None:  # the real switch runs it as an application on the answered leg
            data = f"+{int(self.sched_hangup_s)}"
            self.fire("CHANNEL_EXECUTE", post=self._app_headers("sched_hangup", data), vt=vt)
            self.fire("CHANNEL_EXECUTE_COMPLETE", post=self._app_headers("sched_hangup", data, "_none_"), vt=vt)
        if not self.result.done() and self._held is None:
            self.result.set_result(f"+OK {self.uuid}\n")
        self.switch.keep(asyncio.create_task(self._park_at(vt + PARK_DELAY_S)))  # after the BACKGROUND_JOB

    async def _release_at(self, vt: float) -> None:
        async with self.switch.clock.at(vt, self.switch.lockstep):
            self._release()

    def _release(self) -> None:
        """The held events go out, in order (spec.event_delay_s has passed, or the call hangs up); then the
        originate's reply, as when the answer is told at once."""
        held, self._held = self._held, None
        for event in held or ():
            self.switch.publish(event)
        if held is not None and not self.result.done() and not self.hungup:
            self.result.set_result(f"+OK {self.uuid}\n")

    sched_hangup_s: float | None = None  # answer + this (call time): hung up with ALLOTTED_TIMEOUT

    def _app_headers(self, app: str, data: str, response: str | None = None) -> list[tuple[str, str]]:
        h = [("Application", app)] + ([("Application-Data", data)] if data else [])
        if response is not None:
            h.append(("Application-Response", response))
        return h + [("Application-UUID", str(uuidlib.uuid4()))]

    def _set_app(self, app: str, data: str) -> None:
        self.application, self.application_data = app, data
        self.variables.pop("current_application_response", None)
        if data:
            self.variables["current_application_data"] = data
        self.variables["current_application"] = app

    async def _park_at(self, vt: float) -> None:
        async with self.switch.clock.at(vt, self.switch.lockstep):
            if self.hungup:
                return
            self._set_app("park", "")
            self.fire("CHANNEL_EXECUTE", post=self._app_headers("park", ""), vt=vt)
            self.parked = True
            self.fire("CHANNEL_PARK", vt=vt)
            if self._stream_at_park is not None:
                self._attach_stream(*self._stream_at_park)
                self._stream_at_park = None

    def hangup(self, cause: str, who: str, vt: float | None = None) -> None:
        """Hang up (idempotent): CHANNEL_HANGUP and the WebSocket close now, the rest on the next tick."""
        if self.hungup:
            return
        vt = self.switch.clock.now() if vt is None else vt
        if self._held is not None:  # a lagging switch tells the backlog first
            self._release()
        self.hungup = True
        self.hangup_cause = cause
        self.hangup_us = self.switch.clock.epoch_us(vt)
        self.state, self.answer_state = "CS_HANGUP", "hangup"
        self.variables.update(hangup_cause=cause, hangup_cause_q850=Q850.get(cause, "0"))
        self.fire("CHANNEL_HANGUP", vt=vt)
        self.record("hangup", vt, cause=cause, who=who)
        if self.stream is not None:
            self.stream.hangup()  # the WebSocket closes now; the bug goes with the session, below
        if not self.result.done():
            self.result.set_result(f"-ERR {cause}\n")
        self.teardown_pending = True  # the rest comes on the next media tick, as on the real switch

    def finish_hangup(self, vt: float | None = None) -> None:
        """Second half of a hangup: playback and park end, bug removed, HANGUP_COMPLETE, DESTROY."""
        if not self.teardown_pending:
            return
        self.teardown_pending = False
        vt = self.switch.clock.now() if vt is None else vt
        cur = self.prompts.stop_for_hangup()
        if cur is not None:
            self._prompt_stopped(cur, vt, response="PLAYBACK ERROR")
        if self.parked:
            self.fire("CHANNEL_UNPARK", vt=vt)
            self.fire("CHANNEL_EXECUTE_COMPLETE", post=self._app_headers("park", "", "_none_"), vt=vt)
        if self.stream is not None:
            self.stream.detach()
        self.state, self.call_state = "CS_REPORTING", "HANGUP"
        self.variables.update(cdr_variables(self.created_us, self.created_us, self.answered_us, self.hangup_us,
                                            self.variables.get("current_application", ""),
                                            self.variables.get("current_application_data", "")))
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "")], vt=vt)
        self.state = "CS_DESTROY"
        self.fire("CHANNEL_DESTROY", vt=vt)
        self.switch.on_channel_gone(self.uuid)

    # ---- the media tick ---------------------------------------------------------------------

    def on_tick(self, tick: int) -> None:
        """One 20 ms media frame at virtual time ``tick x 20 ms``."""
        vt = tick * MEDIA_TICK_S
        if self.hungup:
            self.finish_hangup(vt)
            return
        if self.answered_tick is None:
            if vt + 1e-9 >= self.timeout_vt:
                self.hangup("NO_ANSWER", "timeout", vt)
            elif self.spec.answers and vt + 1e-9 >= self.answer_vt:
                if self.spec.reject_cause:
                    self.hangup(self.spec.reject_cause, "callee", vt)
                else:
                    self._answer(tick)  # and this tick carries the callee's first 20 ms
            if self.answered_tick is None:
                return
        k = tick - self.answered_tick
        stream = self.stream
        if stream is not None:
            for arrived, text in stream.deliver_texts(vt):
                body = stream.play_file(text)
                sub = "mod_audio_stream::play" if body is not None else "mod_audio_stream::json"
                self.fire_custom(sub, body if body is not None else text, vt=vt)
                self.record("stream_text", vt, text=text, arrived_t=self.truth.call_time(arrived),
                            delivered_t=self.truth.call_time(vt), subclass=sub)
        callee_sends = bool(self.prompts.queue) and self.voice.sends(PLAY_RATE, k)
        if self.parked:
            self._send_dtmf(k * MEDIA_TICK_S, vt)
        for kind, prompt in self.prompts.tick(vt, callee_sends):
            getattr(self, f"_prompt_{kind}")(prompt, vt)
        if stream is None or not stream.bug_attached:
            self.prompts.write_frame(None)  # the prompt plays on, nobody taps it
        else:
            write = self.prompts.write_frame(None if stream.mix == "mono" else stream.rate)
            if stream.started_tick is None:
                stream.started_tick = k
                self.record("stream_started", vt, mix=stream.mix, rate=stream.rate)
            stream.on_media(self.voice.frame(stream.rate, k), write)
        t = k * MEDIA_TICK_S
        if self.sched_hangup_s is not None and t + 1e-9 >= self.sched_hangup_s:
            self.hangup("ALLOTTED_TIMEOUT", "switch", vt)
        elif self.spec.hangup_after_s is not None and t + 1e-9 >= self.spec.hangup_after_s:
            self.hangup(self.spec.hangup_cause, "callee", vt)
        elif self.spec.hangup_at_end and self.spec.wav is not None and not self.voice.sends(PLAY_RATE, k):
            self.hangup(self.spec.hangup_cause, "callee", vt)

    def _send_dtmf(self, t: float, vt: float) -> None:
        """The callee's digits due by call time ``t``: one DTMF event each (switch_channel_dequeue_dtmf);
        a playback terminator (``playback_terminators``, default ``*``) breaks the playing prompt."""
        keys = self.spec.dtmf
        while self._dtmf_sent < len(keys) and keys[self._dtmf_sent][0] <= t + 1e-9:
            digit = keys[self._dtmf_sent][1]
            self._dtmf_sent += 1
            self.fire("DTMF", post=[("DTMF-Digit", digit), ("DTMF-Duration", str(DTMF_DURATION)),
                                    ("DTMF-Source", "RTP")], vt=vt)
            self.record("dtmf", vt, digit=digit)
            terminators = self.variables.get("playback_terminators", "*")
            terminators = {"any": "1234567890*#", "none": ""}.get(terminators.lower(), terminators)
            if self.prompts.current is not None and digit in terminators:
                self.variables["playback_terminator_used"] = digit
                self.prompts.request_break(False, vt)

    # ---- prompts ----------------------------------------------------------------------------

    def _prompt_start(self, p: Prompt, vt: float) -> None:
        self._set_app("playback", p.path)
        self.variables.update(current_loop="1", total_loops="1")
        self.fire("CHANNEL_EXECUTE", post=self._app_headers("playback", p.path), vt=vt)
        self.fire("PLAYBACK_START", post=[("Playback-File-Path", p.path)], vt=vt)
        self.record("playback_start", vt, file=p.path)

    def _prompt_stop(self, p: Prompt, vt: float) -> None:
        self._prompt_stopped(p, vt, response="FILE PLAYED")
        self.application, self.application_data = "park", ""

    def _prompt_stopped(self, p: Prompt, vt: float, response: str) -> None:
        """PLAYBACK_STOP reports the read-ahead, as FreeSWITCH does; the truth keeps what was heard."""
        read = p.read_stored_samples
        self.variables.update(playback_last_offset_pos=str(p.offset), playback_seconds=str(read // p.stored_rate),
                              playback_ms=str(p.reported_ms), playback_samples=str(read))
        self.fire("PLAYBACK_STOP", post=[("Playback-File-Path", p.path), ("Playback-Status", p.status or "done")],
                  vt=vt)
        self.variables["current_application_response"] = response
        self.fire("CHANNEL_EXECUTE_COMPLETE", post=self._app_headers("playback", p.path, response), vt=vt)
        self.record("playback_stop", vt, file=p.path, status=p.status, played_ms=p.played_ms,
                    reported_ms=p.reported_ms)

    def _prompt_paused(self, p: Prompt, vt: float) -> None:
        self.record("playback_paused", vt, file=p.path, at_ms=p.offset * 1000 // PLAY_RATE)

    def _prompt_resumed(self, p: Prompt, vt: float) -> None:
        self.record("playback_resumed", vt, file=p.path, at_ms=p.offset * 1000 // PLAY_RATE)

    def _prompt_missing(self, p: Prompt, vt: float) -> None:
        self._set_app("playback", p.path)
        self.fire("CHANNEL_EXECUTE", post=self._app_headers("playback", p.path), vt=vt)
        self.variables["current_application_response"] = "FILE NOT FOUND"
        self.fire("CHANNEL_EXECUTE_COMPLETE", post=self._app_headers("playback", p.path, "FILE NOT FOUND"), vt=vt)
        self.record("playback_missing", vt, file=p.path, error=p.error)

    def broadcast(self, path: str) -> bool:
        """Queue a prompt (it starts after the read delay, on a tick); before the park it is lost."""
        vt = self.switch.clock.now()
        if not self.parked:
            self.record("broadcast_lost", vt, file=path, reason="before CHANNEL_PARK")
            return True
        return self.prompts.enqueue(path, vt)

    def fileman(self, command: str) -> bool:
        """``uuid_fileman <command>`` on the playing prompt; False when nothing plays (no file handle)."""
        vt = self.switch.clock.now()
        cur = self.prompts.fileman(command, vt)
        self.record("fileman", vt, command=command, file=cur.path if cur else None)
        return cur is not None

    def break_playback(self, flush: bool) -> None:
        """``uuid_break [all]``: recorded with what was playing and whether the callee was speaking."""
        vt = self.switch.clock.now()
        cur = self.prompts.request_break(flush, vt)
        t = self.truth.call_time(vt)
        in_speech = next((s for s in self.voice.speech if t is not None and s[0] <= t <= s[1]), None)
        self.record("break_received", vt, all=flush, playing=cur is not None,
                    file=cur.path if cur else None, elapsed_ms=cur.played_ms if cur else None,
                    callee_speech=in_speech)

    @property
    def streaming(self) -> bool:
        """An audio stream is attached, or will be at the park."""
        return self.stream is not None or self._stream_at_park is not None

    def start_stream(self, url: WsUrl, mix: str, rate: int, metadata: str | None) -> None:
        """``uuid_audio_stream start``: attach the bug (MEDIA_BUG_START) and connect its WebSocket.

        Between the answer and the park the bug attaches at the park: the captures show
        MEDIA_BUG_START after CHANNEL_PARK even when the command's reply came before it."""
        if self.answered_tick is not None and not self.parked:
            self._stream_at_park = (url, mix, rate, metadata)
        else:
            self._attach_stream(url, mix, rate, metadata)

    def _attach_stream(self, url: WsUrl, mix: str, rate: int, metadata: str | None) -> None:
        buf = self.variables.get("STREAM_BUFFER_SIZE", "")
        buffer_ms = int(buf) if buf.isdigit() and int(buf) >= 20 and int(buf) % 20 == 0 else 20
        self.stream = AudioStream(self, url, mix, rate, metadata, buffer_ms)
        self.fire("MEDIA_BUG_START", pre=[("Media-Bug-Function", "audio_stream"), ("Media-Bug-Target", "N/A")])

    def on_stream_detached(self, stream: AudioStream) -> None:
        if self.stream is stream:
            self.stream = None
        self.fire("MEDIA_BUG_STOP", pre=[("Media-Bug-Function", "audio_stream"), ("Media-Bug-Target", "N/A")])
        self.record("stream_stopped", samples=stream.samples_sent)


def sched_hangup_after(variables: dict[str, str]) -> float | None:
    """The earliest ``sched_hangup:+N`` among the ``execute_on_answer*`` variables, as FreeSWITCH runs
    them on answer (switch_channel_execute_on; ``app:arg`` with a single colon); None without one."""
    found = []
    for name, value in variables.items():
        if not name.startswith("execute_on_answer"):
            continue
        app, _, arg = value.partition(":")
        arg = arg.strip().split(" ")[0]
        if app.strip() == "sched_hangup" and arg.startswith("+") and arg[1:].isdigit():
            found.append(float(arg[1:]))
    return min(found) if found else None
