"""Drives a sans-I/O Call with a fake clock: the test says what the switch and the audio server do, when.

No greenlets, sockets or sleeps: time is a number the test moves forward. Commands the call asks
for are answered like FreeSWITCH answers them (reply strings from the conformance captures), and
kept in ``sent`` with the call time they went out at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from callbot.config import Settings
from callbot.events import AudioEvent
from callbot.robot.call.call import Call
from callbot.robot.call.commands import Api, Bgapi
from callbot.robot.call.events import (
    Answered, ApiFailed, ApiReply, Deadline, HangupComplete, HungUp, OriginateResult, Parked, PlaybackStarted,
    PlaybackStopped, StreamConnected,
)
from callbot.robot.scenario.loader import Scenario, bundled_scenario, load_scenario

SCENARIO = load_scenario(bundled_scenario("survey_en"))


@dataclass
class CallHarness:
    """One call, a fake clock, and a scripted switch that answers every command at once."""

    settings: Settings = field(default_factory=Settings)
    scenario: Scenario = SCENARIO
    audio_url: str | None = "ws://127.0.0.1:8080"
    replies: dict[str, str] = field(default_factory=dict)  # what -> reply text (default +OK)
    now: float = 0.0
    sent: list[tuple[float, str, str]] = field(default_factory=list)  # (time, what, command line)

    def __post_init__(self) -> None:
        self.call = Call(str(uuid.uuid4()), "fixture/long_reply", self.scenario, self.settings,
                         audio_url=self.audio_url)
        self.us0 = 1_700_000_000_000_000

    # -- driving ----------------------------------------------------------------------------
    def start(self) -> "CallHarness":
        self.call.start(self.now)
        self._answer_commands()
        return self

    def feed(self, event: object) -> None:
        self.call.handle(event, self.now)
        self._answer_commands()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of call time pass, handing the call every deadline that falls due on the way."""
        end = self.now + seconds
        while (deadline := self.call.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.feed(Deadline())
        self.now = end

    def stamp(self) -> int:
        return self.us0 + round(self.now * 1e6)

    def answer_and_park(self) -> None:
        """CHANNEL_ANSWER, the stream connects, CHANNEL_PARK: the first prompt goes out."""
        self.feed(Answered(self.stamp()))
        self.feed(StreamConnected(self.stamp()))
        self.feed(Parked(self.stamp()))

    def play_started(self, delay_s: float = 0.1) -> str:
        self.advance(delay_s)
        path = self.playing_path()
        self.feed(PlaybackStarted(path, self.stamp()))
        return path

    def play_stopped(self, status: str = "done", reported_ms: int | None = 4096) -> None:
        self.feed(PlaybackStopped(self.playing_path(), status, reported_ms, self.stamp()))

    def audio(self, event: AudioEvent) -> None:
        self.feed(event)

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.feed(HungUp(cause, switch_us=self.stamp()))
        self.feed(HangupComplete(self.stamp()))

    # -- looking ----------------------------------------------------------------------------
    def playing_path(self) -> str:
        assert self.call.playing is not None, "no prompt is playing"
        return self.call.playing.path

    def whats(self) -> list[str]:
        return [what for _, what, _ in self.sent]

    def rows(self, type_: str) -> list[dict]:
        return [r for r in self.call.record.timeline.rows() if r["type"] == type_]

    # -- the switch's side ------------------------------------------------------------------
    def _answer_commands(self) -> None:
        commands = self.call.commands()
        while commands:
            for command in commands:
                self.sent.append((self.now, command.what, command.command))
                if isinstance(command, Bgapi):
                    continue  # the test decides when the job ends (originate_result)
                reply = self.replies.get(command.what, "+OK\n")
                self.call.handle(ApiFailed(command.what, reply[5:], True) if reply.startswith("DOWN") else
                                 ApiReply(command.what, reply), self.now)
            commands = self.call.commands()

    def originate_result(self, body: str) -> None:
        self.feed(OriginateResult(body))
