"""Silero VAD v6 (the ONNX model faster-whisper ships), batched across streams: one ONNX call per step.

The shipped graph runs its LSTM along the batch axis (a batch of windows is one stream's
sequence), so it cannot serve several streams at once. ``batched_model_bytes`` rewrites that one
edge of the graph at load time: the Transpose in front of the LSTM puts the windows on the LSTM's
batch axis instead of its time axis, and ``h``/``c`` get a ``streams`` dimension. One call then
advances every queued stream by one 32 ms window, each with its own state; tests check the
probabilities against the shipped model run stream by stream. The edit works on the protobuf
wire format directly (a dozen fields), so nothing beyond onnxruntime is needed.

Sans-I/O: ``SileroStream`` buffers one stream's audio and queues whole windows; ``SileroBatcher.run``
is the only place that calls the model, once per loop turn for all streams.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODEL_RATE = 16000
WINDOW = 512  # samples at 16 kHz: 32 ms
CONTEXT = 64  # samples of the previous window the model sees in front of each window
HIDDEN = 128


class SileroModelError(RuntimeError):
    """The Silero model is missing, or its graph is not the one ``batched_model_bytes`` knows how to edit."""


def model_path() -> Path:
    import faster_whisper

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise SileroModelError(f"{path} is missing: speech confirmation needs faster-whisper>=1.2.1, which "
                               "ships the Silero v6 model (or set speech.confirm = false)")
    return path


# --- protobuf wire format: just enough to read and rewrite an ONNX ModelProto -------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, value): bytes for length-delimited and fixed fields, int for varints."""
    out: list[tuple[int, int, bytes | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, wire, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            out.append((number, wire, buf[pos:pos + size]))
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            out.append((number, wire, buf[pos:pos + size]))
            pos += size
        else:
            raise SileroModelError(f"unsupported protobuf wire type {wire} in the Silero model")
    return out


def _enc_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _encode(fields: list[tuple[int, int, bytes | int]]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _enc_varint(number << 3 | wire)
        if wire == 0:
            out += _enc_varint(int(value))
        elif wire == 2:
            assert isinstance(value, bytes)
            out += _enc_varint(len(value)) + value
        else:
            assert isinstance(value, bytes)
            out += value
    return bytes(out)


def _strings(fields: list[tuple[int, int, bytes | int]], number: int) -> list[str]:
    return [bytes(v).decode() for n, w, v in fields if n == number and w == 2]  # type: ignore[arg-type]


# ONNX field numbers used below.
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 1, 11, 12, 13
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 4, 5
ATTR_NAME, ATTR_INTS, ATTR_TYPE, ATTR_TYPE_INTS = 1, 8, 20, 7
VALUE_NAME, VALUE_TYPE, TYPE_TENSOR, TENSOR_SHAPE, SHAPE_DIM, DIM_PARAM = 1, 2, 1, 2, 1, 2
STATE_NAMES = {"h", "c", "hn", "cn"}


def _perm_attribute(perm: list[int]) -> bytes:
    fields: list[tuple[int, int, bytes | int]] = [(ATTR_NAME, 2, b"perm")]
    fields += [(ATTR_INTS, 0, p) for p in perm]
    fields.append((ATTR_TYPE, 0, ATTR_TYPE_INTS))
    return _encode(fields)


def _state_with_streams_axis(value_info: bytes) -> bytes:
    """A ValueInfo of shape [1, 1, 128] with its second dimension made the symbolic ``streams``."""
    info = _fields(value_info)
    out_info = []
    for n, w, v in info:
        if n == VALUE_TYPE:
            tensor = [(tn, tw, tv) for tn, tw, tv in _fields(v) if tn == TYPE_TENSOR]  # type: ignore[arg-type]
            if len(tensor) != 1:
                raise SileroModelError("Silero state input is not a tensor")
            tensor_fields = _fields(tensor[0][2])  # type: ignore[arg-type]
            new_tensor = []
            for sn, sw, sv in tensor_fields:
                if sn == TENSOR_SHAPE:
                    dims = [d for d in _fields(sv) if d[0] == SHAPE_DIM]  # type: ignore[arg-type]
                    if len(dims) != 3:
                        raise SileroModelError("Silero state is not [1, 1, 128]")
                    dims[1] = (SHAPE_DIM, 2, _encode([(DIM_PARAM, 2, b"streams")]))
                    sv = _encode(dims)
                new_tensor.append((sn, sw, sv))
            v = _encode([(TYPE_TENSOR, 2, _encode(new_tensor))])
        out_info.append((n, w, v))
    return _encode(out_info)


def batched_model_bytes(shipped: bytes) -> bytes:
    """The shipped Silero v6 graph with its LSTM batch axis across streams (see the module docstring)."""
    model = _fields(shipped)
    graphs = [v for n, w, v in model if n == MODEL_GRAPH and w == 2]
    if len(graphs) != 1:
        raise SileroModelError("the Silero model has no graph")
    graph = _fields(graphs[0])  # type: ignore[arg-type]
    nodes = [_fields(v) for n, w, v in graph if n == GRAPH_NODE]  # type: ignore[arg-type]
    lstm = [f for f in nodes if _strings(f, NODE_OP_TYPE) == ["LSTM"]]
    if len(lstm) != 1:
        raise SileroModelError("the Silero model has no single LSTM: faster-whisper's model changed")
    lstm_input = _strings(lstm[0], NODE_INPUT)[0]
    edited = 0
    new_graph: list[tuple[int, int, bytes | int]] = []
    for n, w, v in graph:
        if n == GRAPH_VALUE_INFO:
            continue  # stale shape hints for the old layout
        if n == GRAPH_NODE:
            node = _fields(v)  # type: ignore[arg-type]
            if _strings(node, NODE_OP_TYPE) == ["Transpose"] and _strings(node, NODE_OUTPUT) == [lstm_input]:
                node = [f for f in node if f[0] != NODE_ATTRIBUTE] + [(NODE_ATTRIBUTE, 2, _perm_attribute([2, 0, 1]))]
                v = _encode(node)
                edited += 1
        elif n in (GRAPH_INPUT, GRAPH_OUTPUT):
            name = _strings(_fields(v), VALUE_NAME)  # type: ignore[arg-type]
            if name and name[0] in STATE_NAMES:
                v = _state_with_streams_axis(v)  # type: ignore[arg-type]
        new_graph.append((n, w, v))
    if edited != 1:
        raise SileroModelError("the Silero model's LSTM is not fed by a Transpose: faster-whisper's model changed")
    return _encode([(n, w, _encode(new_graph) if n == MODEL_GRAPH else v) for n, w, v in model])


def _options() -> object:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return options


@functools.lru_cache(maxsize=1)
def batched_session() -> object:
    """One session per process of the stream-batched model; every stream's windows go through it."""
    import onnxruntime

    data = batched_model_bytes(model_path().read_bytes())
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"], sess_options=_options())


class SileroStream:
    """One stream's side of the classifier: its 512-sample windows, LSTM state and probabilities.

    ``push`` takes every frame (the 64-sample context must follow the audio); a window is queued
    for the model only when ``wanted`` (the cheap gate heard something lately). After
    ``reset_windows`` unwanted windows the LSTM state is cleared, so the next sound starts fresh.
    Results land in ``results`` as (stream sample where the window ends, probability).
    """

    def __init__(self, rate: int, reset_windows: int = 16) -> None:
        if rate not in (8000, MODEL_RATE):
            raise ValueError(f"speech confirmation handles 8000 or 16000 Hz streams, not {rate}")
        self._upsample = rate == 8000
        # [the next window's context | samples not yet in a window]: a window is a copy of one slice
        self._buffer = np.zeros(CONTEXT + 2 * WINDOW, dtype=np.float32)
        self._filled = CONTEXT  # the first window's context is silence
        self._last = np.float32(0.0)
        self._model_samples = 0  # model-rate samples taken in, for dating windows
        self._idle = reset_windows
        self._reset_windows = reset_windows
        self.h = np.zeros((HIDDEN,), dtype=np.float32)
        self.c = np.zeros((HIDDEN,), dtype=np.float32)
        self.pending: list[tuple[int, np.ndarray]] = []
        self.results: list[tuple[int, float]] = []
        self.windows_run = 0

    def push(self, samples: np.ndarray, wanted: bool) -> bool:
        """Add one frame; True when a window was queued (the batcher must run this stream)."""
        size = len(samples) * (2 if self._upsample else 1)
        if self._filled + size > len(self._buffer):
            self._buffer = np.concatenate([self._buffer[:self._filled], np.zeros(size + WINDOW, dtype=np.float32)])
        into = self._buffer[self._filled:self._filled + size]
        if self._upsample and len(samples):
            x = samples.astype(np.float32) / 32768.0
            between = (np.concatenate([[self._last], x[:-1]]) + x) / 2
            self._last = x[-1]
            into[:] = np.stack([between, x], axis=1).reshape(-1)
        else:
            np.multiply(samples, np.float32(1 / 32768), out=into, dtype=np.float32)  # x / 32768, exactly
        self._filled += size
        queued = False
        start = 0  # where the next window's context starts in the buffer
        while self._filled - start >= CONTEXT + WINDOW:
            self._model_samples += WINDOW
            end = self._model_samples // 2 if self._upsample else self._model_samples
            if wanted:
                if self._idle >= self._reset_windows and not self.pending:
                    self.h[:] = 0.0
                    self.c[:] = 0.0
                self._idle = 0
                self.pending.append((end, self._buffer[start:start + CONTEXT + WINDOW].copy()))
                queued = True
            else:
                self._idle += 1
            start += WINDOW  # the window's last CONTEXT samples are the next one's context
        if start:
            self._filled -= start
            self._buffer[:self._filled] = self._buffer[start:start + self._filled]
        return queued


class SileroBatcher:
    """Runs the model for every stream with a queued window: one ONNX call per step, all streams at once.

    The server owns one and calls ``run`` once per loop turn, after feeding every stream that had
    audio; in-process a pipeline owns a batcher of its own and runs it after each message.
    """

    def __init__(self, max_batch: int = 256) -> None:
        self._session = batched_session()
        self._queued: list[SileroStream] = []
        self._max_batch = max_batch
        self.calls = 0
        self.windows = 0

    def enqueue(self, stream: SileroStream) -> None:
        if stream.pending and stream not in self._queued:
            self._queued.append(stream)

    def run(self) -> int:
        """Classify every queued window; returns how many. A stream's windows run in order, one per step."""
        done = 0
        while self._queued:
            batch, self._queued = self._queued[:self._max_batch], self._queued[self._max_batch:]
            if len(batch) == 1:  # one stream (a pipeline's own batcher): views, not stacked copies
                windows, h, c = batch[0].pending[0][1][None], batch[0].h[None, None], batch[0].c[None, None]
            else:
                windows = np.stack([s.pending[0][1] for s in batch])
                h = np.stack([s.h for s in batch])[None]
                c = np.stack([s.c for s in batch])[None]
            probs, hn, cn = self._session.run(None, {"input": windows, "h": h, "c": c})  # type: ignore[attr-defined]
            self.calls += 1
            for i, stream in enumerate(batch):
                end, _ = stream.pending.pop(0)
                stream.h, stream.c = hn[0, i].copy(), cn[0, i].copy()
                stream.results.append((end, float(probs[i])))
                stream.windows_run += 1
                if stream.pending:
                    self._queued.append(stream)
            done += len(batch)
        self.windows += done
        return done
