"""A dedicated OS thread with its own gevent hub, and a thread-safe way for other threads to run work in it.

gevent objects (sockets, AsyncResult, the ESL client) must stay in the thread whose hub owns
them (gevent/gevent#1739). Other threads, including an asyncio loop, hand callables over with
:meth:`GeventThread.submit` and get a :class:`concurrent.futures.Future` back; asyncio code
awaits it with ``asyncio.wrap_future(...)``.

    robot = GeventThread("robot"); robot.start()
    client = robot.call(lambda: connected_client(settings.esl))       # built and connected in the hub
    result = await asyncio.wrap_future(robot.submit(run_call, client, ...))
    robot.call(client.stop); robot.stop()
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable, TypeVar

import gevent
import gevent.event

T = TypeVar("T")


class GeventThread:
    """Runs a gevent hub in one OS thread; each submitted callable runs in a new greenlet there."""

    def __init__(self, name: str = "robot", max_queued: int = 10000) -> None:
        self.name = name
        self._inbox: queue.Queue = queue.Queue(maxsize=max_queued)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Any = None
        self._closing = False
        self._running: set[concurrent.futures.Future] = set()

    def start(self, timeout: float = 5.0) -> None:
        """Start the thread and wait until its hub accepts work."""
        if self._thread is not None:
            raise RuntimeError(f"GeventThread {self.name!r} already started")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"GeventThread {self.name!r} did not start within {timeout} s")

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` in a new greenlet of this thread; safe to call from any thread."""
        if self._watcher is None or self._closing:
            raise RuntimeError(f"GeventThread {self.name!r} is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            self._inbox.put_nowait((fn, args, kwargs, future))
        except queue.Full:
            raise RuntimeError(f"GeventThread {self.name!r}: {self._inbox.maxsize} submissions queued") from None
        self._watcher.send()  # thread-safe wake-up of the hub
        return future

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
        """``submit`` and wait for the result (re-raising its exception); for plain threads, not the hub itself."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("GeventThread.call from its own thread would deadlock; call fn directly")
        return self.submit(fn, *args, **kwargs).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """End the hub loop and join the thread; work still running fails with RuntimeError (stop clients first)."""
        if self._thread is None or self._closing:
            return
        self._closing = True
        self._watcher.send()
        self._thread.join(timeout)

    def _run(self) -> None:
        hub = gevent.get_hub()
        done = gevent.event.Event()
        self._done = done
        self._watcher = hub.loop.async_()
        self._watcher.start(self._drain)
        self._ready.set()
        done.wait()
        for future in list(self._running):
            if not future.done():
                future.set_exception(RuntimeError(f"GeventThread {self.name!r} stopped before this finished"))
        self._watcher.close()
        hub.destroy(destroy_loop=True)

    def _drain(self) -> None:
        while True:
            try:
                fn, args, kwargs, future = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._running.add(future)
            future.add_done_callback(self._running.discard)
            gevent.spawn(self._run_one, fn, args, kwargs, future)
        if self._closing:
            self._done.set()

    @staticmethod
    def _run_one(fn: Callable[..., Any], args: tuple, kwargs: dict, future: concurrent.futures.Future) -> None:
        if future.done():
            return
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered to the submitting thread
            future.set_exception(exc)
