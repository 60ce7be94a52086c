"""Fault suite, a client flooding the audio server at 100x real time beside a healthy call's stream.

The flooder connects as mod_audio_stream would (no replay flag, no token: loopback), sends loud
noise at 100x real time, and reconnects as soon as it is refused, for the whole of the healthy
call's barge-in. The healthy call is a real one: simswitch, the audio server and `callbot call`
as processes, in real time. Bounds: the healthy barge-in keeps its stream time (onset and
detection within 40 ms of a call without the flood) and the robot sends uuid_break within
BREAK_BOUND_S of the 1.5 s mark.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from callbot.audio_format import FRAMES_PER_S, frame_samples
from callbot.config import Settings
from callbot.resources import prompts_dir
from faults_testkit import audio_server, free_port, report_of, robot_call, robot_env, simswitch

pytestmark = pytest.mark.slow
FLOOD_SPEED = 100  # x real time
MIN_SPEECH_S = Settings().bargein.min_speech_ms / 1000
BREAK_BOUND_S = 0.25  # call seconds from the 1.5 s mark to the robot's uuid_break
STREAM_TIME_TOLERANCE_S = 0.04
ONSET_S, DETECTED_S = 1.48, 2.98  # the long_reply fixture's barge-in in stream time, without any flood
SCENARIO = """
[scenario]
name = "fault_flood"
language = "en"
start = "greeting"
audio_dir = "{audio_dir}"

[steps.greeting]
prompt = "greeting.wav"
listen_s = 3.0
on = {{ default = "bye" }}

[steps.bye]
prompt = "callback.wav"
barge_in = false
disposition = "callback"
"""


class Flooder:
    """Streams at FLOOD_SPEED x real time to fresh stream uuids until stopped; counts what the server did."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.connections = 0
        self.refusals: list[dict] = []  # error events read before the close
        self.closes: list[tuple[int | None, str]] = []  # how the server ended each connection (code, reason)
        self.seconds_sent = 0.0
        rng = np.random.default_rng(11)
        frame = (rng.standard_normal(frame_samples(16000)) * 8000).clip(-32768, 32767).astype("<i2").tobytes()
        self.burst = [frame] * (FLOOD_SPEED // 10)  # 100 ms of wall time carries this many 20 ms frames ...
        self.thread = threading.Thread(target=self._run, name="flooder", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            url = f"ws://127.0.0.1:{self.port}/stream/{uuid.uuid4()}?rate=16000"
            try:
                with connect(url, open_timeout=5, close_timeout=1) as ws:
                    self.connections += 1
                    while not self.stop.is_set():
                        started = time.monotonic()
                        for _ in range(10):  # ... sent every 10 ms: FLOOD_SPEED x real time
                            for frame in self.burst:
                                ws.send(frame)
                            self.seconds_sent += len(self.burst) / FRAMES_PER_S
                            self._read(ws)
                            time.sleep(max(0.0, started + 0.01 - time.monotonic()))
                            started = time.monotonic()
            except ConnectionClosed as exc:
                self.closes.append((exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, ""))
            except (OSError, TimeoutError):
                continue

    def _read(self, ws: object) -> None:
        while True:
            try:
                message = ws.recv(timeout=0)  # type: ignore[attr-defined]
            except TimeoutError:
                return
            if isinstance(message, str) and '"error"' in message:
                self.refusals.append(json.loads(message))


def test_fault_flood_at_100x_beside_a_healthy_stream_keeps_its_barge_in(tmp_path: Path):
    logs = tmp_path / "logs"
    esl_port, audio_port = free_port(), free_port()
    scenario = tmp_path / "flood.toml"
    scenario.write_text(SCENARIO.format(audio_dir=prompts_dir() / "en"), encoding="utf-8")
    switch = simswitch(logs, esl_port)
    audio = audio_server(logs, audio_port)
    flooder = Flooder(audio_port)
    try:
        flooder.thread.start()
        time.sleep(0.5)  # the flood is on before the call's stream opens
        robot = robot_call(logs, "fixture/long_reply", robot_env(esl_port, audio_port, "sqlite:///:memory:"),
                           tmp_path, scenario=scenario)
        robot.wait_for("robot sends uuid_break", 60)
        time.sleep(1.0)
        flooder.stop.set()
        flooder.thread.join(10)
        code = robot.exit_code(60)
        with urllib.request.urlopen(f"http://127.0.0.1:{audio_port}/healthz", timeout=5) as r:
            assert r.status == 200  # the server lived through it
    finally:
        flooder.stop.set()
        switch.stop()
        audio.stop()
    assert code == 0, robot.stderr[-3000:]
    assert flooder.connections >= 3 and len(flooder.closes) >= 3, (flooder.connections, flooder.closes)
    assert {code for code, _ in flooder.closes} == {1008}, flooder.closes  # policy violation: refused, every time
    assert {reason for _, reason in flooder.closes} == {"rate_limited"}, flooder.closes
    assert {r["code"] for r in flooder.refusals} <= {"rate_limited"}  # the error event, when read before the close
    report = report_of(robot)
    (barge,) = [e for e in report["events"] if e["type"] == "barge_in"]
    assert abs(barge["onset_s"] - ONSET_S) <= STREAM_TIME_TOLERANCE_S, barge
    assert abs(barge["stream_t"] - DETECTED_S) <= STREAM_TIME_TOLERANCE_S, barge
    (heard,) = report["barge_ins"]
    late = heard["break_at_switch_s"] - (heard["speech_onset_s"] + MIN_SPEECH_S)
    assert late <= BREAK_BOUND_S, (late, heard, flooder.connections, flooder.seconds_sent)
    print(f"measured: barge-in onset {barge['onset_s']} s, detected {barge['stream_t']} s of stream; uuid_break "
          f"{late * 1000:.0f} ms after the mark; flood: {flooder.connections} connections, "
          f"{len(flooder.closes)} closed with 1008, {flooder.seconds_sent:.0f} s of audio sent")
