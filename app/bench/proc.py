"""What the bench measures from the kernel: per-thread and per-process CPU, peak RSS, and the audio server process.

The audio server runs as its own processes (``callbot audio-server --port 0 --metrics-port 0``:
a supervisor and its workers), as in a deployment: their CPU (asyncio loops, decode pools and
CTranslate2's native threads alike) is read from ``/proc/<pid>/stat`` of each process of the
tree with nothing to guess, and their STT counters, summed, from the supervisor's ``/metrics``.
simswitch and the robot are threads of the bench process, read from ``/proc/self/task/<tid>/stat``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from callbot.audio_server.serve.supervisor import default_workers
from callbot.config import Settings

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The bench cannot run (bad arguments, or the audio server process would not start); says what to do."""


def _stat_cpu_s(stat_path: str, reaped_children: bool = False) -> float:
    """utime + stime of a /proc stat file, in seconds (fields 14 and 15; the name may hold spaces);
    with ``reaped_children``, plus cutime + cstime (16 and 17): the children it has waited for."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks * _TICK_S


def thread_cpu_s(native_id: int) -> float:
    """CPU seconds of one thread of this process, by its kernel thread id (``Thread.native_id``)."""
    return _stat_cpu_s(f"/proc/self/task/{native_id}/stat")


def process_cpu_s(pid: int | str = "self") -> float:
    """CPU seconds of a whole process, all its threads (dead ones included)."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def child_pids(pid: int) -> list[int]:
    """The live children of a process (each of its threads may have forked some)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and of all its descendants, live or dead.

    A dead descendant counts through its parent's cutime/cstime once reaped, a live one through
    its own stat; a worker restarted between two readings is therefore counted once.
    """
    try:
        total = _stat_cpu_s(f"/proc/{pid}/stat", reaped_children=True)
        return total + sum(tree_cpu_s(child) for child in child_pids(pid))
    except (FileNotFoundError, ProcessLookupError):  # it ended while we read: its parent counts it
        return 0.0


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM (the peak resident set) of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise BenchError(f"/proc/{pid}/status has no VmHWM line")


class AudioServerProcess:
    """Context manager: ``callbot audio-server`` in a child process, its ports, CPU, RSS and STT totals.

    The child runs with the GIL switch interval of a replay (robot.replay.REPLAY_SWITCH_INTERVAL_S)
    so that, as in ``callbot replay``, the barge-in path is not held up by decode threads, and with
    the replay's STT settings (robot.replay.replay_settings) passed as CALLBOT_STT_* variables.
    """

    def __init__(self, settings: Settings, config_path: str | None, max_streams: int, timeout_s: float) -> None:
        from callbot.app.replay import REPLAY_SWITCH_INTERVAL_S

        self.workers = settings.audio_server.workers or default_workers()
        boot = f"import sys; sys.setswitchinterval({REPLAY_SWITCH_INTERVAL_S}); from callbot.app.cli import main; main()"
        self._args = [sys.executable, "-c", boot, *(["--config", config_path] if config_path else []), "--log-json",
                      "audio-server", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
                      "--max-streams", str(max_streams), "--workers", str(self.workers),
                      *([] if settings.stt.enabled else ["--no-stt"])]
        self._env = {**os.environ, "PYTHONUNBUFFERED": "1",
                     "CALLBOT_STT_PARTIALS": str(settings.stt.partials).lower(),
                     "CALLBOT_STT_CPU_THREADS": str(settings.stt.cpu_threads)}
        self._timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="callbot-bench-")
        self.log_path = Path(self._tmp.name) / "audio-server.log"
        self.proc: subprocess.Popen | None = None
        self.port = self.metrics_port = 0

    def __enter__(self) -> "AudioServerProcess":
        with open(self.log_path, "w") as log_file:
            self.proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=log_file, env=self._env)
        try:
            self._wait_listening()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            ports = {}
            for line in self.log_path.read_text().splitlines():
                record = json.loads(line) if line.startswith("{") else {}
                if record.get("msg") in ("audio server listening", "metrics listening"):
                    ports[record["msg"]] = int(record["port"])
            if len(ports) == 2:
                self.port, self.metrics_port = ports["audio server listening"], ports["metrics listening"]
                return
            if self.proc.poll() is not None:
                raise BenchError(f"the audio server process exited with {self.proc.returncode}: "
                                 f"{self._log_tail()}")
            time.sleep(0.05)
        raise BenchError(f"the audio server did not listen within {self._timeout_s:g} s "
                         f"(bench.server_start_timeout_s): {self._log_tail()}")

    def _log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log_path.read_text().splitlines()[-lines:]) or "(no output)"

    def cpu_s(self) -> float:
        """The supervisor's and every worker's CPU seconds."""
        assert self.proc is not None
        return tree_cpu_s(self.proc.pid)

    def peak_rss_mb(self) -> float:
        """The sum of the peak RSS of the supervisor and its live workers."""
        assert self.proc is not None
        return round(sum(peak_rss_mb(pid) for pid in (self.proc.pid, *child_pids(self.proc.pid))), 1)

    def stt_totals(self) -> dict[str, float]:
        """Decode seconds and audio seconds decoded so far, every kind summed, from the server's /metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        totals = {"decode_s": 0.0, "audio_s": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "callbot_stt_decode_seconds_sum":
                    totals["decode_s"] += sample.value
                elif sample.name == "callbot_stt_audio_seconds_total":
                    totals["audio_s"] += sample.value
        return totals

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()
