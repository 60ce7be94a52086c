"""The sans-I/O STT stage of one stream: speech segments in, decode jobs out, decode results in, partials and finals out.

It never decodes, sleeps or reads a clock. The I/O shell hands each job to the shared engine
(:mod:`audio_server.stt_engine`) and gives the result back with :meth:`SegmentTranscriber.on_result`.
All times are stream seconds.

Load policy, per stream:
- at most one partial decode is in flight per segment; audio that arrives meanwhile is merged
  into the next partial, issued when the previous one comes back (or was dropped). The one
  exception: a pause's decode (``speculative_final_ms``) goes beside a partial that heard no pause;
- a pause's decode may be sent as the final before the segment closes (``early_final_ms``);
- a partial result that comes back after its piece was finalised is discarded;
- every piece gets exactly one final job, and finals are emitted in piece order.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np

from callbot.events import Final, Partial
from callbot.audio_server.pipeline.segments import SegmentAudio, SegmentClosed, SegmentItem, SegmentOpened
from callbot.audio_server.stt.text import LocalAgreement, TextFilter, clean_text, trails_off
from callbot.config import MAX_SEGMENT_S, SttSettings

JobKind = Literal["partial", "final"]



@dataclass(frozen=True, eq=False)
class DecodeJob:
    """One decode to run: ``samples`` (int16 mono at ``rate``) of one piece of a speech segment.

    ``prefix`` is the piece's confirmed partial text: the decoder is forced to start with it, so
    that a final never contradicts a word the robot may already have acted on. ``start_s`` is where the transcript is dated from (the speech onset for a segment's first
    piece), ``end_s`` the stream time the audio reaches (for a final: the end of speech).
    """

    stream: str
    segment_id: int
    piece: int
    kind: JobKind
    seq: int
    samples: np.ndarray
    rate: int
    start_s: float
    end_s: float
    initial_prompt: str | None
    prefix: str | None
    language: str | None = None  # the stream's language (URL ``lang``); None: stt.language
    early: bool = False  # a partial issued in a pause, likely to be the segment's final (see _after_audio)

    @property
    def audio_s(self) -> float:
        return len(self.samples) / self.rate

    @property
    def piece_key(self) -> tuple[str, int, int]:
        """Which piece of which segment of which stream this job decodes."""
        return self.stream, self.segment_id, self.piece

    def can_take(self, partial: "DecodeJob") -> bool:
        """This final may take ``partial``'s result instead of a decode of its own: the same piece, all its speech heard."""
        return (self.kind == "final" and partial.kind == "partial" and partial.piece_key == self.piece_key
                and partial.end_s >= self.end_s)


