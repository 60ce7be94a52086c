"""Prompts as the real switch plays them (DESIGN section 3): start delay, read-ahead, uuid_fileman, park.

The prompt queue is tested as the sans-I/O object it is, tick by tick; the ESL side on a running
simswitch: what is lost before CHANNEL_PARK, and what ``uuid_fileman`` answers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from callbot.simswitch import SimSwitch
from callbot.simswitch.media.playback import FILL, PromptQueue
from simswitch_testkit import RawEsl, RecordingWsServer, named

TICK = 0.02


def tone(path: Path, seconds: float, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16), rate, subtype="PCM_16")
    return path


@pytest.fixture
def long_prompt(tmp_path: Path) -> Path:
    return tone(tmp_path / "long.wav", 8.0)


def started(path: Path, arrived: float = 0.0, callee_audio: bool = False) -> tuple[PromptQueue, float]:
    """A queue whose prompt has just started; returns the queue and the start tick's time."""
    q = PromptQueue(start_s=0.100)
    q.enqueue(str(path), arrived)
    k = int(arrived / TICK) + 1
    while True:
        out = q.tick(k * TICK, callee_audio)
        if out:
            assert [kind for kind, _ in out] == ["start"]
            return q, k * TICK
        k += 1


def frames(q: PromptQueue, vt: float, n: int, rate: int | None = None) -> tuple[float, list]:
    """Play ``n`` ticks from ``vt`` (the tick at ``vt`` already ran); the time of the last tick and the frames."""
    out = [q.write_frame(rate)]
    for _ in range(n - 1):
        vt += TICK
        assert q.tick(vt, False) == []
        out.append(q.write_frame(rate))
    return vt, out


# ---- start delay --------------------------------------------------------------------------------

@pytest.mark.parametrize("arrived", [0.001, 0.010, 0.019])
def test_broadcast_starts_180_to_200_ms_later_with_a_silent_callee(long_prompt, arrived):
    _, start = started(long_prompt, arrived)
    assert 0.180 - 1e-9 <= start - arrived < 0.200


@pytest.mark.parametrize("arrived", [0.001, 0.010, 0.019])
def test_broadcast_starts_100_to_120_ms_later_while_the_callee_sends_audio(long_prompt, arrived):
    _, start = started(long_prompt, arrived, callee_audio=True)
    assert 0.100 - 1e-9 <= start - arrived < 0.120


# ---- read-ahead: what PLAYBACK_STOP reports, and what was heard ---------------------------------

def test_playback_ms_is_the_read_ahead_and_the_truth_is_what_played(long_prompt):
    q, vt = started(long_prompt)
    vt, _ = frames(q, vt, 51)  # as in capture 02: ~1 s of play, then uuid_break
    p = q.request_break(flush=True, vt=vt + 0.005)
    assert q.tick(vt, False) == []  # a late-processed tick older than the break does not apply it
    ((kind, stopped),) = q.tick(vt + TICK, False)
    assert kind == "stop" and stopped is p and p.status == "break"
    assert (p.reported_ms, p.read_stored_samples, p.offset) == (2048, 16384, 8160)  # the capture's values
    assert p.played_ms == 1020


def test_second_chunk_is_read_when_a_frame_or_less_is_left(long_prompt):
    q, vt = started(long_prompt)
    frames(q, vt, 102)
    assert q.current.reported_ms == 2048
    q.write_frame(None)  # the 103rd frame finds 64 samples left: the next 2.048 s are read
    assert q.current.reported_ms == 4096
    frames(q, vt, 52)  # about 3.1 s heard: FreeSWITCH still says 4096 (DESIGN section 3)
    assert q.current.reported_ms == 4096 and q.current.played_ms == 3100


def test_read_ahead_of_a_16k_file_is_counted_in_its_own_samples(tmp_path):
    q, vt = started(tone(tmp_path / "p16.wav", 5.0, rate=16000))
    frames(q, vt, 10)
    assert (q.current.read_stored_samples, q.current.reported_ms) == (32768, 2048)


