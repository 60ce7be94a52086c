"""Test helpers for the robot's ESL client: a scripted Event Socket server and a capture replayer.

Both listen on 127.0.0.1 (port 0) in the test's gevent hub and write FreeSWITCH's exact bytes
(via callbot.esl.protocol, which tests/test_esl_protocol.py checks against the captures).
"""

from __future__ import annotations

import abc
import json
import socket
from typing import Callable

import gevent
import pytest
from gevent.server import StreamServer

from callbot.esl.protocol import (
    AUTH_REQUEST, DISCONNECT_NOTICE, EslEvent, EslParser, frame_api_response, frame_command_reply, frame_event,
    serialize_event, to_command,
)

from tests.shared_paths import CONFORMANCE
REJECTION = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"


class _LoopbackServer(abc.ABC):
    """A gevent TCP server on 127.0.0.1 whose ``_serve(sock, addr)`` handles each connection."""

    def __init__(self, port: int) -> None:
        self._server = StreamServer(("127.0.0.1", port), self._serve)

    def start(self):
        self._server.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_port

    def stop(self) -> None:
        self._server.stop(timeout=1)

    @abc.abstractmethod
    def _serve(self, sock, addr) -> None:
        """Handle one client connection (each scripted server says how)."""


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def switch():
    """A started ScriptedSwitch, stopped after the test."""
    sw = ScriptedSwitch().start()
    yield sw
    sw.stop()


class ScriptedSwitch(_LoopbackServer):
    """Answers like FreeSWITCH: auth, event, filter, api (scripted bodies), bgapi (job event), exit.

    ``api`` maps a command prefix to a body, a callable returning one, or None (never answer).
    ``api_delay`` maps a prefix to seconds to wait before answering (the socket stays blocked, as
    in FreeSWITCH, where api runs in the listener thread). ``jobs`` maps a bgapi prefix to the
    BACKGROUND_JOB body, or None to never send the job event.
    """

    def __init__(self, password: str = "ClueCon", port: int = 0) -> None:
        self.password = password
        self.api: dict[str, str | Callable[[str], str] | None] = {"show channels as json": '{"row_count": 0}\n'}
        self.api_delay: dict[str, float] = {}
        self.jobs: dict[str, str | None] = {}
        self.job_delay: dict[str, float] = {}
        self.greeting = AUTH_REQUEST  # or REJECTION, as for a client outside the ACL
        self.commands: list[list[str]] = []  # per connection, every command line in order
        self.raw: list[bytearray] = []  # per connection, every byte received
        self.conns: list = []
        super().__init__(port)

    def push_event(self, headers: list[tuple[str, str]], body: str | None = None) -> None:
        """Send a plain event on the newest connection."""
        self.conns[-1].sendall(frame_event(serialize_event(EslEvent(headers, body))))

    def drop(self) -> None:
        """Close the newest connection without a goodbye, as a crash or network cut would."""
        self.conns[-1].close()

    def _serve(self, sock, _addr) -> None:
        self.conns.append(sock)
        lines: list[str] = []
        self.commands.append(lines)
        raw = bytearray()
        self.raw.append(raw)
        sock.sendall(self.greeting)
        if self.greeting == REJECTION:
            sock.close()
            return
        parser = EslParser()
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            raw += data
            for message in parser.feed(data):
                cmd = to_command(message)
                lines.append(cmd.line)
                if not self._answer(sock, cmd):
                    sock.close()
                    return

    def _answer(self, sock, cmd) -> bool:
        verb, args = cmd.verb, cmd.args
        if verb == "auth":
            if args != self.password:
                sock.sendall(frame_command_reply("-ERR invalid") + DISCONNECT_NOTICE)
                return False
            sock.sendall(frame_command_reply("+OK accepted"))
        elif verb == "exit":
            sock.sendall(frame_command_reply("+OK bye") + DISCONNECT_NOTICE)
            return False
        elif verb == "event":
            sock.sendall(frame_command_reply("+OK event listener enabled plain"))
        elif verb == "filter":
            sock.sendall(frame_command_reply("+OK filter added. [x]=[y]"))
        elif verb == "api":
            key = next((k for k in self.api if args.startswith(k)), None)
            gevent.sleep(next((d for k, d in self.api_delay.items() if args.startswith(k)), 0))
            answer = self.api.get(key) if key else f"-ERR {args.split(' ')[0]} Command not found!\n"
            if answer is None:
                return True
            sock.sendall(frame_api_response(answer(args) if callable(answer) else answer))
        elif verb == "bgapi":
            job = cmd.headers["Job-UUID"]
            sock.sendall(frame_command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
            key = next((k for k in self.jobs if args.startswith(k)), None)
            body = self.jobs.get(key) if key else "+OK\n"
            delay = next((d for k, d in self.job_delay.items() if args.startswith(k)), 0.01)
            if body is not None:
                gevent.spawn_later(delay, self._job_event, sock, job, args, body)
        else:
            sock.sendall(frame_command_reply("-ERR command not found"))
        return True

    @staticmethod
    def _job_event(sock, job: str, args: str, body: str) -> None:
        name, _, rest = args.partition(" ")
        headers = [("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job), ("Job-Command", name),
                   ("Job-Command-Arg", rest)]
        sock.sendall(frame_event(serialize_event(EslEvent(headers, body))))


def capture_messages(name: str) -> list[bytes]:
    """The exact bytes of each message FreeSWITCH sent in a conformance capture, in order."""
    data = (CONFORMANCE / f"{name}.rx.bin").read_bytes()
    parser = EslParser()
    out = [("\n".join(raw.lines) + "\n\n").encode() + raw.body for raw in parser.feed(data)]
    assert b"".join(out) == data and parser.pending == 0, f"{name}: messages do not rebuild the capture"
    return out


class CaptureReplayer(_LoopbackServer):
    """Serves a one-connection capture: each reply waits for the client's next command; events flow between.

    The client's ``bgapi`` carries its own Job-UUID, which FreeSWITCH honours, so the capture's
    switch-chosen job id is replaced by the client's one from then on (same length, same framing).
    """

    def __init__(self, name: str) -> None:
        self.messages = capture_messages(name)
        self.received: list[str] = []
        super().__init__(0)

    def _serve(self, sock, _addr) -> None:
        parser = EslParser()
        queued: list = []
        swap: tuple[bytes, bytes] | None = None
        for message in self.messages:
            if message.startswith((b"Content-Type: command/reply", b"Content-Type: api/response")):
                while not queued:
                    data = sock.recv(65536)
                    if not data:
                        return
                    queued += [to_command(raw) for raw in parser.feed(data)]
                cmd = queued.pop(0)
                self.received.append(cmd.line)
                if cmd.verb == "bgapi" and b"Job-UUID: " in message:
                    theirs = message.split(b"Job-UUID: ")[-1].split(b"\n")[0]
                    swap = (theirs, cmd.headers["Job-UUID"].encode())
            if swap:
                message = message.replace(*swap)
            sock.sendall(message)
        sock.close()


def show_channels(*uuids: str) -> str:
    """``show channels as json`` output as FreeSWITCH prints it (the empty form has no rows key)."""
    if not uuids:
        return '{"row_count": 0}\n'
    return json.dumps({"row_count": len(uuids), "rows": [{"uuid": u, "direction": "outbound"} for u in uuids]}) + "\n"
