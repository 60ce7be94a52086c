"""The call session's states and allowed transitions, as a table that fits on one screen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class CallState(enum.Enum):
    """Where one call is (DESIGN section 4): DIALING → ANSWERED → AMD → PLAYING ⇄ LISTENING → … → DONE."""

    DIALING = "dialing"  # originate sent, no answer yet
    ANSWERED = "answered"  # CHANNEL_ANSWER seen; the audio stream is being started
    AMD = "amd"  # the AMD step; it runs alongside the first prompt and never delays barge-in
    PLAYING = "playing"  # a prompt is on the channel (uuid_broadcast sent)
    LISTENING = "listening"  # waiting for the caller's reply
    WAIT_BEEP = "wait_beep"  # a machine answered; waiting for its beep before the voicemail prompt
    HANGING_UP = "hanging_up"  # the robot sent uuid_kill and waits for CHANNEL_HANGUP
    HANGUP = "hangup"  # the channel is gone (either side hung up, or the call never connected)
    DONE = "done"  # the result is final


S = CallState
_LIVE = (S.ANSWERED, S.AMD, S.PLAYING, S.LISTENING, S.WAIT_BEEP)

# state -> the states it may move to. HANGUP is reachable from every state before it: either side
# may hang up at any moment, and a call that never connects ends there too.
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    S.DIALING: frozenset({S.ANSWERED, S.HANGUP}),
    S.ANSWERED: frozenset({S.AMD, S.HANGING_UP, S.HANGUP}),
    S.AMD: frozenset({S.PLAYING, S.LISTENING, S.WAIT_BEEP, S.HANGING_UP, S.HANGUP}),
    S.PLAYING: frozenset({S.PLAYING, S.LISTENING, S.WAIT_BEEP, S.HANGING_UP, S.HANGUP}),
    S.LISTENING: frozenset({S.PLAYING, S.WAIT_BEEP, S.HANGING_UP, S.HANGUP}),
    S.WAIT_BEEP: frozenset({S.PLAYING, S.HANGING_UP, S.HANGUP}),
    S.HANGING_UP: frozenset({S.HANGUP}),
    S.HANGUP: frozenset({S.DONE}),
    S.DONE: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A move the table forbids: a bug in the session, never something to retry."""


@dataclass(frozen=True)
class Transition:
    """One recorded move, with the event that caused it."""

    source: CallState
    target: CallState
    cause: str


@dataclass
class CallStateMachine:
    """The current state of one call; :meth:`go` validates every move against TRANSITIONS."""

    call: str
    state: CallState = CallState.DIALING
    history: list[Transition] = field(default_factory=list)

    def can(self, target: CallState) -> bool:
        return target in TRANSITIONS[self.state]

    def go(self, target: CallState, cause: str) -> Transition:
        """Move to ``target`` because of ``cause``, or raise IllegalTransition naming both states."""
        if not self.can(target):
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[self.state])) or "nothing (final)"
            raise IllegalTransition(
                f"call {self.call}: {self.state.value} -> {target.value} is not allowed (cause: {cause}); "
                f"from {self.state.value} the call may go to {allowed}"
            )
        move = Transition(self.state, target, cause)
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
