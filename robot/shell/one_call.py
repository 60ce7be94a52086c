"""One call from connection to result, inside the robot's gevent thread: checks, ESL client, session."""

from __future__ import annotations

import logging
from typing import Any, Callable

from callbot.config import Settings
from callbot.robot.call.record import CallRecord
from callbot.robot.shell.session import CallSession, CallTime
from callbot.robot.checks import require_ok, run_checks
from callbot.robot.esl.client import EslClient
from callbot.robot.scenario.loader import Scenario

log = logging.getLogger(__name__)


def audio_base_url(settings: Settings) -> str:
    """The audio server's ws:// base as the switch dials it: ``public_url``, else host and port."""
    cfg = settings.audio_server
    return (cfg.public_url or f"ws://{cfg.host}:{cfg.port}").rstrip("/")


def run_one_call(settings: Settings, scenario: Scenario, destination: str, *, checks: bool = True,
                 call_uuid: str | None = None,
                 on_entry: Callable[[dict[str, Any]], None] | None = None,
                 on_client: Callable[[EslClient], None] | None = None,
                 call_time: CallTime | None = None) -> CallRecord:
    """Connect, run the start-up checks (StartupCheckError lists each failure with its fix), place one call.

    Must run in the robot's gevent thread (robot.gevent_thread.GeventThread). A failed audio
    server check does not stop the call: it goes on without barge-in and its record is flagged.
    ``on_client`` sees the connected client before the dial (the fault tests use it to cut the connection;
    `callbot call` to end calls a killed run left up). ``call_uuid``: the call's uuid, chosen by the caller
    (`callbot call` records the attempt under it before dialling).
    """
    client = EslClient(settings.esl)
    client.connect()
    try:
        audio_ok = True
        if checks:
            results = run_checks(settings, client)
            require_ok([r for r in results if r.name != "audio_server"])
            audio_ok = all(r.ok for r in results if r.name == "audio_server")
            if not audio_ok:
                log.warning("audio server check failed; calling without barge-in",
                            extra={"detail": [r.detail for r in results if r.name == "audio_server"]})
        if on_client is not None:
            on_client(client)
        session = CallSession(client, scenario, settings, destination, audio_url=audio_base_url(settings),
                              call_uuid=call_uuid,
                              on_entry=on_entry, call_time=call_time)
        if not audio_ok:
            session.flag("audio_server_check_failed", note="/healthz did not answer: expect no barge-in")
        return session.run()
    finally:
        client.stop()
