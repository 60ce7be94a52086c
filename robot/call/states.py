"""The call's states, and which event class may move it from each state to which: one table, one screen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from callbot.events import Amd, AudioEvent, Beep
from callbot.robot.call.events import (
    Answered, ApiFailed, ApiReply, Deadline, Dtmf, HangupComplete, HungUp, OriginateResult, Parked, PlaybackStopped,
    ShellError, StreamLost,
)


class CallState(enum.Enum):
    """Where one call is: DIALING → ANSWERED → AMD → PLAYING ⇄ LISTENING → … → HANGUP → DONE."""

    DIALING = "dialing"  # originate sent, no answer yet
    ANSWERED = "answered"  # CHANNEL_ANSWER seen; the audio stream is being started
    AMD = "amd"  # the AMD step: it runs alongside the first prompt, which waits for CHANNEL_PARK
    PLAYING = "playing"  # a prompt is on the channel (uuid_broadcast sent)
    LISTENING = "listening"  # waiting for the caller's reply
    WAIT_BEEP = "wait_beep"  # a machine answered; waiting for its beep before the voicemail prompt
    HANGING_UP = "hanging_up"  # the robot sent uuid_kill and waits for CHANNEL_HANGUP
    HANGUP = "hangup"  # the channel is gone (either side hung up, or the call never connected)
    DONE = "done"  # the result is final


S = CallState
_LIVE = (S.ANSWERED, S.AMD, S.PLAYING, S.LISTENING, S.WAIT_BEEP)
_SCRIPT = frozenset({S.PLAYING, S.LISTENING, S.HANGING_UP})  # where the next step of the script can lead
_NEXT = _SCRIPT | {S.WAIT_BEEP}  # ... or, when AMD says machine, to the beep
_TIMED_OUT = _NEXT | {S.HANGUP}  # a deadline may also give a call up for lost (the ESL link never came back)

# state -> triggering event class -> the states that event may move the call to. A class stands for
# its subclasses (AudioEvent for every audio event) unless a subclass has its own row. Either side may
# hang up at any moment (HungUp), and a deadline or a failure in the shell (ShellError) can end any state.
TRANSITIONS: dict[CallState, dict[type, frozenset[CallState]]] = {
    S.DIALING: {Answered: frozenset({S.ANSWERED}), OriginateResult: frozenset({S.HANGUP}),
                HungUp: frozenset({S.HANGUP}), Deadline: frozenset({S.HANGUP}), ShellError: frozenset({S.HANGUP})},
    S.ANSWERED: {Answered: frozenset({S.AMD}), ApiReply: frozenset({S.AMD}), ApiFailed: frozenset({S.AMD}),
                 HungUp: frozenset({S.HANGUP}), Deadline: frozenset({S.HANGING_UP, S.HANGUP}),
                 ShellError: frozenset({S.HANGING_UP})},
    S.AMD: {Parked: _SCRIPT, Answered: _SCRIPT, ApiReply: _SCRIPT, ApiFailed: _SCRIPT,
            Amd: frozenset({S.WAIT_BEEP, S.HANGING_UP}), Deadline: _TIMED_OUT, HungUp: frozenset({S.HANGUP}),
            ShellError: frozenset({S.HANGING_UP}), Dtmf: _SCRIPT},
    S.PLAYING: {PlaybackStopped: _NEXT, Deadline: _TIMED_OUT, ApiReply: frozenset({S.HANGING_UP}),
                HungUp: frozenset({S.HANGUP}), ShellError: frozenset({S.HANGING_UP}), Dtmf: _SCRIPT},
    S.LISTENING: {AudioEvent: _NEXT, Deadline: _TIMED_OUT, StreamLost: _NEXT, HungUp: frozenset({S.HANGUP}),
                  ShellError: frozenset({S.HANGING_UP}), Dtmf: _SCRIPT},
    S.WAIT_BEEP: {Beep: frozenset({S.PLAYING}), Amd: frozenset({S.PLAYING}), PlaybackStopped: frozenset({S.PLAYING}),
                  Deadline: frozenset({S.PLAYING, S.HANGING_UP, S.HANGUP}), HungUp: frozenset({S.HANGUP}),
                  ShellError: frozenset({S.HANGING_UP}), Dtmf: _SCRIPT},
    S.HANGING_UP: {HungUp: frozenset({S.HANGUP}), Deadline: frozenset({S.HANGUP}), ShellError: frozenset({S.HANGUP})},
    S.HANGUP: {HungUp: frozenset({S.DONE}), HangupComplete: frozenset({S.DONE}), OriginateResult: frozenset({S.DONE}),
               Deadline: frozenset({S.DONE}), ShellError: frozenset({S.DONE})},
    S.DONE: {},
}


def allowed(state: CallState, event: type) -> frozenset[CallState]:
    """The states ``event`` may move a call in ``state`` to (nothing if the table has no row for it)."""
    row = TRANSITIONS[state]
    for cls in event.__mro__:
        if cls in row:
            return row[cls]
    return frozenset()


class IllegalTransition(RuntimeError):
    """A move the table forbids: a bug in the call, never something to retry."""


@dataclass(frozen=True)
class Transition:
    """One recorded move, with the event that caused it."""

    source: CallState
    target: CallState
    event: str
    cause: str


@dataclass
class CallStateMachine:
    """The current state of one call; :meth:`go` validates every move against TRANSITIONS."""

    call: str
    state: CallState = CallState.DIALING
    history: list[Transition] = field(default_factory=list)

    def go(self, target: CallState, event: type, cause: str) -> Transition:
        """Move to ``target`` because of an ``event`` (its class), or raise IllegalTransition naming both states."""
        if target not in allowed(self.state, event):
            options = ", ".join(sorted(s.value for s in allowed(self.state, event))) or "nowhere"
            raise IllegalTransition(
                f"call {self.call}: {self.state.value} -> {target.value} on {event.__name__} is not allowed "
                f"(cause: {cause}); from {self.state.value}, {event.__name__} may lead to {options}")
        move = Transition(self.state, target, event.__name__, cause)
        self.state = target
        self.history.append(move)
        return move

    @property
    def live(self) -> bool:
        """The channel is up and the robot may still talk on it."""
        return self.state in _LIVE

    @property
    def ended(self) -> bool:
        return self.state in (CallState.HANGUP, CallState.DONE)
