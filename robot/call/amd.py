"""What a call session does with AMD: wait for the verdict beside the first prompt, then act on a machine.

A mixin of :class:`robot.call_session.CallSession` (it uses the session's queue, waits and
commands). The ``amd`` event may arrive at any time after the answer: the first prompt and
barge-in never wait for it. The first verdict, or ``robot.amd_wait_s`` without one (then
``notsure``), settles human or machine once; the scenario's ``[voicemail]`` decides the rest.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import gevent

from callbot.robot.call.queue import CallItem
from callbot.robot.call.record import MachineAnswered
from callbot.robot.esl.commands import break_command
from callbot.robot.call.states import CallState

if TYPE_CHECKING:
    from callbot.config import RobotSettings
    from callbot.robot.call.queue import CallQueue
    from callbot.robot.call.record import CallRecord, Playing
    from callbot.robot.call.reply import ReplyCollector
    from callbot.robot.scenario.loader import Scenario, Step
    from callbot.robot.call.states import CallStateMachine

PLAYBACK_MARGIN_S = 5.0  # beyond the file's length, how long a prompt may take to report PLAYBACK_STOP
LISTEN_TICK_S = 0.1  # call-time resolution of listening windows (and of the wait for the beep)


class AmdActions:
    """The AMD step and the voicemail path of a call session."""

    if TYPE_CHECKING:  # provided by CallSession
        cfg: RobotSettings
        scenario: Scenario
        record: CallRecord
        sm: CallStateMachine
        queue: CallQueue
        reply: ReplyCollector
        playing: Playing | None
        speed: float
        uuid: str
        _timers: list[gevent.Greenlet]

        def _wait(self, done: Callable[[], bool], timeout_call_s: float, tick: float | None = None) -> bool: ...
        def _api(self, cmd: str, what: str) -> str: ...
        def _play(self, step: Step, cause: str) -> bool: ...
        def _go(self, target: CallState, cause: str) -> None: ...
        def _robot(self, type_: str, **fields: Any) -> None: ...
        def flag(self, name: str, **fields: Any) -> None: ...

    _amd_settled = False  # a verdict (or the AMD deadline) has decided human or machine
    _beeped = False
    _speech_end_wall: float | None = None  # the callee's last end of speech (wall), for the no-beep wait

    def _start_amd(self, streaming: bool) -> None:
        """At the answer: arm the AMD deadline, or (no stream, or robot.act_on_amd off) settle on human."""
        if self.cfg.act_on_amd and streaming:
            self._robot("amd_pending", note="AMD runs alongside the first prompt", deadline_s=self.cfg.amd_wait_s)
            self._timers.append(gevent.spawn_later(self.cfg.amd_wait_s / self.speed, self.queue.put,
                                                   CallItem("amd_deadline")))
        else:
            self._amd_settled = True
            why = "no audio stream" if self.cfg.act_on_amd else "robot.act_on_amd=false"
            self._robot("amd_hook", result="human", note=f"{why}: every answered call is treated as human; "
                        "amd is null unless the audio server sends an amd event")

    def _amd_deadline(self) -> None:
        if not self._amd_settled:
            self.flag("amd_timeout", seconds=self.cfg.amd_wait_s, note="no amd event; treated as notsure")
            self._settle_amd("notsure", "ROBOT_DEADLINE")

    def _on_amd(self, result: str, cause: str) -> None:
        """Record the detector's verdict (the first one counts); act on it only with robot.act_on_amd."""
        if self.record.amd is not None:
            return
        self.record.amd = result
        if self.cfg.act_on_amd:
            self._settle_amd(result, cause)

    def _settle_amd(self, result: str, cause: str) -> None:
        """Decide human or machine once (verdict or deadline); a machine ends the script (MachineAnswered)."""
        if self._amd_settled:
            self._robot("amd_result", result=result, cause=cause, action="none", note="AMD already settled")
            return
        self._amd_settled = True
        vm = self.scenario.voicemail
        machine = result == "machine" or (result == "notsure" and vm.on_notsure == "machine")
        live = self.sm.state in (CallState.AMD, CallState.PLAYING, CallState.LISTENING)
        action = (vm.on_machine if live else "none") if machine else "human"
        self._robot("amd_result", result=result, cause=cause, action=action)
        if machine and live:
            raise MachineAnswered()


    def _voicemail(self) -> None:
        """A machine answered: stop the prompt, then hang up, or leave the message after the beep.

        With no beep (``robot.no_beep_silence_s`` of quiet after the greeting, or ``robot.beep_wait_s``
        in all), ``voicemail.on_no_beep`` decides: leave the message anyway, or hang up
        (disposition ``machine_no_beep``).
        """
        vm = self.scenario.voicemail
        if self.playing is not None and not self.playing.stopped:
            step = self.playing.step.name
            self.playing.break_sent = True  # a barge-in arriving meanwhile must not break again
            reply = self._api(break_command(self.uuid), what="break")
            self._robot("amd_break", reply=reply.strip(), step=step)
            self._wait(lambda: self.playing is not None and self.playing.stopped, PLAYBACK_MARGIN_S)
            self.playing = None
        self.record.disposition = vm.disposition
        if vm.on_machine == "leave_message" and vm.message:
            self._go(CallState.WAIT_BEEP, "amd machine")
            if not self._wait_beep():
                self._robot("no_beep", action=vm.on_no_beep, quiet_s=self.cfg.no_beep_silence_s)
                if vm.on_no_beep == "hangup":
                    self.record.disposition = "machine_no_beep"
                    return
            self._play(self.scenario.step(vm.message), cause="voicemail message")
            self.record.disposition = vm.disposition

    def _wait_beep(self) -> bool:
        """Wait for the beep; False once the greeting has been quiet for no_beep_silence_s (or beep_wait_s)."""
        entered = time.monotonic()
        quiet_wall = self.cfg.no_beep_silence_s / self.speed

        def over() -> bool:
            if self._beeped:
                return True
            if self.reply.speaking:
                return False
            return time.monotonic() - max(entered, self._speech_end_wall or entered) >= quiet_wall

        self._wait(over, self.cfg.beep_wait_s, tick=LISTEN_TICK_S / self.speed)
        return self._beeped
