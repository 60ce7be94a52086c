"""Fault suite, malformed ESL events in the middle of a call: `callbot call` through a TCP proxy that injects them.

The proxy sits between the robot and simswitch, frames the switch's byte stream with the core's
parser, and at a message boundary after the first PLAYBACK_START slips in events no switch should
send. Each costs itself only: the call runs its scenario as without them, the reader never dies
(no reconnect), and an audio event that is not ours is kept in the timeline as ignored.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from callbot.esl.protocol import EslParser, frame_event
from faults_testkit import free_port, report_of, robot_call, robot_env, simswitch

pytestmark = pytest.mark.slow
SPEED = 10.0


def plain(*lines: str, body: bytes = b"") -> bytes:
    payload = ("\n".join(lines) + "\n").encode()
    payload += (b"Content-Length: %d\n\n" % len(body) + body) if body else b"\n"
    return frame_event(payload)


def malformed(call_uuid: str) -> dict[str, bytes]:
    """The events injected, by what is wrong with them; each names the call, so a parse would route it."""
    custom = ("Event-Name: CUSTOM", "Event-Subclass: mod_audio_stream::json", f"Unique-ID: {call_uuid}")
    return {
        "inner Content-Length: abc": plain(*custom, "Content-Length: abc", body=b"{}"),
        "inner Content-Length longer than the event": frame_event(
            f"Event-Name: CHANNEL_ANSWER\nUnique-ID: {call_uuid}\nContent-Length: 99\n\nx".encode()),
        "event-json that is a list": frame_event(b'[{"Event-Name": "CHANNEL_HANGUP"}]', "json"),
        "event-json that is not JSON": frame_event(b'{"Event-Name": "CHANNEL_HANGUP", ', "json"),
        "event-json nested 50000 deep": frame_event(b"[" * 50000 + b"]" * 50000, "json"),
        "no Event-Name": plain(f"Unique-ID: {call_uuid}", "Hangup-Cause: NORMAL_CLEARING"),
        "audio event body not our schema": plain(*custom, body=b'{"type":"barge_in","call":"' + call_uuid.encode()
                                                 + b'","t":"soon"}'),
        "header value with a forged line": plain("Event-Name: CHANNEL_EXECUTE_COMPLETE", f"Unique-ID: {call_uuid}",
                                                 "X-Evil: a%0AEvent-Name: CHANNEL_HANGUP"),
    }


class InjectingProxy:
    """127.0.0.1:port -> the switch; after the first PLAYBACK_START from the switch, injects ``payloads`` once."""

    def __init__(self, switch_port: int) -> None:
        self.switch_port = switch_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.injected: list[str] = []
        self.call_uuid: str | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                robot, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            switch = socket.create_connection(("127.0.0.1", self.switch_port))
            threading.Thread(target=self._pump, args=(robot, switch, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(switch, robot, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_switch: bool) -> None:
        parser = EslParser() if from_switch else None
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if parser is None:
                    continue
                for message in parser.feed(data):
                    if b"Event-Name: PLAYBACK_START" in message.body and self.call_uuid is None:
                        self.call_uuid = _unique_id(message.body)
                if self.call_uuid and not self.injected and parser.pending == 0:
                    for name, payload in malformed(self.call_uuid).items():
                        dst.sendall(payload)
                        self.injected.append(name)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def _unique_id(body: bytes) -> str:
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("Unique-ID: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError("PLAYBACK_START without Unique-ID")


def test_fault_malformed_esl_events_mid_call_cost_only_themselves(tmp_path: Path):
    logs = tmp_path / "logs"
    esl_port = free_port()
    switch = simswitch(logs, esl_port, SPEED)
    proxy = InjectingProxy(esl_port)
    try:
        env = robot_env(proxy.port, free_port(), f"sqlite:///{tmp_path / 'calls.db'}", SPEED)
        robot = robot_call(logs, "fixture/short_yes", env, tmp_path)
        code = robot.exit_code(90)
        clean = robot_call(logs, "fixture/short_yes", robot_env(esl_port, free_port(), env["CALLBOT_DB_URL"], SPEED),
                           tmp_path, name="clean")
        assert clean.exit_code(90) == 0
    finally:
        proxy.close()
        switch.stop()
    assert proxy.injected == list(malformed("x")), proxy.injected
    assert code == 0, robot.stderr[-3000:]
    report, baseline = report_of(robot), report_of(clean)
    assert report["call_uuid"] == proxy.call_uuid
    assert "esl_disconnected" not in report["flags"] and "esl connection lost" not in robot.stderr  # reader lived
    assert robot.stderr.count("esl connected") == 1
    assert (report["disposition"], report["hangup"]) == (baseline["disposition"], baseline["hangup"])
    assert [p["file"] for p in report["prompts"]] == [p["file"] for p in baseline["prompts"]]
    states = [e["state"] for e in report["events"] if e["type"] == "state"]
    assert states == [e["state"] for e in baseline["events"] if e["type"] == "state"]  # no forged hang-up or answer
    ignored = [e for e in report["events"] if e["type"] == "audio_text_ignored"]
    assert ignored and "soon" in ignored[0]["body"]
    assert robot.stderr.count("esl event dropped") + robot.stderr.count("esl message dropped") >= 4
