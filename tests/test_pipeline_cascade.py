"""The speech-confirmation cascade: Silero batched across streams, confirming what webrtcvad's gate hears."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callbot.audio_server.classify.confirm import SpeechSettings
from callbot.audio_server.classify.silero_batch import SileroBatcher, SileroStream, model_path
from callbot.audio_server.pipeline.stream import StreamPipeline
from callbot.audio_server.stream_params import StreamParams
from callbot.config import Settings
from callbot.events import BargeIn, SpeechStarted

EVAL = Path(__file__).parent / "fixtures" / "eval"
CALL = "5b0e8a4e-2a43-4a4f-b1f0-6d0c5bb0f0a1"
SETTINGS = Settings()
WEBRTC_ONLY = SpeechSettings(confirm=False, echo=False)


def pcm(name: str) -> tuple[bytes, dict]:
    samples, rate = sf.read(EVAL / f"{name}.flac", dtype="int16")
    assert rate == 16000
    return samples.astype("<i2").tobytes(), json.loads((EVAL / f"{name}.json").read_text())


def events(data: bytes, speech: SpeechSettings | None = None, step: int = 640) -> list:
    pipeline = StreamPipeline(StreamParams(CALL, 16000, 1500, 300), SETTINGS, speech=speech)
    out = [e for i in range(0, len(data), step) for e in pipeline.feed(data[i:i + step]).events]
    return [e for e in out + pipeline.flush().events if e.type != "amd"]


def test_batched_model_gives_the_shipped_models_probabilities_stream_by_stream() -> None:
    import onnxruntime

    shipped = onnxruntime.InferenceSession(str(model_path()), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    audio = [(rng.standard_normal(16000) * 2000 * np.sin(2 * np.pi * (1 + k) * t) ** 2).astype(np.int16)
             for k in range(3)]
    streams, batcher = [SileroStream(16000) for _ in audio], SileroBatcher()
    for i in range(0, 16000, 320):
        for stream, x in zip(streams, audio):
            if stream.push(x[i:i + 320], wanted=True):
                batcher.enqueue(stream)
        batcher.run()
    assert batcher.calls == 31  # one call per 32 ms window for all three streams
    for stream, x in zip(streams, audio):
        windows = (x[: 31 * 512].astype(np.float32) / 32768).reshape(-1, 512)
        context = np.concatenate([np.zeros((1, 64), np.float32), windows[:-1, -64:]])
        state = np.zeros((1, 1, 128), np.float32)
        expected, _, _ = shipped.run(None, {"input": np.concatenate([context, windows], 1), "h": state, "c": state})
        assert np.allclose([p for _, p in stream.results], expected, atol=1e-5)


@pytest.mark.parametrize("name", ["music_synth_02", "music_real_02", "tone_alert_chime", "tone_dtmf"])
def test_music_and_tones_that_fool_webrtcvad_never_barge_in_with_the_cascade(name: str) -> None:
    data, _ = pcm(name)
    assert any(isinstance(e, BargeIn) for e in events(data, WEBRTC_ONLY)), "no longer a hard case"
    assert events(data) == []  # not even speech_started: the segment was never confirmed


@pytest.mark.parametrize("name", ["speech_espeak_00", "speech_real_00", "speech_espeak_16"])
def test_speech_barges_in_at_the_same_onset_as_webrtcvad_alone(name: str) -> None:
    data, sidecar = pcm(name)
    cascade = [e for e in events(data) if isinstance(e, (BargeIn, SpeechStarted))]
    plain = [e for e in events(data, WEBRTC_ONLY) if isinstance(e, (BargeIn, SpeechStarted))]
    assert [type(e) for e in cascade] == [SpeechStarted, BargeIn]
    assert cascade[1].onset_s == plain[1].onset_s == cascade[0].t
    assert abs(cascade[1].onset_s - sidecar["speech"][0][0]) < 0.1
    # confirmed long before the 1.5 s mark: never a later decision (earlier where Silero held a weak
    # phoneme that webrtcvad's guards dropped, so no 20 ms gap had to be bridged)
    assert cascade[1].t <= plain[1].t and cascade[1].duration_ms == 1500


def test_decisions_do_not_depend_on_message_sizes() -> None:
    data, _ = pcm("speech_real_04")
    assert events(data, step=640) == events(data, step=2222) == events(data, step=7)


def test_a_shared_batcher_serves_many_streams_with_one_call_per_window() -> None:
    names = ["speech_espeak_03", "music_synth_09", "speech_real_07"]
    datas = [pcm(n)[0] for n in names]
    batcher = SileroBatcher()
    pipelines = [StreamPipeline(StreamParams(CALL, 16000, 1500, 300), SETTINGS, batcher=batcher) for _ in names]
    got: list[list] = [[] for _ in names]
    longest = max(len(d) for d in datas)
    for i in range(0, longest, 640):
        for p, d in zip(pipelines, datas):
            if i < len(d):
                p.accept(d[i:i + 640])
        batcher.run()
        for k, p in enumerate(pipelines):
            got[k] += [e for e in p.advance().events if e.type != "amd"]
    for k, p in enumerate(pipelines):
        got[k] += [e for e in p.flush().events if e.type != "amd"]
    assert got == [events(d) for d in datas]
    assert batcher.calls < sum(p.classifier.windows_run for p in pipelines)  # windows of several streams per call


def test_out_line_is_what_the_pipelines_own_amd_hears() -> None:
    """``PipelineOutput.line``: the plain [vad] gate's frames, which the AMD is fed (not the cascade's keener
    gate in ``decisions``, which voices a few noise frames of a silent callee and would delay INITIALSILENCE)."""
    from callbot.audio_server.amd.detector import AmdDetector, AmdParams

    samples, rate = sf.read(Path(__file__).parent / "fixtures" / "amd" / "human_en_us_silent.wav", dtype="int16",
                            always_2d=True)
    data = samples[:, 0].astype("<i2").tobytes()
    pipeline = StreamPipeline(StreamParams(CALL, rate, 1500, 300), SETTINGS)
    fed = {"line": AmdDetector(AmdParams(SETTINGS.amd)), "decisions": AmdDetector(AmdParams(SETTINGS.amd))}
    own, heard = [], {k: [] for k in fed}
    for i in range(0, len(data), 640):
        out = pipeline.feed(data[i:i + 640])
        assert len(out.line) == len(out.decisions) == len(out.frames)
        own += [e for e in out.events if e.type == "amd"]
        for key, amd in fed.items():
            heard[key] += [e for d in getattr(out, key) for e in amd.feed(d)]
    assert [(e.cause, e.t) for e in own] == [(e.cause, e.t) for e in heard["line"]] == [("INITIALSILENCE", 2.5)]
    assert heard["decisions"][0].t > 2.5  # the keener gate's noise frames count as voice