def test_a_file_played_to_its_end_reports_its_length(tmp_path):
    q, vt = started(tone(tmp_path / "short.wav", 0.5))
    vt, _ = frames(q, vt, 25)
    ((kind, p),) = q.tick(vt + TICK, False)
    assert kind == "stop" and p.status == "done" and p.reported_ms == p.played_ms == 500
    assert abs(vt + TICK - p.started_vt - 0.5) < 1e-9


# ---- uuid_fileman ----------------------------------------------------------------------------------

def test_pause_toggles_two_frames_later_and_resumes_at_the_same_sample(long_prompt):
    q, vt = started(long_prompt)
    vt, _ = frames(q, vt, 10)
    command_vt = vt + 0.005
    assert q.fileman("pause", command_vt) is q.current
    silent_at = None
    for _ in range(5):
        vt += TICK
        changes = q.tick(vt, False)
        frame = q.write_frame(8000)
        if changes:
            assert [k for k, _ in changes] == ["paused"]
            silent_at = vt
            assert np.all(frame == FILL)  # FreeSWITCH writes 0xffff frames while paused: no event
    assert silent_at is not None and 0.040 <= silent_at - command_vt <= 0.060
    held = q.current.offset
    frames(q, vt + TICK, 20)
    assert q.current.offset == held and q.current.reported_ms == 2048
    q.fileman("pause", vt)
    vt += 3 * TICK
    assert [k for k, _ in q.tick(vt, False)] == ["resumed"]
    before = q.current.offset
    frame = q.write_frame(8000)
    assert before == held and np.array_equal(frame, q.current.pcm[held:held + 160])


def test_break_ends_a_paused_prompt(long_prompt):
    q, vt = started(long_prompt)
    q.fileman("pause", vt)
    vt += 3 * TICK
    assert [k for k, _ in q.tick(vt, False)] == ["paused"]
    q.write_frame(None)
    q.request_break(flush=False, vt=vt + 0.001)
    ((kind, p),) = q.tick(vt + TICK, False)
    assert kind == "stop" and p.status == "break"


def test_fileman_stop_plays_out_the_chunk_read_and_ends_done(long_prompt):
    q, vt = started(long_prompt)
    vt, _ = frames(q, vt, 50)
    q.fileman("stop", vt)
    for _ in range(200):
        vt += TICK
        out = q.tick(vt, False)
        if out:
            break
        q.write_frame(None)
    ((kind, p),) = out
    assert kind == "stop" and p.status == "done"
    assert p.offset == 16384 and p.reported_ms == 2048  # to the end of the 2.048 s chunk, not further
    assert abs(vt - p.started_vt - 103 * TICK) < 1e-9


@pytest.mark.parametrize("command,gain", [("volume:2", 2.3), ("volume:9", 4.3), ("volume:-9", 0.2),
                                          ("volume:+", 1.3), ("volume:bogus", 1.0), ("bogus", 1.0)])
def test_volume_is_clamped_to_4_steps(long_prompt, command, gain):
    q, vt = started(long_prompt)
    assert q.fileman(command, vt) is not None  # any subcommand is taken while a file plays
    vt += 3 * TICK
    q.tick(vt, False)
    start = q.current.offset
    frame = q.write_frame(8000)
    want = np.clip(np.trunc(q.current.pcm[start:start + 160] * gain), -32768, 32767).astype(np.int16)
    assert np.array_equal(frame, want)


def test_fileman_without_a_playing_file():
    assert PromptQueue().fileman("pause", 0.0) is None


