"""Run an asyncio event loop in a dedicated thread, so gevent (robot) and asyncio parts share a process.

The two worlds never share objects: callers hand coroutines to the loop with ``run()`` and get
plain results back; everything else goes through sockets.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class LoopThread:
    """A thread that owns one event loop; ``run(coro)`` executes a coroutine there and waits."""

    def __init__(self, name: str = "asyncio-loop") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> "LoopThread":
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def _main(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coro`` on the thread's loop and return its result (re-raises its exception)."""
        if self.loop is None:
            raise RuntimeError(f"{self.name} is not started")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and join the thread (idempotent)."""
        if self.loop is not None and self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> "LoopThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
