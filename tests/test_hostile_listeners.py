"""Hostile peers at every listener, each a real process on loopback: the audio server's HTTP/WebSocket port,
simswitch's Event Socket, and the robot as an ESL client of a switch that misbehaves.

After each input the listener still serves a well-behaved peer at once, and holds no stream or
connection for it; the robot ends with one line and exit 1, never a traceback or a hang.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from websockets.sync.client import connect

from faults_testkit import PASSWORD, audio_server, esl_api, free_port, simswitch

pytestmark = pytest.mark.slow
HEALTHY_WITHIN_S = 1.0


# ---- the audio server -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    part = audio_server(tmp_path_factory.mktemp("audio"), port)
    yield port
    part.stop()


def healthz(port: int) -> dict:
    import json

    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        body = json.loads(r.read())
    assert time.monotonic() - started < HEALTHY_WITHIN_S
    return body


def no_stream_left(port: int) -> None:
    """/healthz counts no live stream (a stream just closed may take a moment to be counted out)."""
    deadline = time.monotonic() + 2.0
    while healthz(port)["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert healthz(port)["streams"] == 0


def a_healthy_stream_works(port: int) -> None:
    """A well-behaved stream: one second of silence, then a normal close."""
    with connect(f"ws://127.0.0.1:{port}/stream/{uuid.uuid4()}?rate=16000", open_timeout=HEALTHY_WITHIN_S) as ws:
        for _ in range(50):
            ws.send(b"\x00" * 640)
    assert ws.close_code == 1000


def exchange(port: int, data: bytes, wait: float = 2.0) -> bytes:
    """Send raw bytes, read until the peer closes (or ``wait`` passes).

    Reads on a thread of its own from the start: a peer that closes on us while we still send (a
    line over its limit) must not cost us what it said before (sendall fails with a reset first)."""
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)

        def read() -> None:
            try:
                while chunk := s.recv(65536):
                    chunks.append(chunk)
            except (TimeoutError, ConnectionResetError, OSError):
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            s.sendall(data)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        reader.join(wait + 1.0)
    return b"".join(chunks)


def handshake(path: str | None = None, version: bytes = b"13", key: bool = True) -> bytes:
    path = path or f"/stream/{uuid.uuid4()}?rate=16000"
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: x", b"Upgrade: websocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Version: " + version]
    if key:
        lines.append(b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def frame(opcode: int, payload: bytes, *, mask: bool = True, fin: bool = True, rsv: int = 0,
          length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask else 0
    head += bytes([bit | n]) if n < 126 else bytes([bit | 126]) + struct.pack(">H", n) if n < 65536 else \
        bytes([bit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


HANDSHAKES = {
    "not HTTP at all": (b"\x00\x01\x02garbage\r\n\r\n", None),
    "plain GET /": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404"),
    "a 200 kB header": (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 200_000 + b"\r\n\r\n", b"HTTP/1.1 431"),
    "5000 headers": (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(5000)) + b"\r\n",
                     b"HTTP/1.1 431"),
    "WebSocket version 8": (handshake(version=b"8"), b"HTTP/1.1 4"),
    "no Sec-WebSocket-Key": (handshake(key=False), b"HTTP/1.1 400"),
    "path traversal": (handshake("/stream/../../etc/passwd"), b"HTTP/1.1 400"),
    "percent-encoded path": (handshake("/stream/%2e%2e?rate=16000"), b"HTTP/1.1 400"),
    "2000 query fields": (handshake(f"/stream/{uuid.uuid4()}?" + "&".join(f"k{i}=1" for i in range(2000))),
                          b"HTTP/1.1 414"),
    "unknown query key": (handshake(f"/stream/{uuid.uuid4()}?rate=16000&debug=1"), b"HTTP/1.1 400"),
}


@pytest.mark.parametrize("data, answer", HANDSHAKES.values(), ids=HANDSHAKES.keys())
def test_a_hostile_handshake_is_refused_and_the_server_goes_on(audio, data, answer):
    out = exchange(audio, data)
    assert (out == b"" if answer is None else out.startswith(answer)) and b"101 Switching" not in out, out[:200]
    no_stream_left(audio)
    a_healthy_stream_works(audio)


CLOSE = {  # a frame after a good handshake -> the close code the server answers with
    "unmasked client frame": ([frame(2, b"\x00" * 640, mask=False)], 1002),
    "reserved opcode": ([frame(3, b"x")], 1002),
    "reserved bits set": ([frame(2, b"\x00" * 640, rsv=0x40)], 1002),
    "close code 999": ([frame(8, struct.pack(">H", 999))], 1002),
    "200-byte ping": ([frame(9, b"x" * 200)], 1002),
    "fragment, then a new message": ([frame(2, b"\x00" * 10, fin=False), frame(1, b"hi")], 1002),
    "length 2^63 announced": ([frame(2, b"", length=2 ** 63 - 1)], 1009),
    "text that is not UTF-8": ([frame(1, b"\xff\xfe{")], 1007),
}


def close_code(reply: bytes) -> int | None:
    """The code of the close frame in the server's bytes after its 101 response."""
    body = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""
    while len(body) >= 2:
        opcode, n = body[0] & 0x0F, body[1] & 0x7F
        if opcode == 8:
            return struct.unpack(">H", body[2:4])[0] if n >= 2 else None
        body = body[2 + n:]
    return None


