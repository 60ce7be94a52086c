"""GeventThread: an ESL client in its own OS thread and hub, driven from asyncio and plain threads."""

from __future__ import annotations

import asyncio
import threading

import gevent
import pytest

from callbot.config import EslSettings
from callbot.robot.esl.client import EslClient
from callbot.robot.shell.gevent_thread import GeventThread
from robot_esl_switch import ScriptedSwitch


def test_submit_runs_in_the_hub_thread_and_returns_results_to_asyncio():
    robot = GeventThread("robot-test")
    robot.start()
    try:
        async def main():
            idents = await asyncio.gather(*(asyncio.wrap_future(robot.submit(_sleep_then_ident, 0.05))
                                            for _ in range(5)))
            with pytest.raises(ZeroDivisionError):
                await asyncio.wrap_future(robot.submit(lambda: 1 / 0))
            return idents

        idents = asyncio.run(main())
        assert len(set(idents)) == 1 and idents[0] != threading.get_ident()
        assert robot.call(_sleep_then_ident, 0.01, timeout=5) == idents[0]  # from a plain thread
    finally:
        robot.stop()
    with pytest.raises(RuntimeError, match="not running"):
        robot.submit(lambda: None)


def _sleep_then_ident(seconds: float) -> int:
    gevent.sleep(seconds)  # the five sleeps overlap: they are greenlets in one hub
    return threading.get_ident()


def test_esl_client_lives_in_the_robot_thread():
    """The switch runs in this thread's hub, the client in the robot thread's hub; only TCP joins them."""
    switch = ScriptedSwitch().start()
    switch.api["status"] = "UP 0 years\n"
    robot = GeventThread("robot-esl")
    robot.start()
    try:
        def connect() -> EslClient:
            client = EslClient(EslSettings(port=switch.port, password="ClueCon"))
            client.connect()
            return client

        client = _wait(robot.submit(connect))
        assert _wait(robot.submit(client.api, "status")) == "UP 0 years\n"
        _wait(robot.submit(client.stop))
    finally:
        robot.stop()
        switch.stop()


def _wait(future, timeout: float = 5.0):
    """Let this thread's hub serve the switch while the robot thread works."""
    with gevent.Timeout(timeout):
        while not future.done():
            gevent.sleep(0.005)
    return future.result()


def test_stop_fails_work_still_running_instead_of_leaving_it_hanging():
    robot = GeventThread("robot-stop")
    robot.start()
    slow = robot.submit(gevent.sleep, 30)
    robot.call(lambda: None, timeout=5)  # the sleep has started by now
    robot.stop()
    with pytest.raises(RuntimeError, match="stopped before this finished"):
        slow.result(timeout=1)
