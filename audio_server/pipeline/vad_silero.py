"""Optional Silero speech classifier (``vad.backend = "silero"``): the ONNX model faster-whisper ships.

The model takes 512-sample windows at 16 kHz (32 ms, plus 64 samples of context) and carries an
LSTM state, so each stream keeps its own state and window buffer; the ONNX session is shared by
every stream of the process (``run`` is thread-safe and stateless). 8 kHz audio is upsampled 2×
by linear interpolation. A 20 ms frame is judged by the newest probability available at its end.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODEL_RATE = 16000
WINDOW = 512
CONTEXT = 64


@functools.lru_cache(maxsize=1)
def _session() -> object:
    """One ONNX session per process; ImportError or FileNotFoundError say what is missing."""
    import faster_whisper
    import onnxruntime

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: vad.backend=silero needs faster-whisper>=1.2, "
                                "which ships the Silero model; or use vad.backend=webrtc")
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=options)


class SileroClassifier:
    """Speech or not for each frame of one stream, from Silero's speech probability."""

    every_frame = True  # the LSTM state and the 512-sample windows need the whole stream

    def __init__(self, rate: int, threshold: float) -> None:
        if rate not in (8000, MODEL_RATE):
            raise ValueError(f"vad.backend=silero handles 8000 or 16000 Hz, not {rate}")
        self._session = _session()
        self._upsample = rate == 8000
        self._threshold = threshold
        self._pending = np.zeros(0, dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._last = np.float32(0.0)  # the previous frame's last sample, for interpolation
        self.probability = 0.0

    def __call__(self, samples: np.ndarray) -> bool:
        x = samples.astype(np.float32) / 32768.0
        if self._upsample and len(x):
            between = (np.concatenate([[self._last], x[:-1]]) + x) / 2
            self._last = x[-1]
            x = np.stack([between, x], axis=1).reshape(-1)
        self._pending = np.concatenate([self._pending, x])
        while len(self._pending) >= WINDOW:
            window, self._pending = self._pending[:WINDOW], self._pending[WINDOW:]
            batch = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
            self._context = window[-CONTEXT:]
            self.probability = float(np.ravel(out)[0])
        return self.probability >= self._threshold
