"""One worker process: today's AudioServer on a port it shares with its siblings (SO_REUSEPORT).

The supervisor starts it as ``python -c "...worker_main()"`` with its :class:`WorkerSpec` pickled
on stdin: a fresh interpreter that inherits none of the supervisor's threads, loop or locks, and
loads its own Whisper model. It serves until SIGTERM, or until its supervisor is gone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from callbot.audio_server.serve.board import LISTENING, STOPPING, Board, health_response
from callbot.audio_server.server import HEALTH_PATH, AudioServer, ListenError
from callbot.config import ConfigError, Settings
from callbot.logs import setup_logging

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0  # a worker whose supervisor vanished (SIGKILL) closes its streams within this
START_FAILED = 2  # the exit code of a worker that could not start; its reason is in WorkerSpec.error_path
COMMAND = [sys.executable, "-c", "from callbot.audio_server.serve.worker import worker_main; worker_main()"]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs from its supervisor."""

    slot: int
    settings: Settings
    port: int  # the concrete port the supervisor holds
    run_dir: str  # the board, and the workers' start-up errors
    parent_pid: int
    switch_interval: float  # the supervisor's (a bench lowers it for the barge-in path)
    json_logs: bool
    verbose: bool

    @property
    def board_path(self) -> Path:
        return Path(self.run_dir) / "board"

    @property
    def error_path(self) -> Path:
        return Path(self.run_dir) / f"worker-{self.slot}.error"


class BoardStreams(set):
    """A worker's live connections (``AudioServer.live``), counted on its board row."""

    def __init__(self, board: Board, slot: int) -> None:
        super().__init__()
        self.board, self.slot = board, slot

    def add(self, ws: object) -> None:
        super().add(ws)
        self.board.add(self.slot, "opened")
        self.board.set(self.slot, "streams", len(self))

    def discard(self, ws: object) -> None:
        super().discard(ws)
        self.board.set(self.slot, "streams", len(self))


class WorkerServer(AudioServer):
    """Today's server in one worker: its ``/healthz`` and its stream limit speak for the whole server."""

    def __init__(self, settings: Settings, board: Board, slot: int) -> None:
        super().__init__(settings)
        self.board = board
        self.live = BoardStreams(board, slot)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        limit = self.settings.audio_server.max_streams
        if request.path.split("?", 1)[0] == HEALTH_PATH:
            return health_response(connection, self.board, limit)
        response = super()._process_request(connection, request)
        if response is None and self.board.total("streams") >= limit:
            return self._too_many(connection)
        return response


class ReusePortLoop(asyncio.SelectorEventLoop):
    """A worker's event loop: every server it opens shares its port with the sibling workers."""

    async def create_server(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("reuse_port", True)
        return await super().create_server(*args, **kwargs)


class _WorkerTag(logging.Filter):
    """Adds ``worker=<slot>`` to every log record of the process."""

    def __init__(self, slot: int) -> None:
        super().__init__()
        self.slot = slot

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.slot
        return True


def worker_main() -> None:
    """The worker process's entry point: its spec comes pickled on stdin from the supervisor."""
    run_worker(pickle.load(sys.stdin.buffer))


def run_worker(spec: WorkerSpec) -> None:
    """Serve until SIGTERM (or the supervisor is gone); a start-up error is written where the
    supervisor reads it, and the process exits START_FAILED."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the supervisor, which forwards SIGTERM
    sys.setswitchinterval(spec.switch_interval)
    setup_logging(json_lines=spec.json_logs, verbose=spec.verbose)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(spec.slot))
    if not spec.verbose:  # one line per stream event, not per handshake
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
    board = Board.open(spec.board_path)
    try:
        with asyncio.Runner(loop_factory=ReusePortLoop) as runner:
            runner.run(_serve(spec, board))
    except (ConfigError, ListenError) as exc:
        spec.error_path.write_text(str(exc))
        log.error("worker could not start: %s", exc)
        sys.exit(START_FAILED)


async def _serve(spec: WorkerSpec, board: Board) -> None:
    server = WorkerServer(spec.settings, board, spec.slot)
    await server.start(port=spec.port)
    # What start-up made (modules, the model) lives as long as the process: out of the cyclic
    # collector's sight, a full collection takes microseconds instead of 7-10 ms of a stalled loop.
    gc.collect()
    gc.freeze()
    board.set(spec.slot, "state", LISTENING)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.close)
    watch = asyncio.create_task(_watch_parent(spec.parent_pid, server))
    await server.wait_closed()
    watch.cancel()
    board.set(spec.slot, "state", STOPPING)
    log.info("audio server stopped")


async def _watch_parent(parent_pid: int, server: AudioServer) -> None:
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("the supervisor is gone; closing", extra={"supervisor": parent_pid})
    server.close()
