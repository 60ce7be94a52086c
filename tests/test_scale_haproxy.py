"""deploy/haproxy/haproxy.cfg as shipped, on loopback: two audio servers behind HAProxy, streams through it.

Both servers get streams (leastconn), every stream gets its barge-in back through the balancer,
mod_audio_stream's own handshake (libwsc: no space after the colons) is upgraded, and paths that
are not the audio server's are refused at the balancer. Skips, saying why, without haproxy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from callbot.audio_server.stream_client import StreamResult
from callbot.simswitch.media.ws_frames import handshake_ok, handshake_request, parse_ws_url
from test_scale_workers import WorkersServer, _stream_all, _types

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy")

pytestmark = [
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed: apt-get install -y haproxy "
                                                "(Debian's package; the test runs deploy/haproxy/haproxy.cfg)"),
    pytest.mark.slow,  # three servers and 20 streams: about 10 s
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_balancer(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until a /healthz through the balancer answers 200 (a backend is up and checked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"haproxy exited: {proc.stderr.read() if proc.stderr else ''}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise AssertionError("the balancer did not answer /healthz")


def test_two_audio_servers_behind_haproxy_share_the_streams(callbot_cli: list[str], tmp_path: Path) -> None:
    check = subprocess.run([HAPROXY, "-c", "-f", str(CONFIG)], capture_output=True, text=True,
                           env={**os.environ, "CALLBOT_LB_BIND": "127.0.0.1:1", "CALLBOT_AUDIO_1": "127.0.0.1:2",
                                "CALLBOT_AUDIO_2": "127.0.0.1:3"})
    assert check.returncode == 0, check.stdout + check.stderr
    servers = []
    balancer = None
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(WorkersServer(callbot_cli, tmp_path / name, "--workers", "1", "--no-stt",
                                         "--idle-timeout", "0.5"))
        for server in servers:
            server.wait_listening()
        lb_port = _free_port()
        env = {**os.environ, "CALLBOT_LB_BIND": f"127.0.0.1:{lb_port}", "CALLBOT_LB_MAXCONN": "1000",
               "CALLBOT_AUDIO_1": f"127.0.0.1:{servers[0].port}", "CALLBOT_AUDIO_2": f"127.0.0.1:{servers[1].port}"}
        balancer = subprocess.Popen([HAPROXY, "-db", "-f", str(CONFIG)], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        _wait_for_balancer(lb_port, balancer)

        results: list[StreamResult] = _stream_all(lb_port, 20, speed=2.0)
        assert all("barge_in" in _types(r) for r in results), [_types(r) for r in results]
        assert all(r.close_code == 1008 for r in results)  # the server's idle timeout, relayed by HAProxy
        opened = [server.healthz()["opened"] for server in servers]
        assert sum(opened) == 20 and min(opened) >= 5, opened  # leastconn: both took a share

        request, _key = handshake_request(parse_ws_url(f"ws://127.0.0.1:{lb_port}/stream/"
                                                       "0c73adf9-90d9-4084-a193-e0129c054dc8?rate=16000"))
        with socket.create_connection(("127.0.0.1", lb_port), timeout=5) as sock:
            sock.sendall(request)  # libwsc's bytes, as mod_audio_stream sends them
            assert handshake_ok(sock.recv(4096))

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{lb_port}/metrics", timeout=5)
        assert refused.value.code == 404
    finally:
        if balancer is not None:
            balancer.terminate()
            balancer.wait(timeout=10)
        for server in servers:
            server.stop()
