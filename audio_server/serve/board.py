"""The board: a row of counters per worker process in a shared memory-mapped file, and the /healthz it makes."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

STATES = ("starting", "listening", "stopping", "dead")
STARTING, LISTENING, STOPPING, DEAD = range(len(STATES))
FIELDS = ("pid", "state", "streams", "opened", "restarts")


class Board:
    """A row of ``FIELDS`` per worker, seen by the supervisor and every worker.

    The supervisor writes pid, state and restarts; each worker writes its own row's state, live
    streams and streams opened. One writer per cell at a time, aligned 64-bit words: no lock.
    """

    def __init__(self, path: Path, cells: np.memmap) -> None:
        self.path, self.cells = path, cells

    @classmethod
    def create(cls, path: Path, workers: int) -> "Board":
        cells = np.memmap(path, dtype=np.int64, mode="w+", shape=(workers, len(FIELDS)))
        cells[:, FIELDS.index("state")] = DEAD
        return cls(path, cells)

    @classmethod
    def open(cls, path: Path) -> "Board":
        return cls(path, np.memmap(path, dtype=np.int64, mode="r+").reshape(-1, len(FIELDS)))

    @property
    def workers(self) -> int:
        return self.cells.shape[0]

    def get(self, slot: int, field: str) -> int:
        return int(self.cells[slot, FIELDS.index(field)])

    def set(self, slot: int, field: str, value: int) -> None:
        self.cells[slot, FIELDS.index(field)] = value

    def add(self, slot: int, field: str, value: int = 1) -> None:
        self.cells[slot, FIELDS.index(field)] += value

    def total(self, field: str) -> int:
        return int(self.cells[:, FIELDS.index(field)].sum())

    def listening(self) -> int:
        return int((self.cells[:, FIELDS.index("state")] == LISTENING).sum())

    def health(self, max_streams: int) -> dict:
        """The ``/healthz`` body: the whole server's streams and limit, then each worker's row.

        ``status`` is ``ok`` when every worker listens, ``degraded`` while one is being restarted,
        ``down`` when none listens.
        """
        rows = []
        for slot in range(self.workers):
            row = {"worker": slot, **{field: self.get(slot, field) for field in FIELDS}}
            row["state"] = STATES[row["state"]]
            rows.append(row)
        listening = self.listening()
        status = "ok" if listening == self.workers else "degraded" if listening else "down"
        return {"status": status, "streams": self.total("streams"), "max_streams": max_streams,
                "opened": self.total("opened"), "workers": self.workers, "workers_listening": listening,
                "restarts": self.total("restarts"), "per_worker": rows}


class BoardCollector:
    """The server's stream and worker metrics, read from the board at each scrape (by the supervisor).

    A row's ``opened`` outlives its worker, so the counter never goes back after a restart.
    """

    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self):
        yield GaugeMetricFamily("callbot_audio_streams_live", "Streams open now.", value=self.board.total("streams"))
        yield CounterMetricFamily("callbot_audio_streams_opened", "Streams accepted since the server started.",
                                  value=self.board.total("opened"))
        yield GaugeMetricFamily("callbot_audio_workers_listening", "Worker processes serving the stream port.",
                                value=self.board.listening())
        yield CounterMetricFamily("callbot_audio_worker_restarts", "Worker processes restarted after they died.",
                                  value=self.board.total("restarts"))


def http_response(connection: ServerConnection, text: str, content_type: str,
                  status: HTTPStatus = HTTPStatus.OK) -> Response:
    """A plain HTTP answer with its one Content-Type (websockets' Headers would add a second)."""
    response = connection.respond(status, text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


def health_response(connection: ServerConnection, board: Board, max_streams: int) -> Response:
    """``/healthz`` as JSON: 200 while a worker listens, 503 when none does."""
    body = board.health(max_streams)
    status = HTTPStatus.SERVICE_UNAVAILABLE if body["status"] == "down" else HTTPStatus.OK
    return http_response(connection, json.dumps(body) + "\n", "application/json", status)
