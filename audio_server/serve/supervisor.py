"""The supervisor of the audio server's worker processes: one port, restarts, signals, /metrics and /healthz.

- It holds the port: a probe without ``SO_REUSEPORT`` first, so a port another server listens on
  (ours included) fails with "port in use" as it would without workers; then a bound, never
  listening ``SO_REUSEPORT`` socket that keeps the port while a worker restarts. Every worker
  listens on it with ``SO_REUSEPORT``, and the kernel spreads new connections over them.
- It restarts a worker that dies: at once, or with a back-off when it keeps dying young. A
  worker that cannot start at all stops the server with the worker's reason.
- SIGTERM and SIGINT go to every worker as SIGTERM: each closes its streams with 1001 and exits.
- Metrics add up across workers in prometheus_client's multiprocess mode: each worker writes its
  values to files in a directory of the supervisor's, which its ``/metrics`` sums. A dead worker's
  counters stay in the sum after its restart (scraping each worker's own port would lose them,
  and a scrape would need to find every worker). ``/healthz`` reads the board.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from http import HTTPStatus
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from callbot.audio_server.metrics import forget_process, workers_exposition
from callbot.audio_server.serve.board import (DEAD, LISTENING, STARTING, Board, BoardCollector, health_response,
                                              http_response)
from callbot.audio_server.serve.worker import COMMAND, START_FAILED, WorkerSpec
from callbot.audio_server.server import HEALTH_PATH, ListenError, check_exposure, listen_problem
from callbot.config import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it
STOP_TIMEOUT_S = 20.0  # after SIGTERM, a worker still running this long is killed (close timeouts are 10 s)
YOUNG_S = 10.0  # a worker that dies younger than this is restarted after a back-off
MAX_BACKOFF_S = 30.0


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def hold_port(host: str, port: int) -> list[socket.socket]:
    """Bound, never-listening ``SO_REUSEPORT`` sockets on every address of ``host`` (as asyncio would
    listen on), after a probe without it; ``port`` 0 picks one free port for all of them."""
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                                      flags=socket.AI_PASSIVE):
            address = (address[0], port, *address[2:])
            with socket.socket(family, kind, proto) as probe:
                _prepare(probe, family, socket.SO_REUSEADDR)  # past TIME_WAIT, never past a listener
                probe.bind(address)
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            _prepare(sock, family, socket.SO_REUSEPORT)
            sock.bind(address)
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in held:
            sock.close()
        raise ListenError(listen_problem("audio server", host, port, exc, "--port / audio_server.port")) from None
    return held


def _prepare(sock: socket.socket, family: int, option: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    if family == socket.AF_INET6:  # as asyncio's listeners: the v4 and v6 addresses are separate sockets
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


class Supervisor:
    """Starts ``workers`` processes on one port, keeps them running, stops them on a signal."""

    def __init__(self, settings: Settings, workers: int, *, json_logs: bool = False, verbose: bool = False) -> None:
        self.settings, self.workers = settings, workers
        self.json_logs, self.verbose = json_logs, verbose
        self.procs: list[asyncio.subprocess.Process | None] = [None] * workers
        self.started_at = [0.0] * workers
        self.young_deaths = [0] * workers
        self.failed: str | None = None  # why a worker could not start, before the server was up
        self.up = self.stopping = False
        self.own_registry = CollectorRegistry()  # the supervisor's own metrics, from the board
        self.port = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; a worker that cannot start stops everything with its reason."""
        cfg = self.settings.audio_server
        check_exposure(cfg.host, cfg.token, cfg.insecure_no_token)
        held = hold_port(cfg.host, cfg.port)
        self.port = held[0].getsockname()[1]
        self.run_dir = Path(tempfile.mkdtemp(prefix="callbot-audio-"))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        self.board = Board.create(self.run_dir / "board", self.workers)
        self.own_registry.register(BoardCollector(self.board))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        endpoint: Server | None = None
        try:
            for slot in range(self.workers):
                await self._spawn(slot)
            if await self._all_listening():
                self.up = True
                if cfg.metrics_port is not None:
                    endpoint = await self._serve_endpoint(cfg.host, cfg.metrics_port)
                log.info("audio server listening", extra={
                    "host": cfg.host, "port": self.port, "workers": self.workers, "max_streams": cfg.max_streams,
                    "token": cfg.token is not None})
                await self._stop.wait()
        finally:
            await self._stop_workers()
            if endpoint is not None:
                endpoint.close()
                await endpoint.wait_closed()
            for sock in held:
                sock.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.failed:
            raise ListenError(self.failed)
        log.info("audio server stopped")

    async def _spawn(self, slot: int) -> None:
        spec = WorkerSpec(slot, self.settings, self.port, str(self.run_dir), os.getpid(), sys.getswitchinterval(),
                          self.json_logs, self.verbose)
        spec.error_path.unlink(missing_ok=True)
        self.board.set(slot, "state", STARTING)
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, stdin=subprocess.PIPE, env={**os.environ, MULTIPROC_ENV: str(self.metrics_dir)})
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(spec))
        proc.stdin.close()
        self.procs[slot], self.started_at[slot] = proc, time.monotonic()
        self.board.set(slot, "pid", proc.pid)
        self._task(self._watch(slot, proc, spec))

    def _task(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _all_listening(self) -> bool:
        """Wait for every worker to listen (its model loaded); False on a signal or a failed start."""
        while not self._stop.is_set() and self.failed is None:
            if self.board.listening() == self.workers:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _watch(self, slot: int, proc: asyncio.subprocess.Process, spec: WorkerSpec) -> None:
        """Wait for the worker to end; then mark it, drop its live gauges, restart it unless stopping."""
        if self.up:
            self._task(self._announce(slot, proc))
        code = await proc.wait()
        self.board.set(slot, "state", DEAD)
        self.board.set(slot, "streams", 0)
        forget_process(proc.pid, str(self.metrics_dir))
        reason = _exit_reason(code, spec)
        if self.stopping:
            return
        if not self.up:  # a worker that cannot start would fail the same way again: stop, saying why
            self.failed = f"audio server worker {slot} could not start: {reason}"
            self._stop.set()
            return
        young = time.monotonic() - self.started_at[slot] < YOUNG_S
        self.young_deaths[slot] = self.young_deaths[slot] + 1 if young else 0
        delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (self.young_deaths[slot] - 1)) if young else 0.0
        log.warning("worker died; restarting", extra={"worker": slot, "pid": proc.pid, "reason": reason,
                                                       "restart_in_s": delay})
        await asyncio.sleep(delay)
        if not self.stopping:
            self.board.add(slot, "restarts")
            await self._spawn(slot)

    async def _announce(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        """Log a restarted worker once it listens (its model loaded)."""
        while proc.returncode is None:
            if self.board.get(slot, "state") == LISTENING:
                log.info("worker restarted", extra={"worker": slot, "pid": proc.pid})
                return
            await asyncio.sleep(0.05)

    async def _stop_workers(self) -> None:
        """SIGTERM to every worker (streams close with 1001), then wait; kill what outlives STOP_TIMEOUT_S."""
        self.stopping = True
        live = [p for p in self.procs if p is not None and p.returncode is None]
        log.info("audio server closing", extra={"streams": self.board.total("streams"), "workers": len(live)})
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in live:
            try:
                await asyncio.wait_for(proc.wait(), max(0.0, STOP_TIMEOUT_S))
            except TimeoutError:
                log.warning("worker did not stop; killing it", extra={"pid": proc.pid})
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve_endpoint(self, host: str, port: int) -> Server:
        """``/metrics`` (every worker's, summed, then the supervisor's own) and ``/healthz``, on the metrics port."""
        async def refuse(ws: ServerConnection) -> None:
            await ws.close()

        try:
            endpoint = await serve(refuse, host, port, process_request=self._endpoint_request)
        except OSError as exc:
            raise ListenError(listen_problem("metrics", host, port, exc, "--metrics-port")) from None
        log.info("metrics listening", extra={"host": host, "port": endpoint.sockets[0].getsockname()[1]})
        return endpoint

    def _endpoint_request(self, connection: ServerConnection, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            return health_response(connection, self.board, self.settings.audio_server.max_streams)
        if path == "/metrics":
            text = workers_exposition(str(self.metrics_dir), self.own_registry).decode()
            return http_response(connection, text, CONTENT_TYPE_LATEST)
        return http_response(connection, "GET /metrics or /healthz\n", "text/plain", HTTPStatus.NOT_FOUND)


def _exit_reason(code: int, spec: WorkerSpec) -> str:
    if code == START_FAILED and spec.error_path.exists():
        return spec.error_path.read_text()
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def serve_workers(settings: Settings, *, json_logs: bool = False, verbose: bool = False) -> None:
    """``callbot audio-server``: audio_server.workers processes (default one per CPU) until a signal."""
    count = settings.audio_server.workers or default_workers()
    if not verbose:  # one line per stream event, not per handshake
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the signal handlers are in place
        asyncio.run(Supervisor(settings, count, json_logs=json_logs, verbose=verbose).run())