# ---- on the switch: CHANNEL_PARK, lost broadcasts, uuid_fileman replies -------------------------

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_park_follows_the_job_and_a_broadcast_before_it_is_lost(long_prompt):
    """Slow clock (x0.1) so that the 3 ms between answer and park is 30 ms of wall time."""
    async def go():
        async with SimSwitch(speed=0.1) as sw, RecordingWsServer() as ws:
            c = await RawEsl.listening(sw.esl_port)
            uuid = await c.call("fixture/short_yes", "sim_answer_delay_ms=0", until=None)
            answer = await c.wait_event(named("CHANNEL_ANSWER", uuid))
            assert await c.api(f"uuid_broadcast {uuid} {long_prompt} aleg") == "+OK Message sent\n"
            assert await c.api(f"uuid_audio_stream {uuid} start {ws.url('/s')} mono 16k") == "+OK Success\n"
            park = await c.wait_event(named("CHANNEL_PARK", uuid))
            await c.wait_event(named("MEDIA_BUG_START", uuid))
            order = [e.name for e in c.events if e.name in ("BACKGROUND_JOB", "CHANNEL_EXECUTE")]
            assert order == ["BACKGROUND_JOB", "CHANNEL_EXECUTE"]  # ANSWER, the job, park: as captured
            assert int(park["Event-Date-Timestamp"]) - int(answer["Event-Date-Timestamp"]) == 3000
            assert not sw.calls[uuid].prompts.queue  # never queued: it will never play
            truth = sw.truth(uuid)
            assert truth.prompts() == [] and [e["kind"] for e in truth.of_kind("broadcast_lost")] == ["broadcast_lost"]
            assert not [e for e in c.events if e.name == "PLAYBACK_START"]
            await c.close()
    run(go())


def test_fileman_replies_and_pause_is_in_the_truth(long_prompt):
    async def go():
        async with SimSwitch(speed=20) as sw:
            c = await RawEsl.listening(sw.esl_port)
            uuid = await c.call("fixture/long_reply")
            assert await c.api("uuid_fileman") == "-USAGE: <uuid> <cmd>:<val>\n"
            assert await c.api("uuid_fileman 00000000-0000-0000-0000-000000000000 pause") == "-ERR No such channel!\n"
            assert await c.api(f"uuid_fileman {uuid} pause") == "-ERR No file handle!\n"
            await c.api(f"uuid_broadcast {uuid} {long_prompt}")
            await c.wait_event(named("PLAYBACK_START", uuid))
            for command in ("pause", "nosuch", "volume:9"):
                assert await c.api(f"uuid_fileman {uuid} {command}") == "+OK\n"
            await asyncio.sleep(0.5 / 20)
            assert await c.api(f"uuid_break {uuid} all") == "+OK\n"
            stop = await c.wait_event(named("PLAYBACK_STOP", uuid))
            assert stop["Playback-Status"] == "break"
            assert not [e for e in c.events if e.name.startswith("PLAYBACK_") and e is not stop
                        and e.name != "PLAYBACK_START"]  # pause fires no event
            truth = sw.truth(uuid)
            (paused,) = truth.of_kind("playback_paused")
            (command,) = [e for e in truth.of_kind("fileman") if e["command"] == "pause" and e["file"]]
            assert 0.040 - 1e-6 <= paused["t"] - command["t"] <= 0.060 + 1e-6
            (p,) = truth.prompts()
            assert p["played_ms"] == paused["at_ms"]  # nothing more was heard after the pause
            assert int(stop["variable_playback_ms"]) == 2048  # the read-ahead
            await c.close()
    run(go())


def test_broadcast_delay_depends_on_the_callee(long_prompt, tmp_path):
    """The callee sends frames for 1 s (its WAV), then nothing: a broadcast during it waits 100-120 ms,
    one after it 180-200 ms."""
    voice = tone(tmp_path / "callee.wav", 1.0)

    async def go():
        async with SimSwitch(speed=20) as sw:
            c = await RawEsl.listening(sw.esl_port)
            uuid = await c.call(f"fixture/{voice}")
            for pause_s in (0.0, 1.5):
                await asyncio.sleep(pause_s / 20)
                await c.api(f"uuid_broadcast {uuid} {long_prompt}")
                await c.wait_event(named("PLAYBACK_START", uuid))
                await c.api(f"uuid_break {uuid}")
                await c.wait_event(named("PLAYBACK_STOP", uuid))
            truth = sw.truth(uuid)
            sent = [e["t"] for e in truth.of_kind("command") if e["line"].startswith("uuid_broadcast")]
            starts = [e["t"] for e in truth.of_kind("playback_start")]
            slack = 0.002  # at x20 the clock moves on a little between the API record and the enqueue
            assert sent[0] < 0.9 and 0.100 - 1e-6 <= starts[0] - sent[0] < 0.120 + slack
            assert sent[1] > 1.0 and 0.180 - 1e-6 <= starts[1] - sent[1] < 0.200 + slack
            await c.close()
    run(go())
