"""SimClock: the virtual epoch (--start), and hold()/release() for replays that wait on a decode."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from callbot.simswitch import SimSwitch
from callbot.simswitch.clock import SimClock, epoch_of
from simswitch_testkit import RawEsl, named


def test_clock_virtual_speed():
    c = SimClock(speed=1000)
    t0 = c.now()
    time.sleep(0.01)
    assert c.now() - t0 >= 9.0
    assert c.epoch_us(2.0) - c.epoch_us(1.0) == 1_000_000
    with pytest.raises(ValueError):
        SimClock(0)


def test_virtual_epoch_starts_at_start():
    c = SimClock(speed=1000, start_epoch_s=epoch_of("2026-03-02T08:00:00Z"))
    assert c.epoch_us(0) == 1_772_438_400_000_000
    assert epoch_of("2026-03-02T09:00:00+01:00") == epoch_of("2026-03-02 08:00:00")  # no zone: UTC
    with pytest.raises(ValueError, match="ISO-8601"):
        epoch_of("tomorrow")


def test_hold_freezes_now_and_release_goes_on_without_a_jump():
    c = SimClock(speed=100)
    c.hold()
    frozen = c.now()
    time.sleep(0.03)  # 3 virtual seconds if it ran
    assert c.now() == frozen and c.held
    c.release()
    assert not c.held
    assert 0 <= c.now() - frozen < 0.5  # from where it stopped, not 3 s later
    time.sleep(0.01)
    assert c.now() - frozen >= 0.9  # and it runs again


def test_hold_is_a_count():
    c = SimClock(speed=100)
    c.hold()
    c.hold()
    frozen = c.now()
    c.release()
    time.sleep(0.01)
    assert c.held and c.now() == frozen  # one hold is still on
    c.release()
    assert not c.held
    with pytest.raises(RuntimeError, match="without a hold"):
        c.release()
    with c.holding():
        assert c.held
    assert not c.held


def test_hold_and_release_from_many_threads_never_move_time_backwards():
    c = SimClock(speed=1000)
    stop = threading.Event()
    seen: list[float] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(c.now())

    def holder() -> None:
        for _ in range(300):
            c.hold()
            c.release()

    threads = [threading.Thread(target=reader)] + [threading.Thread(target=holder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not c.held and len(seen) > 100
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_sleep_until_waits_out_a_hold():
    async def go():
        c = SimClock(speed=10)
        target = c.now() + 0.1  # 10 ms of wall time if nothing holds it
        c.hold()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, c.release)
        t0 = time.monotonic()
        await c.sleep_until(target)
        assert time.monotonic() - t0 >= 0.05  # not before the release
        assert c.now() >= target
    asyncio.run(go())


def test_media_ticks_stop_while_the_clock_is_held():
    """A callee that hangs up at 0.5 s of call time does so at 0.5 s of call time, however long a hold."""
    async def go():
        async with SimSwitch(speed=10) as sw:
            c = await RawEsl.listening(sw.esl_port)
            uuid = await c.call("fixture/short_yes", "sim_hangup_after_s=0.5", until="CHANNEL_ANSWER")
            sw.clock.hold()
            await asyncio.sleep(0.1)  # 1 s of call time, were it running
            assert uuid in sw.live and not sw.live[uuid].hungup
            sw.clock.release()
            hangup = await c.wait_event(named("CHANNEL_HANGUP", uuid))
            (h,) = sw.truth(uuid).of_kind("hangup")
            assert h["t"] == 0.5
            answer_us = sw.calls[uuid].answered_us
            assert int(hangup["Event-Date-Timestamp"]) - answer_us == 500_000  # no jump in the timestamps
            await c.close()
    asyncio.run(asyncio.wait_for(go(), 30))


def test_a_barrier_stops_the_clock_until_its_owner_moves_it_and_never_sends_it_back():
    c = SimClock(speed=1000)
    c.set_barrier("ticks", 0.5)
    time.sleep(0.01)  # 10 virtual seconds if nothing stopped it
    assert c.now() == 0.5
    c.set_barrier("robot", 0.2)  # behind the clock: it stays where it is
    assert c.now() == 0.5
    c.set_barrier("robot", None)
    c.set_barrier("ticks", None)
    assert 0.5 <= c.now() < 1.5  # goes on from the barrier, without the stopped time as a jump
    time.sleep(0.005)
    assert c.now() > 1.5


def test_catch_up_makes_up_held_time_as_far_as_the_barriers_let_it():
    c = SimClock(speed=100)
    c.catch_up = True
    c.set_barrier("ticks", 0.02)
    c.hold()
    time.sleep(0.05)  # 5 virtual seconds of schedule pass while held
    c.release()
    assert c.now() == 0.02  # at once at the barrier, not 20 ms of virtual time later
    for step in range(2, 200):  # each step made up at once, however little wall time passes
        c.set_barrier("ticks", step * 0.02)
        assert c.now() == pytest.approx(step * 0.02)
    c.set_barrier("ticks", None)
    assert c.now() >= 5.0  # and without barriers it is back on the schedule


def test_a_sleeper_behind_a_barrier_wakes_when_the_barrier_moves():
    async def go():
        c = SimClock(speed=10)
        c.set_barrier("robot", 0.0)
        threading.Timer(0.05, c.set_barrier, ("robot", None)).start()  # from another thread
        await asyncio.wait_for(c.sleep_until(0.05), 5)
        assert c.now() >= 0.05
    asyncio.run(go())


def test_a_lead_lets_barriers_step_ahead_of_the_schedule_as_far_as_the_lead_and_no_further():
    c = SimClock(speed=100)
    c.catch_up, c.lead_s = True, 0.05  # 5 virtual seconds of lead
    c.set_barrier("ticks", c.now())
    c.restart_schedule()  # nothing banked from the clock's creation until now
    start, wall0 = c.now(), time.monotonic()
    t = start
    while c.now() == pytest.approx(t) and t < start + 100:  # a party that steps at once, every time it may
        t += 0.02
        c.set_barrier("ticks", t)
    ahead = c.now() - start
    schedule = (time.monotonic() - wall0) * 100
    assert 5.0 - 0.05 <= ahead - schedule <= 5.0 + 0.05  # ahead of the schedule by the lead, not by the 100 s asked
    c.hold()
    time.sleep(0.03)  # a 3 s hold (a decode) is paid from the lead: the clock owes nothing after it
    c.release()
    assert start + ahead <= c.now() <= t  # goes on from where it stopped
    c.set_barrier("ticks", t + 0.02)
    assert c.now() == pytest.approx(t + 0.02)  # and the next step is due at once: the lead paid for the hold


def test_restart_schedule_drops_the_lead_and_the_debt_of_before():
    c = SimClock(speed=100)
    c.catch_up = True
    c.set_barrier("ticks", 0.0)
    time.sleep(0.05)  # 5 s of schedule pass while a barrier stops the clock: time owed
    assert c.now() < 0.01
    c.lead_s = 0.05
    c.restart_schedule()  # idle media starts again: the schedule starts from here
    c.set_barrier("ticks", 20.0)
    assert 5.0 <= c.now() <= 5.5  # the lead only, not the 5 s owed on top of it
    assert c.wall_delay(20.0) > 0.1  # the rest of the way at the clock's speed
