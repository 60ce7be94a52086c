"""mod_audio_stream for one channel: media-bug capture, WS frames, and the ``mod_audio_stream::*`` events.

Behaviour as captured from mod_audio_stream ec2a781 (see wire-facts 1.3–1.7):
- ``mono`` carries the callee only; ``mixed`` = callee + robot playback summed; ``stereo`` =
  L callee, R robot. Mixed/stereo emit a frame only when the robot writes audio; meanwhile the
  callee side piles up in the bug (so it arrives late, as on the real switch).
- Messages are 20 ms, or ``STREAM_BUFFER_SIZE`` ms (a multiple of 20) of audio.
- After the upgrade: queued audio first, then the metadata text frame, then ``::connect``.
- Server text frames are turned into events on the channel's next media tick: a valid
  ``streamAudio`` writes a temp file and fires ``::play`` (nothing is played), anything else fires
  ``::json`` with the text verbatim.
- Server Close → ``::disconnect`` (the bug stays attached); errors → ``::error`` and the bug closes;
  ``stop`` → Close 1000 "Normal closure", no event.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import logging
import os
import tempfile
from typing import Any, Protocol

import numpy as np

from callbot.simswitch.host import SwitchHost
from callbot.simswitch.media.line_echo import LineEcho
from callbot.simswitch.media.ws_client import WsClient
from callbot.simswitch.media.ws_frames import WsError, WsUrl, extra_headers

log = logging.getLogger(__name__)

_RAW_RATES = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48", 64000: ".r64"}
_EXT = {"wav": ".wav", "mp3": ".mp3", "ogg": ".ogg", "pcmu": ".ulaw", "pcma": ".alaw"}  # non-raw: UNCONFIRMED


def _seconds(value: str | None) -> float:
    """A positive whole number of seconds, else 0 (off; upstream leaves it undefined when unset)."""
    return float(value) if value and value.isdigit() and 0 < int(value) <= 3600 else 0.0


def _compact(obj: object) -> str:
    """cJSON_PrintUnformatted: no spaces, UTF-8 kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class TappedChannel(Protocol):
    """What the media bug needs of the channel it is attached to (``calls.channel.Channel`` has it).

    For a line echo it also reads, when present, ``spec`` (the callee: ``echo_db``, ``echo_delay_ms``)
    and ``prompts`` (the PromptQueue whose last written frame comes back as echo).
    """

    uuid: str
    variables: dict[str, str]
    switch: SwitchHost

    def fire_custom(self, subclass: str, body: str, vt: float | None = None) -> None:
        """Fire ``CUSTOM <subclass>`` about this channel."""

    def record(self, kind: str, vt: float | None = None, **fields: Any) -> None:
        """Add an entry to the channel's ground truth."""

    def on_stream_detached(self, stream: "AudioStream") -> None:
        """The bug is gone: MEDIA_BUG_STOP."""


