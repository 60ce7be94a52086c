"""Collecting the caller's reply: speech and transcripts in, a decision on when the reply is complete out.

Sans-I/O and in call time: it is fed audio events with the call-clock time they were handled at,
and tells the call when to look again (:meth:`ReplyCollector.next_check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from callbot.events import AudioEvent, Final, SpeechShort, SpeechStarted, SpeechStopped


SAME_END_S = 0.001  # a final's end_s and the segment's SpeechStopped.t are one stream time, up to rounding


@dataclass
class ReplyCollector:
    """The reply to one step: what was said (finals) and whether more is still coming.

    ``final_wait_s`` is how long (call time) after speech ends its final transcript may still arrive.
    """

    final_wait_s: float
    texts: list[str] = field(default_factory=list)
    said_over_prompt: list[str] = field(default_factory=list)  # words heard while the prompt played on
    spoke_over_prompt: bool = False  # ... and whether there was speech then at all (transcribed or not)
    speaking: bool = False
    heard_speech: bool = False
    speech_ended_at: float | None = None  # the last end of speech not yet followed by a final
    speaking_since: float = float("-inf")  # call time the current speech's SpeechStarted was handled
    stopped_at: float | None = None  # call time the caller last stopped speaking, final or not (quiet checks)
    heard_until: float = float("-inf")  # stream time up to which a final has transcribed the caller

    def reset(self) -> None:
        """A new step: earlier words belong to the previous one (``speaking`` carries over)."""
        self.texts, self.said_over_prompt, self.heard_speech, self.speech_ended_at = [], [], self.speaking, None
        self.spoke_over_prompt = False

    def prompt_finished(self) -> None:
        """The prompt played to its end: what was said over it does not close the listening window (the
        question came after it), but stands as the reply if the window then passes in silence."""
        self.said_over_prompt = self.said_over_prompt + self.texts
        self.spoke_over_prompt = self.spoke_over_prompt or self.heard_speech
        self.texts, self.heard_speech = [], self.speaking
        if not self.speaking:
            self.speech_ended_at = None

    def feed(self, event: AudioEvent, now: float) -> None:
        match event:
            case SpeechStarted():
                self.speaking = self.heard_speech = True
                self.speaking_since = now
            case SpeechStopped(t=end) | SpeechShort(t=end):
                self.speaking = False
                self.stopped_at = now
                if end > self.heard_until + SAME_END_S:  # else its final came first (an early final)
                    self.speech_ended_at = now
            case Final(text=text, end_s=end):
                # An early final (stt.early_final_ms) comes while the caller is still "speaking": the reply
                # still ends with the segment (a machine's greeting pauses too), but then waits for nothing.
                self.speech_ended_at = None
                self.heard_until = max(self.heard_until, end)
                if text.strip():
                    self.texts.append(text.strip())

    def audio_lost(self, now: float) -> None:
        """The stream dropped: whatever the caller was saying has ended as far as we can ever know."""
        if self.speaking:
            self.speaking = False
            self.speech_ended_at = self.stopped_at = now

    def complete(self, now: float, started: float, window_s: float, max_reply_s: float) -> bool:
        """True once the reply is over: words heard and no more coming, or nothing said within ``window_s``."""
        if not self.speaking and self.speech_ended_at is None and self.texts:
            return True
        return now >= self.next_check(started, window_s, max_reply_s)

    def next_check(self, started: float, window_s: float, max_reply_s: float) -> float:
        """The call time at which :meth:`complete` turns true if nothing new is heard (one formula for both)."""
        if self.speaking:  # a long reply is cut max_reply_s after it began (or after listening did)
            return max(started, self.speaking_since) + max_reply_s
        if self.speech_ended_at is not None:
            return self.speech_ended_at + self.final_wait_s
        return started + window_s

    def outcome(self, match: Callable[[str], str | None]) -> tuple[str, str]:
        """(intent | unknown | silence, text heard)."""
        text = " ".join(self.texts or self.said_over_prompt).strip()
        if text:
            return match(text) or "unknown", text
        return ("unknown" if self.heard_speech or self.spoke_over_prompt else "silence"), ""
