"""``SimSwitchThread``: simswitch in its own thread and event loop, for replay, bench and gevent tests."""

from __future__ import annotations

import copy
from typing import Any

from callbot.loop_thread import LoopThread

from callbot.simswitch.clock import SimClock
from callbot.simswitch.server import SimSwitch


class SimSwitchThread:
    """Context manager: starts a SimSwitch in a LoopThread, waits until it listens, stops it cleanly.

    ``SimSwitchThread(speed=20, fixtures_dir=...)`` takes SimSwitch's arguments. Read results
    with ``truth(uuid)``, which copies them inside the loop thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self.thread = LoopThread("simswitch")
        self.switch: SimSwitch | None = None

    @property
    def esl_port(self) -> int:
        assert self.switch is not None, "SimSwitchThread is not started"
        return self.switch.esl_port

    @property
    def clock(self) -> SimClock:
        """The switch's clock (thread-safe to read, hold and release): a replay's robot runs on it too."""
        assert self.switch is not None, "SimSwitchThread is not started"
        return self.switch.clock

    def start(self) -> "SimSwitchThread":
        self.thread.start()

        async def _start() -> SimSwitch:
            switch = SimSwitch(*self._args, **self._kwargs)
            await switch.start()
            return switch

        self.switch = self.thread.run(_start())
        return self

    def stop(self) -> None:
        if self.switch is not None:
            self.thread.run(self.switch.stop())
            self.switch = None
        self.thread.stop()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the switch's loop and return its result."""
        async def _call() -> Any:
            return fn(*args)
        return self.thread.run(_call())

    def truth(self, uuid: str) -> dict[str, Any]:
        """A copy of one call's ground truth (``CallTruth.as_dict()``)."""
        assert self.switch is not None
        switch = self.switch
        return self.call(lambda: copy.deepcopy(switch.truth(uuid).as_dict()))

    def __enter__(self) -> "SimSwitchThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