class AudioStream:
    """The ``audio_stream`` media bug on one channel and its WebSocket connection."""

    def __init__(self, channel: TappedChannel, url: WsUrl, mix: str, rate: int, metadata: str | None,
                 buffer_ms: int) -> None:
        s = channel.switch.settings
        self.channel = channel
        self.mix, self.rate, self.metadata = mix, rate, metadata
        self.frame_samples = rate // 50
        channels = 2 if mix == "stereo" else 1
        self.message_bytes = self.frame_samples * 2 * channels * (buffer_ms // 20)
        self.paused = False
        self.bug_attached = True
        self.samples_sent = 0  # stream time = samples_sent / rate (per channel)
        self.started_tick: int | None = None
        self._out = bytearray()
        self._backlog: collections.deque[np.ndarray] = collections.deque(
            maxlen=max(1, int(s.bug_buffer_max_s * 50)))
        self._texts: list[tuple[float, str]] = []
        self._temp_files: list[str] = []
        self.line_echo = _line_echo(channel, rate)
        self.client = WsClient(url, handshake_timeout=s.ws_handshake_timeout_s, close_timeout=s.ws_close_timeout_s,
                               queue_max=s.ws_queue_max, max_message=s.ws_max_message_bytes,
                               extra_headers=extra_headers(channel.variables.get("STREAM_EXTRA_HEADERS")),
                               heartbeat_s=_seconds(channel.variables.get("STREAM_HEART_BEAT")),
                               on_text=self._on_text, on_close=self._on_close, on_error=self._on_error)
        self._task = asyncio.create_task(self._connect())

    # ---- connection -------------------------------------------------------------------------

    async def _connect(self) -> None:
        work = self.channel.switch.on_media_work  # a lockstep run: the handshake is media work, taking no call time
        if work is not None:
            work(1)
        try:
            await self.client.connect()
        except WsError as exc:
            self._on_error(exc.code, exc.message)
            return
        finally:
            if work is not None:
                work(-1)
        if self.metadata:
            self.client.send_text(self.metadata)
        self.channel.fire_custom("mod_audio_stream::connect", _compact({"status": "connected"}))

    def _on_text(self, text: str) -> None:
        switch = self.channel.switch
        if len(self._texts) < switch.settings.max_pending_texts:
            self._texts.append((switch.clock.now(), text))
        if switch.on_media_work is not None:
            switch.on_media_work(-1)

    def _on_close(self, code: int, reason: str) -> None:
        body = _compact({"status": "disconnected", "message": {"code": code, "reason": reason}})
        self.channel.fire_custom("mod_audio_stream::disconnect", body)
        self.channel.record("stream_disconnected", code=code, reason=reason)

    def _on_error(self, code: int, message: str) -> None:
        if not self.bug_attached:
            return
        body = _compact({"status": "error", "message": {"code": code, "error": message}})
        self.channel.fire_custom("mod_audio_stream::error", body)
        self.channel.record("stream_error", code=code, error=message)
        self.detach()

    def detach(self) -> None:
        """Remove the media bug: MEDIA_BUG_STOP, temp files deleted."""
        if not self.bug_attached:
            return
        self.bug_attached = False
        for path in self._temp_files:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.channel.on_stream_detached(self)

    async def stop(self, text: str | None = None) -> None:
        """``uuid_audio_stream stop [text]``: final text, Close 1000, wait for the peer (blocks the api)."""
        if text:
            self.client.send_text(text)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await self.client.close()
        self.detach()

    def hangup(self) -> None:
        """The channel hung up while streaming: Close 1000 in the background, no event; the channel
        removes the bug (``detach``) when its session ends."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        task = asyncio.create_task(self.client.close())
        self.channel.switch.keep(task)

    def abort(self) -> None:
        self.client.abort()
        if self._task is not None:
            self._task.cancel()

    # ---- control ----------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self.client.send_text(text)

    def set_paused(self, paused: bool) -> None:
        """pause/resume: no frames (not even silence) while paused; buffered audio is flushed."""
        self.paused = paused
        self._out.clear()
        self._backlog.clear()

    # ---- media tick -------------------------------------------------------------------------

    def on_media(self, read: np.ndarray, write: np.ndarray | None) -> None:
        """One 20 ms tick of callee (``read``) and robot (``write``) audio at the stream rate."""
        if self.line_echo is not None:  # the far end returns the playback whether or not we listen
            prompts = getattr(self.channel, "prompts", None)
            written = write if write is not None or prompts is None else prompts.written_frame(self.rate)
            read = self.line_echo.add(read, written)
        if self.paused or not self.bug_attached or self.client.state in ("closing", "closed"):
            return
        if self.mix == "mono":
            chunk = read
        else:
            self._backlog.append(read)
            if write is None:
                return
            r = self._backlog.popleft()
            if self.mix == "mixed":
                chunk = np.clip(r.astype(np.int32) + write, -32768, 32767).astype(np.int16)
            else:
                chunk = np.empty(len(r) * 2, np.int16)
                chunk[0::2], chunk[1::2] = r, write
        self._out += chunk.astype("<i2", copy=False).tobytes()
        while len(self._out) >= self.message_bytes:
            if self.channel.switch.on_media_work is not None:
                self.channel.switch.on_media_work(1)
            self.client.send_binary(bytes(self._out[:self.message_bytes]))
            del self._out[:self.message_bytes]
        self.samples_sent += self.frame_samples

    def deliver_texts(self, vt: float) -> list[tuple[float, str]]:
        """Server text frames that arrived before this tick, removed from the pending list."""
        due = [(t, x) for t, x in self._texts if t <= vt]
        if due:
            self._texts = self._texts[len(due):]
        return due

    def play_file(self, text: str) -> str | None:
        """A valid streamAudio message: write its audio to a temp file and return the ::play body."""
        try:
            msg = json.loads(text)
        except ValueError:
            return None
        if not isinstance(msg, dict) or msg.get("type") != "streamAudio" or not isinstance(msg.get("data"), dict):
            return None
        data = dict(msg["data"])
        kind, audio = data.get("audioDataType"), data.pop("audioData", None)
        if kind == "raw":
            ext = _RAW_RATES.get(data.get("sampleRate"))  # type: ignore[arg-type]
        else:
            ext = _EXT.get(kind) if isinstance(kind, str) else None
        if ext is None or not isinstance(audio, str):
            log.error("streamAudio failed validation", extra={"call": self.channel.uuid})
            return None
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            log.error("streamAudio audioData is not base64", extra={"call": self.channel.uuid})
            return None
        path = os.path.join(tempfile.gettempdir(), f"{self.channel.uuid}_{len(self._temp_files)}.tmp{ext}")
        with open(path, "wb") as f:
            f.write(raw)
        self._temp_files.append(path)
        data["file"] = path
        return _compact(data)


def _line_echo(channel: TappedChannel, rate: int) -> LineEcho | None:
    """The callee's line echo, when its dial string asked for one (recorded in the call's truth)."""
    spec = getattr(channel, "spec", None)
    level_db = getattr(spec, "echo_db", None)
    if level_db is None:
        return None
    delay_ms = float(getattr(spec, "echo_delay_ms", 0.0))
    channel.record("line_echo", level_db=level_db, delay_ms=delay_ms)
    return LineEcho(rate, level_db, delay_ms)