@dataclass(frozen=True)
class DecodeResult:
    """What Whisper made of one job; ``decode_s`` is the wall time the decode took (for metrics only)."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    decode_s: float = 0.0
    redecoded: bool = False  # decoded again without the robot's prompt: the first decode looped (metrics)


@dataclass
class SttOutput:
    """Events to send and decode jobs to submit, in order."""

    events: list[Partial | Final] = field(default_factory=list)
    jobs: list[DecodeJob] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)  # reasons finals were not reported (metrics)
    wordless: list[float] = field(default_factory=list)  # where those finals' speech ended, in final order (AMD)
    reused: int = 0  # finals taken from a partial decode that had heard the whole segment (metrics)
    early: int = 0  # of those, finals sent before the segment closed (``stt.early_final_ms``, metrics)

    def extend(self, other: "SttOutput") -> None:
        self.events += other.events
        self.jobs += other.jobs
        self.suppressed += other.suppressed
        self.wordless += other.wordless
        self.reused += other.reused
        self.early += other.early


@dataclass
class _Piece:
    """The open part of a segment: its audio so far, frame energies (to cut quietly) and partial state."""

    segment_id: int
    piece: int
    start_s: float  # transcript start
    audio_start: int  # stream sample index of chunks[0][0]
    chunks: list[np.ndarray] = field(default_factory=list)
    marks: list[tuple[int, float]] = field(default_factory=list)  # (end offset, mean square) per frame
    n: int = 0
    voiced_n: int = 0  # n at the end of the last voiced frame (0: no speech in this piece yet)
    after_early_final: bool = False  # opened by an early final: without speech it ends with no final of its own
    partial_mark: int = 0  # n when the last partial was issued (or the preroll's length)
    in_flight: int = 0  # partial decodes issued and not back: one, or two when a pause's decode could not wait
    in_flight_n: int = 0  # n the newest of them heard up to
    silent_ms: int = 0  # the segment's current pause, from the segmenter
    speculated: bool = False  # this pause's early final decode was issued
    last_partial_seq: int = -1
    latest: tuple[DecodeJob, DecodeResult] | None = None  # the newest partial decode and its result
    agreement: LocalAgreement = field(default_factory=LocalAgreement)

    def append(self, samples: np.ndarray, mark: bool) -> None:
        self.chunks.append(samples)
        self.n += len(samples)
        if mark:
            power = float(np.mean(samples.astype(np.float32) ** 2)) if len(samples) else 0.0
            self.marks.append((self.n, power))

    def audio(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.int16)


class SegmentTranscriber:
    """Turns one stream's speech segments into decode jobs, and decode results into partial/final events."""

    def __init__(self, settings: SttSettings, rate: int, stream: str = "", language: str | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"stream {stream!r}: sample rate must be positive, got {rate}")
        self.settings = settings
        self.rate = rate
        self.stream = stream
        self.language = language
        self.filter = TextFilter.from_phrases(
            settings.no_speech_threshold, settings.logprob_threshold, settings.min_avg_logprob, settings.hallucinations
        )
        if not 0 < settings.max_segment_s <= MAX_SEGMENT_S:
            raise ValueError(f"stt.max_segment_s must be in (0, {MAX_SEGMENT_S}] (one Whisper window), "
                             f"got {settings.max_segment_s}")
        self._interval = max(1, int(settings.partial_interval_ms * rate / 1000))
        self._max = max(int(settings.max_segment_s * rate), self._interval)
        self._search = int(settings.cut_search_ms * rate / 1000)
        self._piece: _Piece | None = None
        self._seq = 0
        self._prompt: str | None = None
        self._finals_due: deque[int] = deque()  # seqs of final jobs, in piece order
        self._finals_done: dict[int, Final | float] = {}  # a suppressed final: its end of speech

    # -- inputs -----------------------------------------------------------------------------
    def set_prompt(self, text: str | None) -> None:
        """The robot's current prompt text; later decodes get its tail as Whisper's ``initial_prompt``."""
        text = clean_text(text or "")
        self._prompt = text[-self.settings.max_prompt_chars :] if text else None

    def feed(self, items: Iterable[SegmentItem]) -> SttOutput:
        """Consume the segmenter's items; returns the decode jobs they make due."""
        out = SttOutput()
        for item in items:
            if isinstance(item, SegmentOpened):
                out.extend(self._open(item))
            elif isinstance(item, SegmentAudio):
                self._check(item.segment_id, "audio")
                assert self._piece is not None
                self._piece.append(np.asarray(item.frame.samples, dtype=np.int16), mark=True)
                self._piece.silent_ms = item.silent_ms
                if item.silent_ms == 0:
                    self._piece.voiced_n = self._piece.n
                self._piece.speculated = self._piece.speculated and item.silent_ms > 0
                out.extend(self._early_final() or self._after_audio())
            elif isinstance(item, SegmentClosed):
                self._check(item.segment_id, "close")
                out.extend(self._close(item.end_s))
        return out

    def finish(self) -> SttOutput:
        """The stream ended: finalise a segment still open (its end is the end of the audio received)."""
        out = SttOutput()
        if self._piece is not None and not self._speechless(self._piece):
            out.jobs.append(self._final(self._piece_end_s(self._piece)))
        self._piece = None
        return out

    def on_result(self, job: DecodeJob, result: DecodeResult | None) -> SttOutput:
        """Take a job's result (None: the engine dropped this partial); returns events and any job now due."""
        if job.stream != self.stream:
            raise ValueError(f"decode job of stream {job.stream!r} given to stream {self.stream!r}")
        if job.kind == "final":
            return self._final_result(job, result)
        out = SttOutput()
        piece = self._piece
        if piece is None or (piece.segment_id, piece.piece) != (job.segment_id, job.piece):
            return out  # finalised meanwhile: a stale partial is worth nothing
        piece.in_flight -= 1
        if result is not None and job.seq > piece.last_partial_seq:
            piece.last_partial_seq = job.seq
            piece.latest = (job, result)
            if self.filter.reject_reason(result.text, result.avg_logprob, result.no_speech_prob) is None:
                if piece.agreement.update(result.text) and self.settings.partials:
                    out.events.append(Partial(t=job.end_s, text=piece.agreement.text, start_s=job.start_s))
        out.extend(self._early_final() or self._after_audio())
        return out

    @property
    def finals_pending(self) -> int:
        """Final jobs issued whose event has not been emitted yet."""
        return len(self._finals_due)

    # -- internals --------------------------------------------------------------------------
    def _check(self, segment_id: int, what: str) -> None:
        if self._piece is None or self._piece.segment_id != segment_id:
            open_id = None if self._piece is None else self._piece.segment_id
            raise ValueError(
                f"stream {self.stream!r}: segment {what} for segment {segment_id}, but the open segment is "
                f"{open_id}; the segmenter must open a segment before its audio and close it once"
            )

    def _open(self, item: SegmentOpened) -> SttOutput:
        out = SttOutput()
        if self._piece is not None:  # the segmenter never does this; finalise rather than lose speech
            out.jobs.append(self._final(self._piece_end_s(self._piece)))
        preroll = np.asarray(item.preroll, dtype=np.int16)
        self._piece = _Piece(item.segment_id, 0, item.onset_s, round(item.preroll_start_s * self.rate))
        self._piece.append(preroll, mark=False)
        self._piece.partial_mark = self._piece.n
        return out

    def _after_audio(self) -> SttOutput:
        """Cut an over-long piece, then issue a partial if enough new audio came and none is in flight.

        A pause of ``speculative_final_ms`` also issues one: if the segment closes in that pause,
        the final reuses this decode (``_close``) instead of starting one after the hangover.
        """
        out = SttOutput()
        piece = self._piece
        if piece is None or self._speechless(piece):
            return out
        if piece.n >= self._max:
            out.jobs.append(self._cut(piece))
            piece = self._piece
            assert piece is not None
        speculate = (0 < self.settings.speculative_final_ms <= piece.silent_ms) and not piece.speculated
        # A pause's decode does not wait for a partial that heard no pause (it may have cut the last word).
        speculate = speculate and (piece.in_flight == 0 or piece.in_flight == 1 and piece.in_flight_n <= piece.voiced_n)
        due = self.settings.partials and piece.n - piece.partial_mark >= self._interval
        if speculate or (due and not piece.in_flight):
            piece.speculated = piece.speculated or speculate
            piece.partial_mark = piece.in_flight_n = piece.n
            piece.in_flight += 1
            job = self._job(piece, "partial", self._piece_end_s(piece))
            out.jobs.append(dataclasses.replace(job, early=True) if speculate else job)
        return out

    def _cut(self, piece: _Piece) -> DecodeJob:
        """Finalise the piece at its quietest frame within the last ``cut_search_ms``; the rest opens the next piece."""
        audio = piece.audio()
        candidates = [(power, end) for end, power in piece.marks if end >= piece.n - self._search and end < piece.n]
        cut = min(candidates)[1] if candidates else piece.n
        head = _Piece(piece.segment_id, piece.piece, piece.start_s, piece.audio_start, [audio[:cut]], [], cut)
        job = self._final_for(head, (piece.audio_start + cut) / self.rate)
        rest = _Piece(
            piece.segment_id, piece.piece + 1, (piece.audio_start + cut) / self.rate, piece.audio_start + cut
        )
        rest.append(audio[cut:], mark=False)
        rest.marks = [(end - cut, power) for end, power in piece.marks if end > cut]
        self._piece = rest
        return job

    def _close(self, end_s: float) -> SttOutput:
        """The segment ended at ``end_s``: its final, from a new decode or from a partial that heard it all.

        A partial decoded from audio reaching past the end of speech (issued during the
        segmenter's hangover) is the final's decode already: reuse it rather than decode again.
        """
        assert self._piece is not None
        if self._speechless(self._piece):
            self._piece = None  # the pause after an early final, and no more speech: nothing left to transcribe
            return SttOutput()
        latest = self._piece.latest
        job = self._final(end_s)
        if latest is not None and latest[0].end_s >= end_s:
            out = self._final_result(job, latest[1])
            out.reused += 1
            return out
        return SttOutput(jobs=[job])

    def _early_final(self) -> SttOutput | None:
        """Adaptive end of speech: the pause's decode as the final before the hangover is over.

        Only when the pause has lasted ``early_final_ms``, a decode issued in it has come back (it heard
        all the speech and some pause), and Whisper did not end the text mid-thought ("...", ",", "-").
        Nothing is retracted: speech that resumes in the same segment opens the next piece, which gets
        its own final; if none comes, that piece ends with no final.
        """
        piece = self._piece
        early_ms = self.settings.early_final_ms
        if piece is None or not early_ms or piece.silent_ms < early_ms or piece.latest is None:
            return None
        job, result = piece.latest
        heard_n = round(job.end_s * self.rate) - piece.audio_start
        if heard_n <= piece.voiced_n or piece.voiced_n == 0 or trails_off(result.text):
            return None
        if self.filter.reject_reason(result.text, result.avg_logprob, result.no_speech_prob) is not None:
            return None  # not speech after all: the segment's own final decides
        end_s = (piece.audio_start + piece.voiced_n) / self.rate
        final = self._final_for(piece, end_s)
        rest = _Piece(piece.segment_id, piece.piece + 1, self._piece_end_s(piece), piece.audio_start + piece.n,
                      silent_ms=piece.silent_ms, after_early_final=True)
        self._piece = rest
        out = self._final_result(final, result)
        out.reused += 1
        out.early += 1
        return out

    @staticmethod
    def _speechless(piece: _Piece) -> bool:
        return piece.after_early_final and piece.voiced_n == 0

    def _final(self, end_s: float) -> DecodeJob:
        assert self._piece is not None
        job = self._final_for(self._piece, end_s)
        self._piece = None
        return job

    def _final_for(self, piece: _Piece, end_s: float) -> DecodeJob:
        job = self._job(piece, "final", max(end_s, piece.start_s))
        self._finals_due.append(job.seq)
        return job

    def _job(self, piece: _Piece, kind: JobKind, end_s: float) -> DecodeJob:
        self._seq += 1
        return DecodeJob(
            self.stream, piece.segment_id, piece.piece, kind, self._seq, piece.audio().copy(), self.rate,
            piece.start_s, end_s, self._prompt, piece.agreement.text or None, self.language,
        )

    def _piece_end_s(self, piece: _Piece) -> float:
        return (piece.audio_start + piece.n) / self.rate

    def _final_result(self, job: DecodeJob, result: DecodeResult | None) -> SttOutput:
        if job.seq not in self._finals_due or job.seq in self._finals_done:
            raise ValueError(f"stream {self.stream!r}: result for final job {job.seq}, which is not pending")
        if result is None:
            raise ValueError(f"stream {self.stream!r}: final job {job.seq} has no result; finals are never dropped")
        out = SttOutput()
        reason = self.filter.reject_reason(result.text, result.avg_logprob, result.no_speech_prob)
        if reason is None:
            self._finals_done[job.seq] = Final(
                t=job.end_s, text=clean_text(result.text), start_s=job.start_s, end_s=job.end_s,
                avg_logprob=result.avg_logprob, no_speech_prob=result.no_speech_prob,
            )
        else:
            self._finals_done[job.seq] = job.end_s
            out.suppressed.append(reason)
        while self._finals_due and self._finals_due[0] in self._finals_done:
            final = self._finals_done.pop(self._finals_due.popleft())
            if isinstance(final, Final):
                out.events.append(final)
            else:
                out.wordless.append(final)
        return out
