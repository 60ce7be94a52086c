"""Wiring simswitch, an in-process audio server and the robot's calls to simswitch's clock (app.pacing's holds).

Shared by `callbot replay` (one call) and `callbot campaign simulate` (a campaign's many calls): with the
audio server in this process every party tells the clock when it is busy, so the media ticks step the
clock and held time is caught up afterwards (SimClock's lockstep); with the server elsewhere, only the
robot's events hold the clock.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from callbot.app.pacing import ROBOT_MAX_HOLD_S, DecodeHold, MediaLockstep, Pacer
from callbot.audio_server.server import AudioServer
from callbot.simswitch import SimSwitchThread
from callbot.simswitch.clock import SimClock

IN_PROCESS: dict[int, AudioServer] = {}  # port -> an audio server of app.replay.audio_server_thread, in this process


@contextlib.contextmanager
def paced(switch: SimSwitchThread, audio_port: int, max_hold_s: float = ROBOT_MAX_HOLD_S, *,
          free_run: bool = False, lead_s: float = 0.0) -> Iterator[Pacer]:
    """The holds and hooks of a run on ``switch``'s clock; yields the :class:`Pacer` whose ``call()`` views are
    the calls' CallTime (``max_hold_s``: wall seconds before a robot hold nobody lets go is dropped;
    ``free_run``: no speed limit; ``lead_s``: how far ahead of its schedule the clock may run, see SimClock)."""
    with Pacer(switch.clock, max_hold_s) as pacer, MediaLockstep(switch.clock) as media, \
            decode_hold(audio_port, switch.clock), lockstep(switch, audio_port, pacer, media, free_run, lead_s):
        yield pacer


@contextlib.contextmanager
def lockstep(switch: SimSwitchThread, audio_port: int, pacer: Pacer, media: MediaLockstep,
             free_run: bool = False, lead_s: float = 0.0) -> Iterator[None]:
    """Wire the holds into simswitch (and the audio server on ``audio_port``, when it is in this process)."""
    server = IN_PROCESS.get(audio_port)
    on = server is not None
    switch.call(_set_hooks, switch.switch, pacer.event_queued, media.work if on else None, on, free_run, lead_s)
    if server is not None:
        server.on_media_work = media.work
    try:
        yield
    finally:
        if server is not None:
            server.on_media_work = None
        switch.call(_set_hooks, switch.switch, None, None, False, False, 0.0)


def _set_hooks(switch: Any, on_event: Callable[[], None] | None, on_media: Callable[[int], None] | None,
               on: bool, free_run: bool, lead_s: float) -> None:
    """On the switch's loop: its hooks, and whether the media ticks step the clock (and how fast it may run)."""
    switch.on_event_queued, switch.on_media_work = on_event, on_media
    switch.lockstep = switch.clock.catch_up = on
    switch.clock.free_run = on and free_run
    switch.clock.lead_s = lead_s if on else 0.0


@contextlib.contextmanager
def decode_hold(audio_port: int, clock: SimClock) -> Iterator[None]:
    """Hold the clock whenever the in-process audio server on ``audio_port`` is decoding: a decode then takes no
    call time, so a run at any speed makes the decisions a live call makes (where speech recognition keeps up
    with real time). Nothing to do for a server in another process, or one without speech recognition."""
    server = IN_PROCESS.get(audio_port)
    engine = server.engine if server is not None else None
    if engine is None:
        yield
        return
    with DecodeHold(clock) as hold:
        engine.on_busy = hold.busy
        try:
            yield
        finally:
            engine.on_busy = None
