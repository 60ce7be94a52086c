"""asyncio glue for one stream: segment items go to its SegmentTranscriber, its jobs to the shared SttEngine, events out.

This is the whole hook a server needs: ``StreamTranscription.open(...)`` per connection, call
``feed(pipeline_output.segment_items)`` after each message, ``set_prompt`` on a robot prompt
frame, and ``await finish()`` when the stream ends. Nothing here blocks the event loop, so the
barge-in path (which never waits on it) keeps its timing under any STT load.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Iterable

from callbot.events import AudioEvent, Final
from callbot.audio_server.pipeline.segments import SegmentItem
from callbot.audio_server.stt.engine import SttEngine
from callbot.audio_server.stt.stage import DecodeJob, SegmentTranscriber, SttOutput


class StreamTranscription:
    """Runs one stream's decode jobs on the engine and hands every partial/final to ``emit`` as it is ready."""

    def __init__(self, stage: SegmentTranscriber, engine: SttEngine, emit: Callable[[AudioEvent], None],
                 wordless: Callable[[float], None] | None = None) -> None:
        self.stage = stage
        self.engine = engine
        self.emit = emit
        self.wordless = wordless  # a final suppressed (no words): where its speech ended
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def open(cls, engine: SttEngine, rate: int, call: str, emit: Callable[[AudioEvent], None],
             language: str | None = None, wordless: Callable[[float], None] | None = None) -> "StreamTranscription":
        """The STT of a new stream at ``rate`` Hz in ``language`` (None: stt.language), with the engine's settings."""
        return cls(SegmentTranscriber(engine.settings, rate, call, language), engine, emit, wordless)

    def feed(self, items: Iterable[SegmentItem]) -> None:
        """Segment items from the pipeline, in stream order."""
        self._submit(self.stage.feed(items))

    def set_prompt(self, text: str | None) -> None:
        """The robot's current prompt text (context for recognition)."""
        self.stage.set_prompt(text)

    async def finish(self) -> None:
        """End of stream: finalise an open segment and wait until every final is out."""
        self._submit(self.stage.finish())
        await self.idle()

    async def idle(self) -> None:
        """Wait until no decode of this stream is pending (deterministic replays and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def cancel(self) -> None:
        """Abandon pending decodes (the connection is gone and nothing can be sent)."""
        for task in self._tasks:
            task.cancel()

    def _submit(self, out: SttOutput) -> None:
        metrics = self.engine.metrics
        metrics.finals_shared.inc(out.reused)
        metrics.finals_early.inc(out.early)
        for reason in out.suppressed:
            metrics.finals_suppressed.labels(reason).inc()
        for event in out.events:
            if isinstance(event, Final):
                metrics.finals.inc()
            self.emit(event)
        if self.wordless is not None:
            for end_s in out.wordless:
                self.wordless(end_s)
        for job in out.jobs:
            task = asyncio.get_running_loop().create_task(self._run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, job: DecodeJob) -> None:
        result = await self.engine.transcribe(job)
        self._submit(self.stage.on_result(job, result))
