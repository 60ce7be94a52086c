"""`callbot campaign simulate NAME`: a campaign against simswitch in this process, on simswitch's virtual clock.

simswitch (``--callees``, ``--cdr``, ``--start``, ``--speed``), an audio server and the campaign runner
share one process and one clock, in lockstep (app.lockstep): each call's CallTime is a view of one
:class:`~callbot.app.pacing.Pacer` (held while any call is busy, each call's next deadline a barrier),
the media ticks step the clock, the audio server's work holds it, and the runner's own next instant
(the next dial its pacing allows, the next contact due) is a barrier too, so that the clock waits
there until the runner has acted. Every decision then happens at the same campaign time at any
``--speed``: the speed only sets how fast the clock may go when nobody is busy.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from callbot.app.lockstep import paced
from callbot.app.replay import audio_server_thread, replay_settings, wired_settings
from callbot.config import Settings
from callbot.robot.campaign.progress import RunProgress
from callbot.robot.campaign.runner import CampaignRunner, RunOptions, RunResult
from callbot.robot.campaign.times import iso
from callbot.simswitch import SimSwitchThread
from callbot.simswitch.clock import SimClock



class RunnerBarrier:
    """The runner's ``on_deadline``: the campaign instant it acts at next is a barrier on simswitch's clock."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.epoch0_s = clock.epoch_us(0.0) / 1e6

    def __call__(self, at: datetime | None) -> None:
        self.clock.set_barrier(self, None if at is None else at.timestamp() - self.epoch0_s)

    def freeze(self) -> None:
        """Stop the clock where it is until the runner's first wait (it starts up in no campaign time)."""
        self.clock.set_barrier(self, self.clock.now())

    def epoch_s(self) -> float:
        """The runner's clock: simswitch's virtual epoch, in seconds."""
        return self.clock.epoch_us() / 1e6


def audio_settings(settings: Settings, stt: bool) -> Settings:
    """The in-process audio server's: without speech recognition (as scripts/campaign_mix.py's dry run), or a
    replay's recognition (finals only), whose decodes hold the clock."""
    # in lockstep the clock waits for the server, so its pace cap (meant for live streams) has nothing to guard
    unpaced = {"audio_server.max_speed": 1000.0, "audio_server.replay_max_speed": 1000.0}
    return (replay_settings(settings) if stt else settings.replace(**{"stt.enabled": False})).replace(**unpaced)


def simulate(settings: Settings, engine: Any, options: RunOptions, rules_for: Any, progress: RunProgress, *,
             callees: str, cdr: str | None, start: str, stt: bool = False,
             free_run: bool = False) -> tuple[RunResult, dict[str, Any]]:
    """Run campaign ``options.name`` to its end on a simswitch of its own; returns the run's result and the
    simulation's figures (start and end instant, wall seconds, originates, holds dropped). ``free_run``: no
    speed limit, the clock goes at once to the next instant anyone waits for (idle hours take no time)."""
    started = time.monotonic()
    with SimSwitchThread(speed=options.speed, esl_port=0, password=settings.simswitch.password, callees=callees,
                         cdr=cdr, start=start) as switch:
        barrier = RunnerBarrier(switch.clock)
        barrier.freeze()
        begin = switch.clock.epoch_us()
        with audio_server_thread(audio_settings(settings, stt)) as audio_port, \
                paced(switch, audio_port, free_run=free_run, lead_s=settings.simswitch.lockstep_lead_s) as pacer:
            runner = CampaignRunner(wired_settings(settings, switch.esl_port, audio_port, options.speed), engine,
                                    options, rules_for, progress, time_source=barrier.epoch_s,
                                    call_time_for=lambda _uuid: pacer.call(busy=True), on_deadline=barrier)
            result = runner.run()
            end = switch.clock.epoch_us()
            dropped = pacer.expired
    wall = time.monotonic() - started
    figures = {"start": iso(_instant(begin)), "end": iso(_instant(end)),
               "speed": "free run" if free_run else options.speed,
               "wall_s": round(wall, 1), "campaign_s": round((end - begin) / 1e6, 1),
               "effective_speed": round((end - begin) / 1e6 / wall, 1) if wall > 0 else None,
               "holds_dropped": dropped}
    return result, figures


def _instant(epoch_us: int) -> datetime:
    return datetime.fromtimestamp(epoch_us / 1e6, timezone.utc)