def upgraded(port: int, frames: list[bytes], wait: float = 2.0) -> bytes:
    """A good handshake, its 101 read, then ``frames``; what the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(wait)
        s.sendall(handshake())
        out = s.recv(65536)
        try:
            s.sendall(b"".join(frames))
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
    return out


@pytest.mark.parametrize("frames, code", CLOSE.values(), ids=CLOSE.keys())
def test_a_hostile_frame_closes_its_own_stream_only(audio, frames, code):
    out = upgraded(audio, frames)
    assert out.startswith(b"HTTP/1.1 101") and close_code(out) == code, out[:300]
    no_stream_left(audio)
    a_healthy_stream_works(audio)


def test_a_ping_flood_is_answered_and_the_stream_lives(audio):
    with connect(f"ws://127.0.0.1:{audio}/stream/{uuid.uuid4()}?rate=16000") as ws:
        for i in range(1000):
            ws.ping(b"%d" % i)
        ws.send(b"\x00" * 640)
        pong = ws.ping(b"last")
        assert pong.wait(5)
    assert ws.close_code == 1000


def test_300_idle_connections_do_not_starve_a_healthy_stream_and_are_dropped(audio):
    idle = [socket.create_connection(("127.0.0.1", audio)) for _ in range(300)]
    try:
        healthz(audio)
        a_healthy_stream_works(audio)
        time.sleep(12)  # past the handshake timeout
        for s in idle:
            s.settimeout(0.01)
            try:
                assert s.recv(10) == b""
            except TimeoutError:
                pytest.fail("an idle connection was still open after the handshake timeout")
            except ConnectionResetError:
                pass
    finally:
        for s in idle:
            s.close()


# ---- simswitch's Event Socket -----------------------------------------------------------------

@pytest.fixture(scope="module")
def switch_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    part = simswitch(tmp_path_factory.mktemp("switch"), port, speed=10.0)
    yield port
    assert part.proc.poll() is None, "simswitch died"
    part.stop()


AUTH = f"auth {PASSWORD}\n\n".encode()
SESSIONS = {  # what a client sends (after the auth/request) -> what the switch answers last
    "1 MB line before auth": (b"x" * 1_000_000, b"Disconnected, goodbye"),
    "NUL bytes in auth": (b"auth \x00\x00\n\n", b"-ERR invalid"),
    "50 wrong passwords": (b"".join(b"auth nope%d\n\n" % i for i in range(50)), b"Disconnected, goodbye"),
    "2 MB api line": (AUTH + b"api status " + b"y" * 2_000_000 + b"\n\n", b"Disconnected, goodbye"),
    "uuid_kill of a path": (AUTH + b"api uuid_kill ../../x\n\n", b"-ERR No such channel!"),
    "originate with injected variables": (AUTH + b"api originate {api_on_answer=hupall}[x=y]user/1000,error/"
                                          b"user_busy|fixture/silence &park()\n\n", b"-ERR CHAN_NOT_IMPLEMENTED"),
    "5000 event names": (AUTH + b"event plain " + b" ".join(b"EV%d" % i for i in range(5000)) + b"\n\n",
                         b"+OK event listener enabled plain"),
    "2000 bgapi jobs": (AUTH + b"bgapi status\n\n" * 2000, b"Job-UUID: "),
    "sendmsg of 100 GB": (AUTH + b"sendmsg 00000000-0000-0000-0000-000000000000\ncall-command: execute\n"
                          b"Content-Length: 99999999999\n\n", b"Disconnected, goodbye"),
}


@pytest.mark.parametrize("data, last", SESSIONS.values(), ids=SESSIONS.keys())
def test_a_hostile_esl_client_costs_only_its_connection(switch_port, data, last):
    out = exchange(switch_port, data)
    assert out.startswith(b"Content-Type: auth/request") and last in out[-400:], out[-400:]
    started = time.monotonic()
    assert esl_api(switch_port, "status")[0].startswith("UP ")
    assert time.monotonic() - started < HEALTHY_WITHIN_S


# ---- the robot as an ESL client ----------------------------------------------------------------

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"


def _after_auth(then: bytes, hang_up: bool = False) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        conn.sendall(AUTH_REQUEST)
        conn.recv(1000)
        conn.sendall(ACCEPTED)
        conn.recv(1000)
        conn.sendall(then)
        if not hang_up:
            time.sleep(30)
    return behave


def _drip(conn: socket.socket) -> None:
    for byte in AUTH_REQUEST:
        conn.sendall(bytes([byte]))
        time.sleep(0.5)


SWITCHES: dict[str, tuple[Callable[[socket.socket], None], str]] = {
    "says nothing": (lambda c: time.sleep(30), "sent no auth/request within"),
    "closes at once": (lambda c: c.close(), "sent no auth/request within"),
    "sends garbage": (lambda c: (c.sendall(b"\x00\xffHELLO\n\n" * 3), time.sleep(30)), "sent no auth/request"),
    "refuses the password": (lambda c: (c.sendall(AUTH_REQUEST), c.recv(1000), c.sendall(
        b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"), time.sleep(30)), "refused the password"),
    "a 2 MB header line": (lambda c: (c.sendall(b"Content-Type: auth/request" + b"x" * 2_000_000),
                                      time.sleep(30)), "sent no auth/request"),
    "a reply of 1 TB": (_after_auth(b"Content-Type: api/response\nContent-Length: 1099511627776\n\n"),
                        "got no reply from"),
    "never replies after auth": (_after_auth(b""), "got no reply from"),
    "drips one byte each 0.5 s": (_drip, "sent no auth/request within"),
    "sends a disconnect notice": (_after_auth(b"Content-Type: text/disconnect-notice\nContent-Length: 0\n\n",
                                              hang_up=True), "closed"),
}
TIMEOUT_S = 3.0


@pytest.mark.parametrize("behave, words", SWITCHES.values(), ids=SWITCHES.keys())
def test_callbot_call_against_a_hostile_switch_ends_in_one_line(tmp_path: Path, behave, words):
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_quietly, args=(behave, conn), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    env = {"CALLBOT_ESL_PORT": str(listener.getsockname()[1]), "CALLBOT_ESL_PASSWORD": "x",
           "CALLBOT_ESL_COMMAND_TIMEOUT_S": str(TIMEOUT_S), "CALLBOT_ESL_CONNECT_TIMEOUT_S": str(TIMEOUT_S)}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "callbot", "call", "fixture/silence", "--no-db"], cwd=tmp_path,
                              env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    finally:
        listener.close()
    took = time.monotonic() - started
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and words in last, last
    assert took < 2 * TIMEOUT_S + 3.0, took


def _quietly(behave: Callable[[socket.socket], None], conn: socket.socket) -> None:
    try:
        behave(conn)
    except OSError:
        pass
    finally:
        conn.close()
