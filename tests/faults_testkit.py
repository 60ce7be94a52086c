"""The fault suite's parts as real processes on loopback: `callbot simswitch`, `callbot audio-server`, `callbot call`.

Each part runs as ``python -m callbot ...`` in its own process group, so a test can ``kill -9`` it
(and only it) mid-call and start it again on the same port. Output goes to files, read as it grows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from callbot.resources import demo_calls_dir
from simswitch_testkit import RawEsl

PASSWORD = "fault-suite"
FIXTURES = demo_calls_dir()
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Part:
    """One callbot process; ``stdout``/``stderr`` are files under ``logs``."""

    def __init__(self, name: str, args: list[str], logs: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "callbot", *args], stdout=self._out, stderr=self._err,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        self.stamped: list[tuple[float, str]] = []  # (monotonic time first seen, line) of stderr, as it grows
        self._tail = threading.Thread(target=self._stamp_lines, name=f"tail-{name}", daemon=True)
        self._tail.start()

    def _stamp_lines(self) -> None:
        seen = 0
        while True:
            running = self.proc.poll() is None
            lines = self.stderr.splitlines(keepends=True)
            complete = [line for line in lines if line.endswith("\n")]
            now = time.monotonic()
            self.stamped += [(now, line.rstrip("\n")) for line in complete[seen:]]
            seen = len(complete)
            if not running:
                return
            time.sleep(0.005)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Block until ``text`` is on stderr; the monotonic time it was seen. AssertionError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr:
                return time.monotonic()
            if self.proc.poll() is not None and text not in self.stderr:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} before {text!r}:\n{self.stderr[-3000:]}")
            time.sleep(0.01)
        raise AssertionError(f"{self.name}: no {text!r} within {timeout} s:\n{self.stderr[-3000:]}")

    def kill9(self, group: bool = False) -> None:
        """SIGKILL, as the OOM killer or an operator would: no handler runs. ``group``: every process of
        the part (its own session), as when the machine or container dies."""
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def exit_code(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) to the part; whatever it left in its process group is killed too."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # orphans of a part killed with -9 (its own session)
        except ProcessLookupError:
            pass
        self._out.close()
        self._err.close()


def wait_port(port: int, timeout: float = START_TIMEOUT_S, part: Part | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part is not None and part.proc.poll() is not None:
            raise AssertionError(f"{part.name} exited {part.proc.returncode}:\n{part.stderr[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def simswitch(logs: Path, port: int, speed: float = 1.0, name: str = "simswitch", cdr: Path | None = None) -> Part:
    args = ["simswitch", "--esl-port", str(port), "--password", PASSWORD, "--speed", str(speed),
            "--fixtures", str(FIXTURES)]
    part = Part(name, args + (["--cdr", str(cdr)] if cdr else []), logs)
    wait_port(port, part=part)
    return part


def audio_server(logs: Path, port: int, name: str = "audio", stt: bool = False) -> Part:
    part = Part(name, ["audio-server", "--port", str(port), *([] if stt else ["--no-stt"])], logs)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
                if r.status == 200:
                    return part
        except OSError:
            pass
        if part.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{name} did not come up:\n{part.stderr[-3000:]}")
        time.sleep(0.05)


def robot_env(esl_port: int, audio_port: int, db_url: str, speed: float = 1.0, **settings: Any) -> dict[str, str]:
    """``CALLBOT_*`` variables for `callbot call` against these parts; ``settings``: more ``section_field=value``."""
    env = {"CALLBOT_ESL_PORT": str(esl_port), "CALLBOT_ESL_PASSWORD": PASSWORD,
           "CALLBOT_AUDIO_SERVER_PORT": str(audio_port), "CALLBOT_AUDIO_SERVER_PUBLIC_URL": f"ws://127.0.0.1:{audio_port}",
           "CALLBOT_ROBOT_SPEED": str(speed), "CALLBOT_DB_URL": db_url}
    env.update({f"CALLBOT_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def robot_call(logs: Path, destination: str, env: dict[str, str], cwd: Path, name: str = "robot",
               scenario: Path | None = None) -> Part:
    args = ["call", destination, "--json", *(["--scenario", str(scenario)] if scenario else [])]
    return Part(name, args, logs, env=env, cwd=cwd)


def report_of(part: Part) -> dict[str, Any]:
    return json.loads(part.stdout)


def esl_api(port: int, *commands: str) -> list[str]:
    """Run ``api`` commands on a switch (a fresh ESL connection) and return their bodies."""
    async def run() -> list[str]:
        esl = await RawEsl.connect(port, PASSWORD)
        try:
            return [await esl.api(c) for c in commands]
        finally:
            await esl.close()
    return asyncio.run(run())


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Poll until ``predicate()``; the seconds it took. AssertionError naming ``what`` on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


def channel_up(port: int, call_uuid: str) -> bool:
    return esl_api(port, f"uuid_exists {call_uuid}")[0].strip() == "true"
