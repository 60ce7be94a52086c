"""Collecting the caller's reply: speech and transcripts in, a decision on when the reply is complete out.

Sans-I/O: it is fed audio events and the robot's wall clock (``now``) and never waits itself; the
call session asks :meth:`ReplyCollector.complete` while it waits for the reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from callbot.events import AudioEvent


@dataclass
class ReplyCollector:
    """The reply to one step: what was said (finals) and whether more is still coming.

    ``speed`` converts wall time to call time; ``final_wait_wall_s`` is how long after speech ends a
    final transcript may still arrive (STT runs in wall time, whatever the switch's speed).
    """

    speed: float
    final_wait_wall_s: float
    texts: list[str] = field(default_factory=list)
    speaking: bool = False
    heard_speech: bool = False
    speech_ended_wall: float | None = None  # the last end of speech not yet followed by a final

    def reset(self) -> None:
        """A new step: earlier speech belonged to the previous one (``speaking`` carries over)."""
        self.texts, self.heard_speech, self.speech_ended_wall = [], self.speaking, None

    def feed(self, event: AudioEvent, now: float) -> None:
        kind = event.type
        if kind == "speech_started":
            self.speaking = self.heard_speech = True
        elif kind in ("speech_stopped", "speech_short"):
            self.speaking = False
            self.speech_ended_wall = now
        elif kind == "final":
            self.speech_ended_wall = None
            text = event.text.strip()  # type: ignore[attr-defined]
            if text:
                self.texts.append(text)

    def complete(self, now: float, started: float, window_s: float, max_reply_s: float) -> bool:
        """True once the reply is over: words heard and no more coming, or nothing said within ``window_s``."""
        listened_s = (now - started) * self.speed
        if self.speaking:
            return listened_s >= max_reply_s
        if self.speech_ended_wall is not None:
            return now - self.speech_ended_wall >= self.final_wait_wall_s
        return bool(self.texts) or listened_s >= window_s

    def outcome(self, match: Callable[[str], str | None]) -> tuple[str, str]:
        """(intent | unknown | silence, text heard)."""
        text = " ".join(self.texts).strip()
        if text:
            return match(text) or "unknown", text
        return ("unknown" if self.heard_speech else "silence"), ""
